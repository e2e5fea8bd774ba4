"""``marrowscope train``: nnU-Net plan/preprocess/train on an exported dataset, then register.

Runs nnU-Net's own command-line tools as child processes with ``nnUNet_raw``,
``nnUNet_preprocessed`` and ``nnUNet_results`` set, so a run is exactly what nnU-Net documents
(and can be resumed or inspected with nnU-Net's tools).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from service.domain.errors import InvalidInput, ModelUnavailable
from service.training.nnunet_raw import DATASET_NAME

# nnU-Net's stock schedule variants (nnUNetTrainer_Xepochs); 1000 is nnUNetTrainer itself
EPOCH_TRAINERS = {
    1: "nnUNetTrainer_1epoch",
    5: "nnUNetTrainer_5epochs",
    10: "nnUNetTrainer_10epochs",
    20: "nnUNetTrainer_20epochs",
    50: "nnUNetTrainer_50epochs",
    100: "nnUNetTrainer_100epochs",
    250: "nnUNetTrainer_250epochs",
    500: "nnUNetTrainer_500epochs",
    750: "nnUNetTrainer_750epochs",
    1000: "nnUNetTrainer",
    2000: "nnUNetTrainer_2000epochs",
    4000: "nnUNetTrainer_4000epochs",
    8000: "nnUNetTrainer_8000epochs",
}


@dataclass(frozen=True)
class TrainOptions:
    dataset: Path  # nnUNet_raw/DatasetNNN_Name
    work: Path  # holds nnUNet_preprocessed/ and nnUNet_results/
    fold: str = "0"
    epochs: int = 1000
    device: str = "cuda"
    plans: str = "nnUNetPlans"
    processes: int = 2


@dataclass(frozen=True)
class TrainedModel:
    folder: Path  # the Trainer__Plans__2d results folder
    fold: str
    mpp: float
    channels: str
    labels: dict[str, int]


Runner = Callable[[list[str], dict[str, str]], None]

# nnUNetv2_train's own entry point. Its trainer lookup imports every trainer module, and the
# Primus ones need timm, which nnU-Net does not install; stock trainers are resolved directly
# and anything else falls back to nnU-Net's search.
TRAIN_ENTRY = (
    "import sys\n"
    "import nnunetv2.run.run_training as rt\n"
    "from nnunetv2.training.nnUNetTrainer import nnUNetTrainer as base\n"
    "from nnunetv2.training.nnUNetTrainer.variants.training_length import "
    "nnUNetTrainer_Xepochs as xe\n"
    "search = rt.recursive_find_trainer_class_by_name\n"
    "rt.recursive_find_trainer_class_by_name = lambda name: (getattr(base, name, None) or "
    "getattr(xe, name, None) or search(name))\n"
    "sys.argv[0] = 'nnUNetv2_train'\n"
    "rt.run_training_entry()\n"
)


def nnunet_env(raw_root: Path, work: Path) -> dict[str, str]:
    return {
        **os.environ,
        "nnUNet_raw": str(raw_root),
        "nnUNet_preprocessed": str(work / "nnUNet_preprocessed"),
        "nnUNet_results": str(work / "nnUNet_results"),
    }


def run_checked(cmd: list[str], env: dict[str, str]) -> None:
    """Runs an nnU-Net command (nnUNetv2_train through :data:`TRAIN_ENTRY`)."""
    print("+ " + " ".join(cmd), flush=True)
    if cmd[0] == "nnUNetv2_train":
        argv = [sys.executable, "-c", TRAIN_ENTRY, *cmd[1:]]
    else:
        exe = shutil.which(cmd[0]) or str(Path(sys.executable).parent / cmd[0])
        if not Path(exe).is_file():
            raise ModelUnavailable(f"{cmd[0]} not found: install nnunetv2 (pip install nnunetv2)")
        argv = [exe, *cmd[1:]]
    result = subprocess.run(argv, env=env, check=False)
    if result.returncode != 0:
        raise ModelUnavailable(f"{cmd[0]} failed with exit code {result.returncode}")


def train(options: TrainOptions, run: Runner = run_checked) -> TrainedModel:
    dataset = options.dataset.resolve()
    match = DATASET_NAME.match(dataset.name)
    if match is None or not (dataset / "dataset.json").is_file():
        raise InvalidInput(f"{dataset}: not an nnU-Net raw dataset (DatasetNNN_Name/dataset.json)")
    trainer = EPOCH_TRAINERS.get(options.epochs)
    if trainer is None:
        allowed = ", ".join(str(e) for e in EPOCH_TRAINERS)
        raise InvalidInput(f"--epochs {options.epochs}: nnU-Net ships schedules for {allowed}")
    dataset_json = json.loads((dataset / "dataset.json").read_text())
    meta = dataset_json.get("marrowscope", {})
    if "mpp" not in meta:
        raise InvalidInput(f"{dataset}/dataset.json has no marrowscope.mpp (export it with "
                           "`marrowscope export-dataset`)")
    work = options.work.resolve()
    env = nnunet_env(dataset.parent, work)
    dataset_id = str(int(match.group(1)))
    np = str(options.processes)
    run(["nnUNetv2_plan_and_preprocess", "-d", dataset_id, "-c", "2d", "-np", np,
         "--verify_dataset_integrity"], env)
    run(["nnUNetv2_train", dataset_id, "2d", options.fold, "-tr", trainer, "-p", options.plans,
         "-device", options.device], env)
    folder = work / "nnUNet_results" / dataset.name / f"{trainer}__{options.plans}__2d"
    spacing = _spacing(folder)
    return TrainedModel(
        folder=folder,
        fold=options.fold,
        mpp=float(meta["mpp"]) * spacing,
        channels="rgb" if len(dataset_json["channel_names"]) == 3 else "grey",
        labels={str(k): int(v) for k, v in dataset_json["labels"].items()},
    )


def _spacing(folder: Path) -> float:
    """The 2d configuration's in-plane spacing (1 for PNG datasets: no resampling)."""
    plans_file = folder / "plans.json"
    if not plans_file.is_file():
        return 1.0
    plans = json.loads(plans_file.read_text())
    return float(plans["configurations"]["2d"].get("spacing", [1.0, 1.0])[-1])
