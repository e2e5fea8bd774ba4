"""Bad or untrusted nnU-Net models fail with one clear ModelUnavailable message each."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.nnunet
torch = pytest.importorskip("torch")
pytest.importorskip("nnunetv2")

from adapters.segmenters.nnunet import NnUNetSegmenter  # noqa: E402
from adapters.segmenters.nnunet_manifest import Manifest  # noqa: E402
from service.domain.errors import InvalidInput, ModelUnavailable  # noqa: E402
from service.training.tiny_model import TinyModel, write_tiny_model  # noqa: E402

TILES = np.full((1, 40, 40, 3), 200, dtype=np.uint8)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return write_tiny_model(tmp_path_factory.mktemp("tiny-errors"))


def load(path: Path, trust: bool = True, **kw: object) -> NnUNetSegmenter:
    kw.setdefault("device", "cpu")
    s = NnUNetSegmenter(path, manifest=Manifest(), trust_unlisted=trust, **kw)  # type: ignore[arg-type]
    s.load()
    return s


def test_untrusted_checkpoint_is_refused_before_unpickling(tiny: TinyModel) -> None:
    with pytest.raises(ModelUnavailable, match="untrusted checkpoint.*sha256"):
        load(tiny.pth, trust=False)
    with pytest.raises(ModelUnavailable, match="untrusted"):
        load(tiny.zip, trust=False)
    with pytest.raises(ModelUnavailable, match="untrusted"):
        load(tiny.folder, trust=False)


def test_missing_path() -> None:
    with pytest.raises(ModelUnavailable, match="model not found"):
        NnUNetSegmenter("/nonexistent/model.pth", manifest=Manifest())


def test_corrupt_file(tmp_path: Path, tiny: TinyModel) -> None:
    bad = tmp_path / "truncated.pth"
    bad.write_bytes(tiny.pth.read_bytes()[:500])
    with pytest.raises(ModelUnavailable, match="corrupt or unreadable checkpoint"):
        load(bad)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ModelUnavailable, match="corrupt or unreadable"):
        load(garbage)


def test_corrupt_zip(tmp_path: Path, tiny: TinyModel) -> None:
    bad = tmp_path / "model.zip"
    bad.write_bytes(b"PK\x03\x04" + b"\0" * 64)
    with pytest.raises(ModelUnavailable, match="model.zip"):
        load(bad)


def test_not_an_nnunet_checkpoint(tmp_path: Path) -> None:
    other = tmp_path / "resnet.pth"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, other)
    with pytest.raises(ModelUnavailable, match="not an nnU-Net v2 checkpoint"):
        load(other)


def test_missing_fold(tiny: TinyModel) -> None:
    with pytest.raises(ModelUnavailable, match=r"missing fold 3 \(available: 0\)"):
        load(tiny.folder, folds=("3",))
    with pytest.raises(ModelUnavailable, match="missing fold 3"):
        load(tiny.zip, folds=("3",))


def test_folder_without_checkpoints(tmp_path: Path, tiny: TinyModel) -> None:
    folder = tmp_path / "model"
    shutil.copytree(tiny.folder, folder)
    shutil.rmtree(folder / "fold_0")
    with pytest.raises(ModelUnavailable, match="no fold_N/checkpoint_final.pth"):
        load(folder)


def test_folder_without_plans(tmp_path: Path) -> None:
    (tmp_path / "fold_0").mkdir()
    with pytest.raises(ModelUnavailable, match="not an nnU-Net results folder"):
        load(tmp_path)


def test_unknown_trainer_class(tmp_path: Path, tiny: TinyModel) -> None:
    ckpt = torch.load(tiny.pth, weights_only=False)
    ckpt["trainer_name"] = "nnUNetTrainerThatDoesNotExist"
    path = tmp_path / "custom.pth"
    torch.save(ckpt, path)
    with pytest.raises(ModelUnavailable, match="unknown trainer class 'nnUNetTrainerThatDoesNot"):
        load(path)


def test_channel_mismatch(tmp_path: Path, tiny: TinyModel) -> None:
    ckpt = torch.load(tiny.pth, weights_only=False)
    ckpt["init_args"]["dataset_json"]["channel_names"] = {"0": "grey"}
    config = ckpt["init_args"]["plans"]["configurations"]["2d"]
    config["normalization_schemes"] = ["ZScoreNormalization"]
    path = tmp_path / "grey_declared.pth"
    torch.save(ckpt, path)
    with pytest.raises(ModelUnavailable, match="channel mismatch: weights expect 3 input channels"):
        load(path)
    ckpt["init_args"]["dataset_json"]["channel_names"] = {"0": "a", "1": "b"}
    torch.save(ckpt, path)
    with pytest.raises(ModelUnavailable, match="channel mismatch"):
        load(path)


def test_3d_model_rejected(tmp_path: Path, tiny: TinyModel) -> None:
    ckpt = torch.load(tiny.pth, weights_only=False)
    ckpt["init_args"]["plans"]["configurations"]["2d"]["patch_size"] = [8, 32, 32]
    path = tmp_path / "3d.pth"
    torch.save(ckpt, path)
    with pytest.raises(ModelUnavailable, match="only 2D models work"):
        load(path)


def test_zip_with_bad_json(tmp_path: Path, tiny: TinyModel) -> None:
    out = tmp_path / "bad.zip"
    with zipfile.ZipFile(tiny.zip) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            dst.writestr(name, b"{broken" if name.endswith("plans.json") else data)
    with pytest.raises(ModelUnavailable, match="plans.json: invalid JSON"):
        load(out)


def test_missing_mpp_without_manifest(tmp_path: Path, tiny: TinyModel) -> None:
    folder = tmp_path / "model"
    shutil.copytree(tiny.folder, folder)
    ds = json.loads((folder / "dataset.json").read_text())
    del ds["marrowscope"]
    (folder / "dataset.json").write_text(json.dumps(ds))
    s = NnUNetSegmenter(folder, manifest=Manifest(), trust_unlisted=True)
    with pytest.raises(ModelUnavailable, match="training µm/px unknown"):
        _ = s.spec


def test_no_default_model() -> None:
    with pytest.raises(ModelUnavailable, match="no default nnU-Net model"):
        NnUNetSegmenter(None, manifest=Manifest())


def test_bad_tiles_and_device(tiny: TinyModel) -> None:
    s = load(tiny.pth)
    with pytest.raises(InvalidInput, match="uint8"):
        s.predict(np.zeros((1, 8, 8, 3), dtype=np.float32))  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="unknown device 'tpu'"):
        NnUNetSegmenter(tiny.pth, manifest=Manifest(), device="tpu")


def test_cli_refuses_an_unlisted_checkpoint_unless_explicitly_trusted(
        tiny: TinyModel, synthetic_slides, tmp_path: Path) -> None:  # noqa: ANN001
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "MARROWSCOPE_TRUST_MODELS"}
    base = [sys.executable, "-m", "service.transports.cli", "analyze", str(synthetic_slides.png),
            "--mpp", "0.5", "--segmenter", "nnunet", "--model", str(tiny.pth), "--device", "cpu",
            "--outputs", "overlay", "--no-progress"]
    refused = subprocess.run([*base, "--out", str(tmp_path / "a")], capture_output=True,
                             text=True, env=env, timeout=300)
    assert refused.returncode == 5
    assert "untrusted" in refused.stderr and "Traceback" not in refused.stderr
    trusted = subprocess.run([*base, "--out", str(tmp_path / "b"), "--trust-model"],
                             capture_output=True, text=True, env=env, timeout=300)
    assert trusted.returncode == 0, trusted.stderr
    assert "can run code" in trusted.stderr
