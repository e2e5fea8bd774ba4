"""The nnU-Net segmenter on tiny random-weight models: layouts, nnU-Net parity, labels, folds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.nnunet
torch = pytest.importorskip("torch")
pytest.importorskip("nnunetv2")

from adapters.segmenters.nnunet import NnUNetSegmenter  # noqa: E402
from adapters.segmenters.nnunet_engine import grey_like_pil  # noqa: E402
from adapters.segmenters.nnunet_manifest import (  # noqa: E402
    Manifest,
    ModelEntry,
    load_manifest,
    register_model,
    sha256_file,
)
from service.training.tiny_model import TinyModel, write_tiny_model  # noqa: E402

EMPTY = Manifest()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return write_tiny_model(tmp_path_factory.mktemp("tiny-rgb"))


@pytest.fixture(scope="module")
def tiles() -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (3, 80, 72, 3), dtype=np.uint8)


def seg(path: Path, **kw: object) -> NnUNetSegmenter:
    kw.setdefault("device", "cpu")
    kw.setdefault("precision", "fp32")  # parity with nnU-Net's fp32 CPU predictor
    return NnUNetSegmenter(path, manifest=EMPTY, trust_unlisted=True, **kw)  # type: ignore[arg-type]


def assert_close_to_nnunet(ours: np.ndarray, ref: np.ndarray) -> None:
    """nnU-Net accumulates window logits in float16; we keep float32: equal up to fp16 rounding."""
    np.testing.assert_allclose(ours, ref, atol=1e-2)
    assert float(np.abs(ours - ref).mean()) < 1e-3


def nnunet_reference(folder: Path, image_chw: np.ndarray, mirror: bool = False) -> np.ndarray:
    """nnU-Net's own predictor on one image (C, H, W) → class probabilities (K, H, W)."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    predictor = nnUNetPredictor(
        tile_step_size=0.5, use_gaussian=True, use_mirroring=mirror,
        perform_everything_on_device=False, device=torch.device("cpu"), allow_tqdm=False,
    )
    predictor.initialize_from_trained_model_folder(str(folder), use_folds=(0,))
    _, probs = predictor.predict_single_npy_array(
        image_chw[:, None].astype(np.float32), {"spacing": (999, 1, 1)}, None, None, True
    )
    return np.asarray(probs)[:, 0]


def test_three_layouts_load_and_agree(tiny: TinyModel, tiles: np.ndarray) -> None:
    results = [seg(p).predict(tiles) for p in (tiny.folder, tiny.zip, tiny.pth)]
    for r in results:
        assert r.marrow.shape == tiles.shape[:3]
        assert r.marrow.dtype == np.float32
        assert r.fat is None
        assert float(r.marrow.min()) >= 0.0
        assert float(r.marrow.max()) <= 1.0
    np.testing.assert_array_equal(results[0].marrow, results[1].marrow)
    np.testing.assert_array_equal(results[0].marrow, results[2].marrow)


def test_matches_nnunet_predictor(tiny: TinyModel, tiles: np.ndarray) -> None:
    ours = seg(tiny.folder).predict(tiles[:1]).marrow[0]
    ref = nnunet_reference(tiny.folder, tiles[0].transpose(2, 0, 1))
    assert_close_to_nnunet(ours, ref[1])


def test_matches_nnunet_with_mirroring_and_black_border(tiny: TinyModel, tiles: np.ndarray) -> None:
    tile = tiles[0].copy()
    tile[:, :10] = 0  # nnU-Net crops to the nonzero region and predicts background outside
    ours = seg(tiny.folder, tta=True).predict(tile[None]).marrow[0]
    ref = nnunet_reference(tiny.folder, tile.transpose(2, 0, 1), mirror=True)
    assert_close_to_nnunet(ours, ref[1])
    assert float(ours[:, :10].max()) == 0.0


def test_grey_model_is_fed_pillow_luma(tmp_path: Path, tiles: np.ndarray) -> None:
    model = write_tiny_model(tmp_path, channels="grey")
    s = seg(model.pth)
    assert s.spec.channels == "grey"
    ours = s.predict(tiles[:1]).marrow[0]
    ref = nnunet_reference(model.folder, grey_like_pil(tiles[0])[None])
    assert_close_to_nnunet(ours, ref[1])


