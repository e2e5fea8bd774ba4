"""Trains, exports and registers the demo nnU-Net model on synthetic slides (CPU, ~30 min).

    nice -n 10 python -m service.training.demo_model [--work build/demo_model] [--epochs 50]
        [--iters 40] [--threads 1] [--budget-min 30]

Real nnU-Net v2: fingerprint, ExperimentPlanner plans, DefaultPreprocessor, nnUNetTrainer
training loop (augmentation, Dice+CE loss, deep supervision, poly LR). Only the schedule (epochs,
iterations) and the network width (features 8-128, 5 stages, patch 256²) are slimmed so that it
trains on two CPU cores and analyses a slide on CPU in seconds. The result is exported in
``nnUNetv2_export_model_to_zip`` layout to ``checkpoints/`` and registered in the manifest.
Training stops at the wall-clock budget if the epochs do not fit (shared CPUs); then nnU-Net's
best checkpoint so far is exported.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

DATASET = "Dataset501_MarrowDemo"
PLANS = "marrowscopeDemoPlans"
TRAINER = "nnUNetTrainerMarrowscopeDemo"
MODEL_NAME = "marrowscope-demo-synthetic"
MODEL_FILE = "marrowscope_demo_synthetic.zip"
MPP = 2.0
FEATURES = [8, 16, 32, 64, 128]
PATCH = [256, 256]
BATCH = 8


def set_nnunet_env(work: Path) -> dict[str, str]:
    """nnU-Net's three folders under ``work``; must run before nnunetv2 is imported."""
    env = {
        "nnUNet_raw": str(work / "nnUNet_raw"),
        "nnUNet_preprocessed": str(work / "nnUNet_preprocessed"),
        "nnUNet_results": str(work / "nnUNet_results"),
        "nnUNet_n_proc_DA": "1",  # the planner needs ≥ 1; training sets 0 (no workers)
        "nnUNet_compile": "false",
    }
    for key, value in env.items():
        if key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
            Path(value).mkdir(parents=True, exist_ok=True)
        os.environ[key] = value
    return env


def write_dataset(raw: Path, cases: int, size_px: int, seed: int) -> None:
    from service.training.nnunet_raw import RawDataset
    from service.training.synthetic_cases import render_cases

    folder = raw / DATASET
    if (folder / "dataset.json").is_file():
        print(f"dataset exists: {folder}", flush=True)
        return
    ds = RawDataset.create(folder, channels="rgb", with_fat=False, mpp=MPP)
    for case in render_cases(cases, size_px, MPP, seed):
        ds.add(case.name, case.rgb, (case.truth > 0).astype("uint8"))
    ds.finish("Synthetic H&E-like marrow (adapters/synthetic/scene.py); label 1 = marrow space")
    print(f"wrote {cases} cases to {folder}", flush=True)


def slim_plans(preprocessed: Path) -> dict[str, Any]:
    """A plans file ``marrowscopeDemoPlans``: nnUNetPlans with a slim 2d network."""
    base = json.loads((preprocessed / DATASET / "nnUNetPlans.json").read_text())
    plans = dict(base)
    plans["plans_name"] = PLANS
    cfg = dict(base["configurations"]["2d"])
    arch = dict(cfg["architecture"])
    kwargs = dict(arch["arch_kwargs"])
    n = len(FEATURES)
    kwargs.update(
        n_stages=n,
        features_per_stage=FEATURES,
        kernel_sizes=[[3, 3]] * n,
        strides=[[1, 1]] + [[2, 2]] * (n - 1),
        n_conv_per_stage=[2] * n,
        n_conv_per_stage_decoder=[2] * (n - 1),
    )
    arch["arch_kwargs"] = kwargs
    cfg.update(architecture=arch, patch_size=PATCH, batch_size=BATCH)
    cfg["data_identifier"] = base["configurations"]["2d"]["data_identifier"]  # reuse 2d data
    plans["configurations"] = {"2d": cfg}
    (preprocessed / DATASET / f"{PLANS}.json").write_text(json.dumps(plans, indent=2))
    return plans


def plan_and_preprocess(dataset_id: int) -> None:
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprints,
        plan_experiments,
        preprocess,
    )

    extract_fingerprints([dataset_id], num_processes=1, check_dataset_integrity=True)
    plan_experiments([dataset_id])
    preprocess([dataset_id], "nnUNetPlans", configurations=("2d",), num_processes=(1,))


