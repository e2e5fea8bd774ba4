"""QC flags reach result.json, and every bad input is one line from the CLI, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from adapters.segmenters.classical import ClassicalSegmenter
from adapters.slides.array import ArraySlide, SceneSlide
from adapters.synthetic.scene import SyntheticScene
from adapters.synthetic.writers import write_png
from service import bootstrap
from service.pipeline.analyze import analyze
from service.pipeline.imaging import grey
from service.pipeline.params import AnalysisParams
from service.pipeline.reading import analysis_grid, read_analysis_region
from tests.unit.test_bad_inputs import _truncated_copy, _write_ct

CLI = [sys.executable, "-m", "service.transports.cli"]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300, env=env)


def _flags(slide, params: AnalysisParams | None = None) -> tuple[str, ...]:  # noqa: ANN001
    out = analyze(slide, ClassicalSegmenter(), params or AnalysisParams())
    out.class_map.close()
    return out.result.qc_flags


def test_mpp_override_that_disagrees_with_the_file_is_flagged(synthetic_slides) -> None:  # noqa: ANN001
    slide = bootstrap.open_slide(str(synthetic_slides.svs), mpp_override=0.6)
    try:
        out = analyze(slide, ClassicalSegmenter(), AnalysisParams(mpp_override=0.6))
    finally:
        slide.close()
    out.class_map.close()
    assert "mpp_conflict" in out.result.qc_flags
    assert any("overrides" in w for w in out.result.warnings)
    assert out.result.mpp_slide == (0.6, 0.6)


def test_small_marrow_area_is_flagged_inadequate() -> None:
    scene = SyntheticScene(1400, 1100, mpp=0.5, seed=4, cellularity_target=50)
    assert "marrow_area_inadequate" in _flags(SceneSlide(scene))


def test_a_slide_without_glass_is_flagged() -> None:
    pink = np.zeros((900, 900, 3), np.uint8) + np.array([200, 120, 180], np.uint8)
    flags = _flags(ArraySlide(pink, mpp=1.0))
    assert "glass_level_uncertain" in flags


def test_a_scan_coarser_than_the_segmenter_is_flagged() -> None:
    scene = SyntheticScene(2400, 2000, mpp=0.5, seed=6, cellularity_target=50)
    rgb = scene.render_rgb(scene_box(scene), 4.0)  # a 2 µm/px image
    assert "analysed_above_scan_resolution" in _flags(ArraySlide(rgb, mpp=2.0))


def scene_box(scene: SyntheticScene):  # noqa: ANN201
    from service.domain.geometry import Box

    return Box(0, 0, scene.width_px0, scene.height_px0)


def test_seed_threshold_clamped_on_bright_glass_is_flagged() -> None:
    scene = SyntheticScene(2400, 2000, mpp=0.5, seed=9, cellularity_target=20, glass_level=252)
    out = analyze(SceneSlide(scene), ClassicalSegmenter(), AnalysisParams(fat_method="seed"))
    out.class_map.close()
    assert "fat_threshold_clamped" in out.result.qc_flags
    assert out.result.fat_threshold == 240.0


def test_seed_rule_accumulates_exactly_across_many_small_tiles() -> None:
    scene = SyntheticScene(2400, 2000, mpp=0.5, seed=12, cellularity_target=50, glass_level=228)
    slide = ArraySlide(scene.render_rgb(scene_box(scene)), mpp=0.5)  # fixed pixels
    out = analyze(slide, ClassicalSegmenter(), AnalysisParams(fat_method="seed", tile_size=256,
                                                              overlap=32))
    classes = out.class_map.read_rows(0, out.class_map.height)
    out.class_map.close()
    grid = analysis_grid(slide, 1.0)
    g = grey(read_analysis_region(slide, grid, 0, 0, grid.width, grid.height))
    marrow = classes > 0
    thr = min(max(float(np.percentile(g[marrow], 75)), 180.0), 240.0)
    assert out.result.fat_threshold == pytest.approx(thr)
    assert int((classes == 2).sum()) == int((g[marrow] > thr).sum())


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory: pytest.TempPathFactory, synthetic_slides) -> dict[str, Path]:  # noqa: ANN001
    d = tmp_path_factory.mktemp("bad")
    glass = SyntheticScene(1024, 1024, mpp=0.5, seed=1, tissue=False, bone=False)
    random_svs = d / "random.svs"
    random_svs.write_bytes(os.urandom(20000))
    return {
        "truncated": _truncated_copy(synthetic_slides.svs, d / "truncated.svs", 0.5),
        "random": random_svs,
        "png_no_mpp": synthetic_slides.png,
        "ct": _write_ct(d / "ct.dcm"),
        "glass": write_png(d / "glass.png", 1024, 1024, glass.render_rgb),
    }


@pytest.mark.parametrize("name", ["truncated", "random", "png_no_mpp", "ct"])
def test_bad_input_is_one_line_on_stderr(bad_inputs, tmp_path: Path, name: str) -> None:  # noqa: ANN001
    p = _cli("analyze", str(bad_inputs[name]), "--out", str(tmp_path), "--no-progress")
    assert p.returncode != 0
    assert "Traceback" not in p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("marrowscope:")]
    assert lines and str(bad_inputs[name].name) in lines[0]


def test_all_glass_slide_gives_no_marrow_not_a_number(bad_inputs, tmp_path: Path) -> None:  # noqa: ANN001
    p = _cli("analyze", str(bad_inputs["glass"]), "--mpp", "0.5", "--out", str(tmp_path),
             "--no-progress", "--json")
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    result = json.loads(p.stdout.strip().splitlines()[0])
    assert result["cellularity_pct"] is None
    assert "no_marrow" in result["qc_flags"]


def test_unwritable_output_folder_is_one_line(synthetic_slides, tmp_path: Path) -> None:  # noqa: ANN001
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    p = _cli("analyze", str(synthetic_slides.png), "--mpp", "0.5", "--out", str(blocker),
             "--no-progress", "--outputs", "overlay")
    assert p.returncode != 0
    assert "Traceback" not in p.stderr
    assert "marrowscope:" in p.stderr


def test_invalid_study_uid_is_refused_before_any_work(synthetic_slides, tmp_path: Path) -> None:  # noqa: ANN001
    p = _cli("analyze", str(synthetic_slides.png), "--mpp", "0.5", "--out", str(tmp_path),
             "--study-uid", "1.2.03.x")
    assert p.returncode == 2
    assert "not a DICOM UID" in p.stderr


