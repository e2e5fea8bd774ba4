"""The segmenter interface: a batch of tiles in, per-tile probability maps out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class SegmenterSpec:
    """What a segmenter declares about itself; the pipeline analyses at ``mpp``."""

    name: str
    version: str
    mpp: float
    channels: Literal["rgb", "grey"]
    provides_fat: bool = False
    batch_size: int = 4
    sha256: str | None = None
    parameters: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class TileProbabilities:
    """Per-tile outputs, float32 in [0, 1], shape (N, H, W).

    ``marrow`` is the probability of marrow space (hematopoietic tissue + enclosed fat).
    ``fat`` is the probability of adipocyte, present only if the model has a fat label.
    """

    marrow: npt.NDArray[np.float32]
    fat: npt.NDArray[np.float32] | None = None


class Segmenter(Protocol):
    """Segments marrow space. ``tiles`` is (N, H, W, 3) RGB uint8 at ``spec.mpp``."""

    @property
    def spec(self) -> SegmenterSpec: ...

    def load(self) -> None:
        """Loads weights (idempotent); called once before the first predict."""

    def predict(self, tiles: npt.NDArray[np.uint8]) -> TileProbabilities: ...
