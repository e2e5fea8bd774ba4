"""The demo model's trainer: nnUNetTrainer with a CPU-sized schedule (imports nnunetv2)."""

from __future__ import annotations

from typing import Any

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


def make_trainer_class(epochs: int, iters: int, val_iters: int = 4) -> type[Any]:
    """nnUNetTrainer with ``epochs`` × ``iters`` iterations; network and loss unchanged."""

    class nnUNetTrainerMarrowscopeDemo(nnUNetTrainer):  # type: ignore[misc]
        def __init__(
            self,
            plans: dict[str, Any],
            configuration: str,
            fold: int,
            dataset_json: dict[str, Any],
            device: torch.device = torch.device("cpu"),  # noqa: B008 - nnU-Net's signature
        ) -> None:
            plans.setdefault("continue_training", False)
            super().__init__(plans, configuration, fold, dataset_json, device)
            self.num_epochs = epochs
            self.num_iterations_per_epoch = iters
            self.num_val_iterations_per_epoch = val_iters
            self.save_every = 10

    return nnUNetTrainerMarrowscopeDemo
