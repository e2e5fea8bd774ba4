"""Writes an nnU-Net v2 raw dataset folder (imagesTr/, labelsTr/, dataset.json) from tile pairs.

Images are RGB PNGs (one file = three channels, nnU-Net's NaturalImage2DIO) or grey PNGs;
labels are PNGs of label values (0 background, 1 marrow space, optionally 2 fat).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from service.domain.errors import InvalidInput

DATASET_NAME = re.compile(r"^Dataset(\d{3})_[A-Za-z0-9_\-]+$")
MARROW_LABELS = {"background": 0, "marrow": 1}
MARROW_FAT_LABELS = {"background": 0, "marrow": 1, "fat": 2}
# nnU-Net maps these channel names to RGBTo01Normalization (x / 255), robust on near-empty glass
RGB_CHANNELS = {"0": "rgb_to_0_1", "1": "rgb_to_0_1", "2": "rgb_to_0_1"}
GREY_CHANNELS = {"0": "rgb_to_0_1"}


@dataclass(frozen=True)
class RawDataset:
    """An nnU-Net raw dataset folder being written."""

    folder: Path
    dataset_id: int
    channels: Literal["rgb", "grey"]
    with_fat: bool
    mpp: float

    @classmethod
    def create(
        cls, folder: Path, channels: Literal["rgb", "grey"], with_fat: bool, mpp: float
    ) -> RawDataset:
        match = DATASET_NAME.match(folder.name)
        if match is None:
            raise InvalidInput(
                f"--out must end in DatasetNNN_Name (nnU-Net's naming), got {folder.name!r}"
            )
        (folder / "imagesTr").mkdir(parents=True, exist_ok=True)
        (folder / "labelsTr").mkdir(parents=True, exist_ok=True)
        return cls(folder, int(match.group(1)), channels, with_fat, mpp)

    def add(self, case: str, rgb: npt.NDArray[np.uint8], label: npt.NDArray[np.uint8]) -> None:
        from PIL import Image

        if rgb.shape[:2] != label.shape:
            raise InvalidInput(f"case {case}: image {rgb.shape[:2]} and label {label.shape} differ")
        image = Image.fromarray(rgb)
        if self.channels == "grey":
            image = image.convert("L")
        image.save(self.folder / "imagesTr" / f"{case}_0000.png")
        Image.fromarray(label.astype(np.uint8)).save(self.folder / "labelsTr" / f"{case}.png")

    def finish(self, description: str) -> Path:
        """Writes dataset.json (counting the cases written) and returns its path."""
        n = len(list((self.folder / "labelsTr").glob("*.png")))
        if n == 0:
            raise InvalidInput(f"{self.folder}: no training cases were written")
        doc = {
            "channel_names": RGB_CHANNELS if self.channels == "rgb" else GREY_CHANNELS,
            "labels": MARROW_FAT_LABELS if self.with_fat else MARROW_LABELS,
            "numTraining": n,
            "file_ending": ".png",
            "name": self.folder.name,
            "description": description,
            "marrowscope": {"mpp": self.mpp, "channels": self.channels},
        }
        path = self.folder / "dataset.json"
        path.write_text(json.dumps(doc, indent=2) + "\n")
        return path
