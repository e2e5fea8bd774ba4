"""Training path: export-dataset (masks, QuPath GeoJSON), train orchestration, register-model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from adapters.synthetic.scene import SyntheticScene
from adapters.synthetic.writers import write_png
from service.domain.errors import InvalidInput
from service.domain.geometry import Box
from service.training.export_dataset import rasterise, read_qupath_geojson, tile_origins
from service.training.train import TrainOptions, train
from service.transports.cli import main

W0, H0, MPP0 = 1200, 800, 0.5  # level-0 px; at 2 µm/px the slide is 300 x 200 px


@pytest.fixture(scope="module")
def slide(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SyntheticScene]:
    folder = tmp_path_factory.mktemp("export")
    scene = SyntheticScene(W0, H0, mpp=MPP0, seed=4, cellularity_target=40)
    return write_png(folder / "slide.png", W0, H0, scene.render_rgb), scene


def test_export_with_masks(slide: tuple[Path, SyntheticScene], tmp_path: Path) -> None:
    png, scene = slide
    truth = scene.truth(Box(0, 0, W0, H0), 4.0)  # 200 x 300 at 2 µm/px
    mask = tmp_path / "mask.png"
    Image.fromarray(np.where(truth > 0, 255, 0).astype(np.uint8)).save(mask)
    out = tmp_path / "nnUNet_raw" / "Dataset777_Export"
    code = main(["export-dataset", str(png), "--masks", str(mask), "--out", str(out),
                 "--mpp", "2.0", "--tile", "128", "--slide-mpp", str(MPP0), "--all-tiles"])
    assert code == 0
    ds = json.loads((out / "dataset.json").read_text())
    assert ds["labels"] == {"background": 0, "marrow": 1}
    assert len(ds["channel_names"]) == 3
    assert ds["marrowscope"]["mpp"] == 2.0
    images = sorted((out / "imagesTr").glob("*_0000.png"))
    labels = sorted((out / "labelsTr").glob("*.png"))
    # 300 x 200 px at 128 px: x starts 0, 128, 172; y starts 0, 72
    assert len(images) == len(labels) == ds["numTraining"] == 6
    first = np.asarray(Image.open(labels[0]))
    assert first.shape == (128, 128)
    assert set(np.unique(first)) <= {0, 1}
    np.testing.assert_array_equal(first, (truth[:128, :128] > 0).astype(np.uint8))
    assert np.asarray(Image.open(images[0])).shape == (128, 128, 3)


def test_export_with_qupath_annotations(slide: tuple[Path, SyntheticScene], tmp_path: Path) -> None:
    png, _ = slide
    square = [[0, 0], [400, 0], [400, 400], [0, 400], [0, 0]]
    hole = [[100, 100], [200, 100], [200, 200], [100, 200], [100, 100]]
    fat = [[240, 240], [320, 240], [320, 320], [240, 320], [240, 240]]
    doc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [square, hole]},
         "properties": {"classification": {"name": "Marrow"}}},
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [fat]},
         "properties": {"classification": {"name": "Adipocyte"}}},
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [square]},
         "properties": {"classification": {"name": "Ignore"}}},
    ]}
    geojson = tmp_path / "slide.geojson"
    geojson.write_text(json.dumps(doc))
    out = tmp_path / "Dataset778_Anno"
    assert main(["export-dataset", str(png), "--annotations", str(geojson), "--out", str(out),
                 "--mpp", "2.0", "--tile", "128", "--slide-mpp", str(MPP0), "--with-fat"]) == 0
    labels = sorted((out / "labelsTr").glob("*.png"))
    assert len(labels) == 2  # tiles (0, 0) and (0, 72) hold annotations; (128, *) do not
    lab = np.asarray(Image.open(labels[0]))
    assert lab[10, 10] == 1  # inside the square (level-0 40, 40)
    assert lab[37, 37] == 0  # inside the hole (level-0 150, 150)
    assert lab[70, 70] == 2  # fat (level-0 280, 280)
    assert lab[120, 120] == 0  # outside (level-0 480, 480)
    assert json.loads((out / "dataset.json").read_text())["labels"]["fat"] == 2


def test_export_rejects_bad_input(slide: tuple[Path, SyntheticScene], tmp_path: Path) -> None:
    png, _ = slide
    from service.training.nnunet_raw import RawDataset

    with pytest.raises(InvalidInput, match="DatasetNNN_Name"):
        RawDataset.create(tmp_path / "badname", "rgb", False, 2.0)
    empty = tmp_path / "empty.geojson"
    empty.write_text('{"type": "FeatureCollection", "features": []}')
    with pytest.raises(InvalidInput, match="no polygon annotations"):
        read_qupath_geojson(empty, with_fat=False)
    assert main(["export-dataset", str(png), str(png), "--masks", str(png), "--out",
                 str(tmp_path / "Dataset779_X")]) == 2


def test_tiling_and_rasterising() -> None:
    assert tile_origins(100, 128) == [0]
    assert tile_origins(300, 128) == [0, 128, 172]
    raster = rasterise([(1, [[(0, 0), (8, 0), (8, 8), (0, 8)]])], (2.0, 2.0), (6, 6))
    assert raster[:4, :4].all()
    assert not raster[5:, 5:].any()


def test_train_runs_nnunet_tools_with_env(tmp_path: Path) -> None:
    raw = tmp_path / "nnUNet_raw" / "Dataset777_Export"
    raw.mkdir(parents=True)
    (raw / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "R", "1": "G", "2": "B"}, "labels": {"background": 0, "marrow": 1},
        "numTraining": 1, "file_ending": ".png", "marrowscope": {"mpp": 2.0}}))
    calls: list[tuple[list[str], dict[str, str]]] = []

    def fake_run(cmd: list[str], env: dict[str, str]) -> None:
        calls.append((cmd, env))
        if cmd[0] == "nnUNetv2_train":
            results = tmp_path / "work/nnUNet_results/Dataset777_Export"
            folder = results / "nnUNetTrainer_5epochs__nnUNetPlans__2d"
            folder.mkdir(parents=True)
            (folder / "plans.json").write_text(
                json.dumps({"configurations": {"2d": {"spacing": [1.0, 1.0]}}}))

    trained = train(TrainOptions(dataset=raw, work=tmp_path / "work", epochs=5, device="cpu"),
                    run=fake_run)
    assert [c[0][0] for c in calls] == ["nnUNetv2_plan_and_preprocess", "nnUNetv2_train"]
    assert calls[1][0][1:] == ["777", "2d", "0", "-tr", "nnUNetTrainer_5epochs", "-p",
                               "nnUNetPlans", "-device", "cpu"]
    env = calls[0][1]
    assert env["nnUNet_raw"] == str(raw.parent)
    assert env["nnUNet_results"] == str((tmp_path / "work/nnUNet_results").resolve())
    assert (trained.mpp, trained.channels, trained.fold) == (2.0, "rgb", "0")
    with pytest.raises(InvalidInput, match="--epochs 7"):
        train(TrainOptions(dataset=raw, work=tmp_path / "work", epochs=7), run=fake_run)


@pytest.mark.nnunet
def test_register_model_then_load_without_trust_flag(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from adapters.segmenters.nnunet import NnUNetSegmenter
    from adapters.segmenters.nnunet_manifest import load_manifest
    from service.training.tiny_model import write_tiny_model

    model = write_tiny_model(tmp_path / "m")
    manifest = tmp_path / "manifest.json"
    for path, name in ((model.folder, "tiny-folder"), (model.pth, "tiny-pth")):
        assert main(["register-model", str(path), "--mpp", "1.0", "--name", name,
                     "--manifest", str(manifest)]) == 0
    entries = load_manifest((manifest,))
    for name in ("tiny-folder", "tiny-pth"):
        seg = NnUNetSegmenter(name, manifest=entries, trust_unlisted=False, device="cpu")
        assert seg.spec.mpp == 1.0
        seg.load()
