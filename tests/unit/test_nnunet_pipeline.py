"""The nnU-Net segmenter through the whole pipeline on CPU (analyze_to_dir on a synthetic PNG)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.nnunet
pytest.importorskip("torch")
pytest.importorskip("nnunetv2")

from adapters.segmenters.nnunet_manifest import TRUST_ENV, load_manifest  # noqa: E402
from adapters.synthetic.scene import SyntheticScene  # noqa: E402
from adapters.synthetic.writers import write_png  # noqa: E402
from service.bootstrap import analyze_to_dir  # noqa: E402
from service.pipeline.params import AnalysisParams, OutputRequest  # noqa: E402
from service.training.tiny_model import write_tiny_model  # noqa: E402


@pytest.fixture(scope="module")
def png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    scene = SyntheticScene(480, 320, mpp=2.0, seed=9, cellularity_target=50)
    return write_png(tmp_path_factory.mktemp("pipe") / "slide.png", 480, 320, scene.render_rgb)


def test_tiny_model_through_pipeline(
    png: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TRUST_ENV, "1")  # a random-weight model outside the manifest
    model = write_tiny_model(tmp_path / "model", patch=64)
    params = AnalysisParams(segmenter="nnunet", model=str(model.zip), device="cpu",
                            mpp_override=2.0, tile_size=256, overlap=32)
    result = analyze_to_dir(str(png), params, tmp_path / "out", OutputRequest(outputs=()))
    assert result.segmenter.startswith("nnunet")
    assert result.mpp_analyzed == pytest.approx(2.0)
    assert result.tiles_analyzed >= 1
    saved = json.loads((tmp_path / "out" / "result.json").read_text())
    assert saved["provenance"]["segmenter_sha256"] is None  # trusted by env, not pinned


def test_demo_model_through_pipeline(png: Path, tmp_path: Path) -> None:
    demo = load_manifest().default()
    params = AnalysisParams(segmenter="nnunet", device="cpu", mpp_override=2.0)
    result = analyze_to_dir(str(png), params, tmp_path / "out", OutputRequest(outputs=()))
    assert result.provenance.segmenter_sha256 == demo.sha256
    assert result.cellularity_pct is not None
