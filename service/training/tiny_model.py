"""A tiny random-weight nnU-Net v2 model written in all three layouts marrowscope loads.

For tests and for checking an installation without the demo model: a results folder
(``DatasetNNN/Trainer__Plans__2d/{plans.json,dataset.json,fold_N/checkpoint_final.pth}``),
the same as an ``nnUNetv2_export_model_to_zip`` zip, and fold 0's bare checkpoint ``.pth``.
The checkpoint dictionaries have the keys nnU-Net v2's trainer writes.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

DATASET = "Dataset999_TinyMarrow"
TRAINER = "nnUNetTrainer"
PLANS = "nnUNetPlans"
DEFAULT_2D_FEATURES = (32, 64, 128, 256, 512, 512, 512, 512)


@dataclass(frozen=True)
class TinyModel:
    folder: Path  # the Trainer__Plans__2d folder
    zip: Path
    pth: Path


def tiny_plans(
    channels: Literal["rgb", "grey"],
    patch: int = 32,
    scheme: str = "ZScoreNormalization",
    features: tuple[int, ...] = (4, 8, 16),
    n_conv: int = 1,
) -> dict[str, Any]:
    n_in = 3 if channels == "rgb" else 1
    stages = len(features)
    return {
        "dataset_name": DATASET,
        "plans_name": PLANS,
        "original_median_spacing_after_transp": [999.0, 1.0, 1.0],
        "original_median_shape_after_transp": [1, 64, 64],
        "image_reader_writer": "NaturalImage2DIO",
        "transpose_forward": [0, 1, 2],
        "transpose_backward": [0, 1, 2],
        "configurations": {
            "2d": {
                "data_identifier": "nnUNetPlans_2d",
                "preprocessor_name": "DefaultPreprocessor",
                "batch_size": 2,
                "patch_size": [patch, patch],
                "median_image_size_in_voxels": [64.0, 64.0],
                "spacing": [1.0, 1.0],
                "normalization_schemes": [scheme] * n_in,
                "use_mask_for_norm": [False] * n_in,
                "resampling_fn_data": "resample_data_or_seg_to_shape",
                "resampling_fn_seg": "resample_data_or_seg_to_shape",
                "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0,
                                              "force_separate_z": None},
                "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0,
                                             "force_separate_z": None},
                "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
                "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0,
                                                       "force_separate_z": None},
                "architecture": {
                    "network_class_name":
                        "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                    "arch_kwargs": {
                        "n_stages": stages,
                        "features_per_stage": list(features),
                        "conv_op": "torch.nn.modules.conv.Conv2d",
                        "kernel_sizes": [[3, 3]] * stages,
                        "strides": [[1, 1]] + [[2, 2]] * (stages - 1),
                        "n_conv_per_stage": [n_conv] * stages,
                        "n_conv_per_stage_decoder": [n_conv] * (stages - 1),
                        "conv_bias": True,
                        "norm_op": "torch.nn.modules.instancenorm.InstanceNorm2d",
                        "norm_op_kwargs": {"eps": 1e-05, "affine": True},
                        "dropout_op": None,
                        "dropout_op_kwargs": None,
                        "nonlin": "torch.nn.LeakyReLU",
                        "nonlin_kwargs": {"inplace": True},
                    },
                    "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
                },
                "batch_dice": True,
            }
        },
        "experiment_planner_used": "ExperimentPlanner",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {
            str(c): {"max": 255.0, "mean": 150.0, "median": 160.0, "min": 0.0,
                     "percentile_00_5": 20.0, "percentile_99_5": 250.0, "std": 40.0}
            for c in range(n_in)
        },
    }


def tiny_dataset_json(channels: Literal["rgb", "grey"], with_fat: bool) -> dict[str, Any]:
    names = {"0": "R", "1": "G", "2": "B"} if channels == "rgb" else {"0": "grey"}
    labels = {"background": 0, "marrow": 1}
    if with_fat:
        labels["fat"] = 2
    return {"channel_names": names, "labels": labels, "numTraining": 1, "file_ending": ".png",
            "marrowscope": {"mpp": 2.0}}


def write_tiny_model(
    root: Path,
    channels: Literal["rgb", "grey"] = "rgb",
    with_fat: bool = False,
    folds: tuple[int, ...] = (0,),
    patch: int = 32,
    seed: int = 0,
    scheme: str = "ZScoreNormalization",
    features: tuple[int, ...] = (4, 8, 16),
    n_conv: int = 1,
) -> TinyModel:
    """Writes the model under ``root`` and returns its three forms.

    The defaults make a ~10k-parameter network; ``features=DEFAULT_2D_FEATURES, n_conv=2,
    patch=1280`` gives the size of nnU-Net's default 2D network on 1280² patches.
    """
    import torch
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    plans = tiny_plans(channels, patch, scheme, features, n_conv)
    dataset_json = tiny_dataset_json(channels, with_fat)
    arch = plans["configurations"]["2d"]["architecture"]
    folder = root / DATASET / f"{TRAINER}__{PLANS}__2d"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plans.json").write_text(json.dumps(plans, indent=2))
    (folder / "dataset.json").write_text(json.dumps(dataset_json, indent=2))
    for i, fold in enumerate(folds):
        torch.manual_seed(seed + i)
        net = get_network_from_plans(
            arch["network_class_name"], arch["arch_kwargs"], arch["_kw_requires_import"],
            3 if channels == "rgb" else 1, 3 if with_fat else 2, allow_init=True,
            deep_supervision=True,
        )
        (folder / f"fold_{fold}").mkdir(exist_ok=True)
        torch.save(_checkpoint(net.state_dict(), plans, dataset_json, fold),
                   folder / f"fold_{fold}" / "checkpoint_final.pth")
    zip_path = root / f"{DATASET}.zip"
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                zf.write(file, file.relative_to(root).as_posix())
    pth = root / "bare_checkpoint.pth"
    pth.write_bytes((folder / f"fold_{folds[0]}" / "checkpoint_final.pth").read_bytes())
    return TinyModel(folder=folder, zip=zip_path, pth=pth)


def _checkpoint(
    weights: dict[str, Any], plans: dict[str, Any], dataset_json: dict[str, Any], fold: int
) -> dict[str, Any]:
    import torch

    return {
        "network_weights": weights,
        "optimizer_state": None,
        "grad_scaler_state": None,
        "logging": {},
        "_best_ema": None,
        "current_epoch": 0,
        "init_args": {"plans": plans, "configuration": "2d", "fold": fold,
                      "dataset_json": dataset_json, "device": torch.device("cpu")},
        "trainer_name": TRAINER,
        "inference_allowed_mirroring_axes": (0, 1),
    }