def train(
    plans: dict[str, Any], dataset_json: dict[str, Any], epochs: int, iters: int, budget_s: float
) -> Path:
    import torch

    from service.training.demo_trainer import TrainingBudgetReached, make_trainer_class

    os.environ["NNUNET_N_PROC_DA"] = "0"  # augment in the training process (2 shared cores)
    torch.manual_seed(0)
    trainer_cls = make_trainer_class(epochs, iters, budget_s)
    trainer = trainer_cls(plans, "2d", 0, dataset_json, device=torch.device("cpu"))
    try:
        trainer.run_training()
    except TrainingBudgetReached as stop:
        print(f"wall-clock budget reached: {stop}; exporting checkpoint_best", flush=True)
        for loader in (trainer.dataloader_train, trainer.dataloader_val):
            if hasattr(loader, "_finish"):
                loader._finish()
    return Path(trainer.output_folder)


def export(results_fold: Path, checkpoints: Path) -> Path:
    """Zip in nnUNetv2_export_model_to_zip layout; checkpoint slimmed for inference."""
    import torch

    source = results_fold / "checkpoint_final.pth"
    if not source.is_file():  # stopped at the wall-clock budget: the best epoch so far
        source = results_fold / "checkpoint_best.pth"
    ckpt = torch.load(source, map_location="cpu", weights_only=False)
    print(f"exporting {source.name} (epoch {ckpt['current_epoch']})", flush=True)
    # the subclass only changes the schedule; nnUNetTrainer rebuilds the identical network, so
    # any nnU-Net installation (nnUNetv2_predict included) can load the exported model
    ckpt["trainer_name"] = "nnUNetTrainer"
    ckpt["optimizer_state"] = None
    ckpt["grad_scaler_state"] = None
    model_dir = results_fold.parent
    arc_root = f"{DATASET}/nnUNetTrainer__{PLANS}__2d"
    out = checkpoints / MODEL_FILE
    tmp_pth = model_dir / "export_checkpoint_final.pth"
    torch.save(ckpt, tmp_pth)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        # fixed timestamps so the same weights give the same zip (and sha256)
        for src, arc in (
            (model_dir / "dataset.json", f"{arc_root}/dataset.json"),
            (model_dir / "plans.json", f"{arc_root}/plans.json"),
            (model_dir / "dataset_fingerprint.json", f"{arc_root}/dataset_fingerprint.json"),
            (tmp_pth, f"{arc_root}/fold_0/checkpoint_final.pth"),
            (results_fold / "progress.png", f"{arc_root}/fold_0/progress.png"),
        ):
            if src.is_file():
                info = zipfile.ZipInfo(arc, date_time=(2026, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, src.read_bytes())
    tmp_pth.unlink()
    return out


def register(zip_path: Path, checkpoints: Path) -> str:
    from adapters.segmenters.nnunet_manifest import ModelEntry, register_model, sha256_file

    sha = sha256_file(zip_path)
    register_model(
        checkpoints / "manifest.json",
        ModelEntry(
            name=MODEL_NAME,
            path=zip_path,
            sha256=sha,
            mpp=MPP,
            channels="rgb",
            labels=(("background", 0), ("marrow", 1)),
            licence="Apache-2.0",
            source="python -m service.training.demo_model (synthetic slides, "
            "adapters/synthetic/scene.py); see checkpoints/MODEL_CARD.md",
            default=True,
            description="Demo only: trained on synthetic data, not for clinical use.",
        ),
    )
    return sha


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("build/demo_model"))
    parser.add_argument("--checkpoints", type=Path, default=Path("checkpoints"))
    parser.add_argument("--cases", type=int, default=40)
    parser.add_argument("--size", type=int, default=512, help="case size in px at 2 µm/px")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--iters", type=int, default=40, help="iterations per epoch")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: on shared cores 2 threads ran far slower)")
    parser.add_argument("--budget-min", type=float, default=30.0,
                        help="stop training after this many minutes (default 30)")
    parser.add_argument("--fresh", action="store_true", help="delete --work first")
    args = parser.parse_args(argv)

    work = args.work.resolve()
    if args.fresh and work.exists():
        shutil.rmtree(work)
    env = set_nnunet_env(work)
    import torch

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    write_dataset(Path(env["nnUNet_raw"]), args.cases, args.size, args.seed)
    print(f"[{time.perf_counter() - t0:.0f}s] dataset ready", flush=True)
    plan_and_preprocess(501)
    plans = slim_plans(Path(env["nnUNet_preprocessed"]))
    dataset_json = json.loads((Path(env["nnUNet_raw"]) / DATASET / "dataset.json").read_text())
    print(f"[{time.perf_counter() - t0:.0f}s] planned + preprocessed", flush=True)
    fold_dir = train(plans, dataset_json, args.epochs, args.iters, args.budget_min * 60)
    print(f"[{time.perf_counter() - t0:.0f}s] trained: {fold_dir}", flush=True)
    zip_path = export(fold_dir, args.checkpoints.resolve())
    sha = register(zip_path, args.checkpoints.resolve())
    size_mb = zip_path.stat().st_size / 1e6
    print(f"[{time.perf_counter() - t0:.0f}s] exported {zip_path} ({size_mb:.1f} MB) sha256 {sha}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
