"""The demo model's trainer: nnUNetTrainer with a CPU-sized schedule (imports nnunetv2)."""

from __future__ import annotations

import time
from typing import Any

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class TrainingBudgetReached(Exception):
    """Raised after an epoch once the wall-clock budget is spent (checkpoint_best is kept)."""


def make_trainer_class(
    epochs: int, iters: int, budget_s: float, val_iters: int = 4
) -> type[Any]:
    """nnUNetTrainer with ``epochs`` × ``iters`` iterations, stopped after ``budget_s``.

    Network, loss, augmentation and sampling are nnUNetTrainer's. On shared CPUs the epoch
    count may not fit the budget: training then stops after the epoch that crosses it and the
    best checkpoint so far (nnU-Net's EMA pseudo-Dice on the validation fold) is exported.
    """
    started = time.monotonic()

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

        def on_epoch_end(self) -> None:
            super().on_epoch_end()
            if time.monotonic() - started > budget_s and self.current_epoch < self.num_epochs:
                raise TrainingBudgetReached(f"stopped after epoch {self.current_epoch - 1}")

    return nnUNetTrainerMarrowscopeDemo
