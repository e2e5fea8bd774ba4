"""CLI: ``export-dataset``, ``train`` and ``register-model`` (the nnU-Net training path)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import numpy.typing as npt

from service.domain.errors import InvalidInput


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Registers this module's sub-commands; each sets ``func(args) -> int``."""
    exp = subparsers.add_parser(
        "export-dataset",
        help="annotated slides → nnU-Net raw dataset (tiles at a chosen µm/px)",
        description="Tiles slides at --mpp and writes imagesTr/, labelsTr/ and dataset.json. "
        "Labels: QuPath GeoJSON polygons (one file per slide, same order) or mask images "
        "covering each whole slide (0 background, 1 or 255 marrow, 2 fat).",
    )
    exp.add_argument("slides", nargs="+", type=Path, help="slide files")
    src = exp.add_mutually_exclusive_group(required=True)
    src.add_argument("--annotations", nargs="+", type=Path, help="QuPath GeoJSON per slide")
    src.add_argument("--masks", nargs="+", type=Path, help="label mask image per slide")
    exp.add_argument("--out", type=Path, required=True, help="nnUNet_raw/DatasetNNN_Name")
    exp.add_argument("--mpp", type=float, default=2.0, help="µm/px of the tiles (default 2.0)")
    exp.add_argument("--tile", type=int, default=512, help="tile size in px (default 512)")
    exp.add_argument("--channels", choices=("rgb", "grey"), default="rgb")
    exp.add_argument("--with-fat", action="store_true", help="fat/adipocyte class → label 2")
    exp.add_argument("--all-tiles", action="store_true", help="also tiles without labels")
    exp.add_argument("--slide-mpp", type=float, default=None, help="override slide µm/px")
    exp.set_defaults(func=_export)

    tr = subparsers.add_parser(
        "train",
        help="nnU-Net plan/preprocess/train an exported dataset, then register the model",
    )
    tr.add_argument("dataset", type=Path, help="nnUNet_raw/DatasetNNN_Name (from export-dataset)")
    tr.add_argument("--work", type=Path, default=Path("nnunet-work"),
                    help="folder for nnUNet_preprocessed/ and nnUNet_results/")
    tr.add_argument("--fold", default="0", help="0-4 or all (default 0)")
    tr.add_argument("--epochs", type=int, default=1000,
                    help="one of nnU-Net's schedules: 1 5 10 20 50 100 250 500 750 1000 ...")
    tr.add_argument("--device", default="cuda", choices=("cuda", "cpu", "mps"))
    tr.add_argument("--name", default=None, help="model name in the manifest (default: dataset)")
    tr.add_argument("--manifest", type=Path, default=None, help="manifest to register in")
    tr.add_argument("--licence", default="unspecified")
    tr.add_argument("--no-register", action="store_true")
    tr.set_defaults(func=_train)

    reg = subparsers.add_parser(
        "register-model",
        help="trust an nnU-Net model (pin its sha256) and record its µm/px in the manifest",
    )
    reg.add_argument("model", type=Path, help="results folder, exported .zip or checkpoint .pth")
    reg.add_argument("--mpp", type=float, required=True, help="µm/px the network analyses at")
    reg.add_argument("--name", required=True)
    reg.add_argument("--channels", choices=("rgb", "grey"), default=None,
                     help="input channels (default: read from the model)")
    reg.add_argument("--licence", default="unspecified")
    reg.add_argument("--source", default="user")
    reg.add_argument("--default", action="store_true", help="use it when --model is not given")
    reg.add_argument("--manifest", type=Path, default=None)
    reg.set_defaults(func=_register)


def _export(args: argparse.Namespace) -> int:
    from service.bootstrap import open_slide
    from service.training.export_dataset import (
        ExportOptions,
        export_dataset,
        rasterise,
        read_mask,
        read_qupath_geojson,
    )

    sources: list[Path] = args.annotations or args.masks
    if len(sources) != len(args.slides):
        raise InvalidInput(
            f"{len(args.slides)} slides but {len(sources)} label files (give one per slide)"
        )
    options = ExportOptions(out=args.out, mpp=args.mpp, tile_px=args.tile, channels=args.channels,
                            with_fat=args.with_fat, all_tiles=args.all_tiles,
                            mpp_override=args.slide_mpp)

    def labels_for(
        i: int, scale: tuple[float, float], size: tuple[int, int]
    ) -> npt.NDArray[np.uint8]:
        if args.annotations:
            return rasterise(read_qupath_geojson(sources[i], args.with_fat), scale, size)
        return read_mask(sources[i], size)

    summary = export_dataset(args.slides, labels_for, options, open_slide)
    print(f"{summary.cases} cases from {summary.slides} slides → {summary.dataset_json}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from service.training.registration import register_trained
    from service.training.train import TrainOptions, train

    trained = train(TrainOptions(dataset=args.dataset, work=args.work, fold=args.fold,
                                 epochs=args.epochs, device=args.device))
    print(f"trained: {trained.folder} (fold {trained.fold})")
    if not args.no_register:
        entry = register_trained(trained, args.name or args.dataset.name, args.licence,
                                 args.manifest)
        print(f"registered {entry.name} ({entry.sha256[:12]}…, {entry.mpp} µm/px); "
              f"use: marrowscope analyze --segmenter nnunet --model {entry.name}")
    return 0


def _register(args: argparse.Namespace) -> int:
    from service.training.registration import register_path

    entry = register_path(args.model, name=args.name, mpp=args.mpp, channels=args.channels,
                          licence=args.licence, source=args.source, default=args.default,
                          manifest=args.manifest)
    print(f"registered {entry.name}: sha256 {entry.sha256}, {entry.mpp} µm/px, {entry.channels}")
    return 0
