"""Where artifacts live: ``results_root/<job_id>/``, published once by an atomic rename."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

SUMMARY_KEYS = (
    "cellularity_pct", "cell_coverage_pct", "adipocyte_ratio_pct", "marrow_area_mm2",
    "qc_flags", "warnings", "elapsed_s", "segmenter",
)
RESULT_JSON = "result.json"
TMP_DIR = ".tmp"


def summary_from_result(result: dict[str, Any]) -> dict[str, Any]:
    """The few numbers shown in job listings, from a result.json dict."""
    return {k: result.get(k) for k in SUMMARY_KEYS}


def list_artifacts(out_dir: Path) -> tuple[str, ...]:
    """Relative paths of every file in a published job folder, sorted."""
    return tuple(sorted(
        str(p.relative_to(out_dir)) for p in out_dir.rglob("*") if p.is_file()
    ))


def publish_dir(work_dir: Path, out_dir: Path) -> bool:
    """Renames ``work_dir`` to ``out_dir`` atomically; False (and ``work_dir`` removed) if another
    attempt published first. ``rename`` of a directory onto a non-empty one fails, so exactly one
    attempt's artifacts ever become visible."""
    try:
        os.rename(work_dir, out_dir)
        return True
    except OSError:
        if (out_dir / RESULT_JSON).is_file():
            shutil.rmtree(work_dir, ignore_errors=True)
            return False
        raise


def published_result(out_dir: Path) -> dict[str, Any] | None:
    """The result.json of an already-published job folder, or None."""
    path = out_dir / RESULT_JSON
    if not path.is_file():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


class ResultStore:
    """The results root: published job folders plus a scratch area for running attempts."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / TMP_DIR
        self.tmp.mkdir(parents=True, exist_ok=True)

    def job_dir(self, job_id: str) -> Path:
        return self.root / job_id

    def work_dir(self, job_id: str, attempt: int, owner: str) -> Path:
        safe_owner = "".join(c if c.isalnum() else "_" for c in owner)
        return self.tmp / f"{job_id}.{attempt}.{safe_owner}"

    def clean_scratch(self) -> None:
        """Removes leftovers of attempts that died (call when no attempt of ours is running)."""
        for child in self.tmp.iterdir():
            shutil.rmtree(child, ignore_errors=True)

    def artifact_path(self, job_id: str, name: str) -> Path | None:
        """The artifact file, if ``name`` resolves inside the job folder."""
        base = self.job_dir(job_id).resolve()
        path = (base / name).resolve()
        if base not in path.parents or not path.is_file():
            return None
        return path
