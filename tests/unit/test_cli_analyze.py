"""The analyze command as a user runs it: formats agree, bad inputs give one-line errors."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from service.transports.cli import main

CLI = [sys.executable, "-m", "service.transports.cli"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300, env=env)


def test_same_slide_as_svs_dicom_and_png_gives_the_same_cellularity(
        synthetic_slides, tmp_path: Path) -> None:  # noqa: ANN001
    s = synthetic_slides
    out = tmp_path / "out"
    code = main(["analyze", str(s.svs), str(s.dicom_dir), "--out", str(out), "--no-progress",
                 "--outputs", "overlay"])
    assert code == 0
    code = main(["analyze", str(s.png), "--mpp", str(s.mpp), "--out", str(out / "png"),
                 "--no-progress", "--outputs", "overlay"])
    assert code == 0
    results = [json.loads(p.read_text()) for p in sorted(out.rglob("result.json"))]
    assert len(results) == 3
    cells = [r["cellularity_pct"] for r in results]
    assert max(cells) - min(cells) <= 0.5, cells
    assert {r["mpp_slide"][0] for r in results} == {s.mpp}
    truth = s.scene.truth_cellularity_pct
    assert all(abs(c - truth) < 4.0 for c in cells), (cells, truth)
    assert len(list(out.rglob("overlay.png"))) == 3


def test_png_without_mpp_is_a_one_line_error(synthetic_slides, tmp_path: Path) -> None:  # noqa: ANN001
    p = _run("analyze", str(synthetic_slides.png), "--out", str(tmp_path), "--no-progress")
    assert p.returncode != 0
    assert "Traceback" not in p.stderr
    assert "--mpp" in p.stderr


def test_a_failing_slide_does_not_stop_the_batch(synthetic_slides, tmp_path: Path) -> None:  # noqa: ANN001
    junk = tmp_path / "junk.svs"
    junk.write_bytes(os.urandom(4096))
    out = tmp_path / "out"
    p = _run("analyze", str(junk), str(synthetic_slides.svs), "--out", str(out), "--no-progress",
             "--outputs", "overlay")
    assert p.returncode == 1
    assert "Traceback" not in p.stderr
    assert "junk.svs" in p.stderr
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert [r["status"] for r in rows] == ["failed", "ok"]
    assert (out / "slide" / "result.json").exists()
    assert (out / "summary.png").exists()


def test_missing_file_and_bad_parameters_are_clear(tmp_path: Path) -> None:
    p = _run("analyze", str(tmp_path / "nope.svs"), "--out", str(tmp_path))
    assert p.returncode != 0 and "Traceback" not in p.stderr and "nope.svs" in p.stderr
    p = _run("analyze", str(tmp_path), "--out", str(tmp_path), "--tile-size", "10")
    assert p.returncode == 2 and "tile size" in p.stderr and "Traceback" not in p.stderr


@pytest.mark.slow
def test_non_dicom_slide_with_metadata_gets_sr_and_ann(synthetic_slides, tmp_path: Path) -> None:  # noqa: ANN001
    code = main(["analyze", str(synthetic_slides.svs), "--out", str(tmp_path), "--no-progress",
                 "--study-uid", "1.2.826.0.1.3680043.10.1234.1", "--patient-id", "P1",
                 "--patient-name", "Doe^Jane"])
    assert code == 0
    r = json.loads((tmp_path / "slide" / "result.json").read_text())
    assert {"sr.dcm", "ann.dcm", "annotations.geojson", "overlay.png"} <= set(r["artifacts"])
    assert not [w for w in r["warnings"] if "not written" in w]
