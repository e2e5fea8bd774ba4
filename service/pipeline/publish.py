"""Publishing a finished analysis: artifacts via writers, then result.json, atomically."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from pathlib import Path

from service.domain.errors import OutputError
from service.domain.results import AnalysisResult
from service.pipeline.params import OutputRequest
from service.ports.outputs import AnalysisOutcome, ResultWriter

log = logging.getLogger(__name__)

RESULT_FILE = "result.json"


def publish(outcome: AnalysisOutcome, out_dir: Path, outputs: OutputRequest,
            writers: Sequence[ResultWriter]) -> AnalysisResult:
    """Runs every writer into ``out_dir`` and writes result.json last (its presence = done).

    A writer that cannot produce its output (``OutputError``, e.g. DICOM outputs for a PNG
    without patient/study metadata) becomes a warning; the other outputs are still written.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    if outputs.dicom_metadata is not None and outcome.slide.dicom is None:
        outcome = dataclasses.replace(
            outcome, slide=dataclasses.replace(outcome.slide, dicom=outputs.dicom_metadata))
    artifacts: list[str] = []
    warnings = list(outcome.result.warnings)
    try:
        for writer in writers:
            try:
                paths = writer.write(outcome, out_dir)
            except OutputError as exc:
                log.info("%s not written: %s", writer.name, exc)
                warnings.append(f"{writer.name} not written: {exc}")
                continue
            artifacts.extend(p.name for p in paths)
    finally:
        outcome.class_map_close()
    result = dataclasses.replace(outcome.result, artifacts=(RESULT_FILE, *artifacts),
                                 warnings=tuple(warnings))
    write_result_json(result, out_dir / RESULT_FILE)
    return result


def write_result_json(result: AnalysisResult, path: Path) -> None:
    """result.json, written to a temporary name and renamed."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result.to_dict(), indent=2, default=str) + "\n")
    tmp.replace(path)