def test_grey_matches_pillow_convert() -> None:
    from PIL import Image

    rgb = np.random.default_rng(3).integers(0, 256, (17, 19, 3), dtype=np.uint8)
    np.testing.assert_array_equal(grey_like_pil(rgb), np.asarray(Image.fromarray(rgb).convert("L")))


def test_fat_label_gives_fat_probability(tmp_path: Path, tiles: np.ndarray) -> None:
    model = write_tiny_model(tmp_path, with_fat=True)
    s = seg(model.zip)
    assert s.spec.provides_fat
    out = s.predict(tiles)
    assert out.fat is not None
    assert np.all(out.marrow >= out.fat - 1e-6)
    ref = nnunet_reference(model.folder, tiles[0].transpose(2, 0, 1))
    assert_close_to_nnunet(out.fat[0], ref[2])
    assert_close_to_nnunet(out.marrow[0], ref[1] + ref[2])


def test_fold_ensemble_averages_probabilities(tmp_path: Path, tiles: np.ndarray) -> None:
    model = write_tiny_model(tmp_path, folds=(0, 1))
    both = seg(model.folder).predict(tiles).marrow
    f0 = seg(model.folder, folds=("0",)).predict(tiles).marrow
    f1 = seg(model.folder, folds=("1",)).predict(tiles).marrow
    np.testing.assert_allclose(both, (f0 + f1) / 2, atol=1e-6)
    assert seg(model.zip).spec.parameters[1] == ("folds", "all")


def test_tile_smaller_than_patch_is_padded(tmp_path: Path) -> None:
    model = write_tiny_model(tmp_path, patch=64)
    tiles = np.random.default_rng(2).integers(0, 256, (2, 40, 50, 3), dtype=np.uint8)
    ours = seg(model.folder).predict(tiles).marrow
    ref = nnunet_reference(model.folder, tiles[1].transpose(2, 0, 1))
    assert_close_to_nnunet(ours[1], ref[1])


def test_manifest_pins_sha256_and_gives_mpp(tiny: TinyModel, tmp_path: Path) -> None:
    manifest_path = tmp_path / "manifest.json"
    register_model(
        manifest_path,
        ModelEntry(name="tiny", path=tiny.zip, sha256=sha256_file(tiny.zip), mpp=1.5,
                   channels="rgb", labels=(("background", 0), ("marrow", 1)),
                   licence="CC0", source="test", default=True),
    )
    manifest = load_manifest((manifest_path,))
    s = NnUNetSegmenter(None, manifest=manifest, trust_unlisted=False, device="cpu")
    assert s.path == tiny.zip.resolve()
    assert (s.spec.mpp, s.spec.version, s.spec.sha256) == (1.5, "tiny", sha256_file(tiny.zip))
    s.load()
    by_name = NnUNetSegmenter("tiny", manifest=manifest, trust_unlisted=False, device="cpu")
    assert by_name.spec.version == "tiny"


def test_module_import_does_not_import_torch() -> None:
    code = (
        "import sys, adapters.segmenters.nnunet, adapters.segmenters.registry;"
        "assert 'torch' not in sys.modules and 'nnunetv2' not in sys.modules"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)


def test_default_manifest_is_readable() -> None:
    manifest = load_manifest()
    for entry in manifest.entries:
        assert entry.mpp > 0
        assert len(entry.sha256) == 64


def test_bf16_on_cpu_is_close_and_recorded(tiny: TinyModel, tiles: np.ndarray) -> None:
    fp32 = seg(tiny.folder)
    bf16 = seg(tiny.folder, precision="bf16")
    assert ("precision", "fp32") in fp32.spec.parameters
    assert ("precision", "bf16") in bf16.spec.parameters
    diff = np.abs(fp32.predict(tiles).marrow - bf16.predict(tiles).marrow)
    assert float(diff.mean()) < 0.02


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_bf16_close_to_cpu(tiny: TinyModel, tiles: np.ndarray) -> None:
    cpu = seg(tiny.folder, device="cpu").predict(tiles).marrow
    gpu = seg(tiny.folder, device="cuda").predict(tiles).marrow
    assert float(np.abs(cpu - gpu).mean()) < 0.02
