"""``FakeSegmenter``: marrow = every pixel that is not glass. Fast; for load tests and demos.

Tunable from the environment (read at ``load``/``predict`` so worker processes see it):
``MARROWSCOPE_FAKE_LOAD_S`` seconds ``load()`` takes, ``MARROWSCOPE_FAKE_BATCH_S`` seconds each
``predict()`` call takes (to make cancellation and crash tests observable mid-run).
"""

from __future__ import annotations

import hashlib
import os
import time

import numpy as np
import numpy.typing as npt

from service.ports.segmenters import SegmenterSpec, TileProbabilities

GLASS_GREY = 215  # mean RGB above this is glass/background
VERSION = "1"


def _seconds(name: str) -> float:
    try:
        return max(0.0, float(os.environ.get(name, "0")))
    except ValueError:
        return 0.0


class FakeSegmenter:
    """Thresholds brightness; no weights, no learning, deterministic."""

    def __init__(self, mpp: float = 4.0) -> None:
        self._spec = SegmenterSpec(
            name="fake",
            version=VERSION,
            mpp=mpp,
            channels="rgb",
            provides_fat=False,
            batch_size=8,
            sha256=hashlib.sha256(f"fake-segmenter-v{VERSION}-glass{GLASS_GREY}".encode())
            .hexdigest(),
            parameters=(("glass_grey", str(GLASS_GREY)),),
        )
        self._loaded = False

    @property
    def spec(self) -> SegmenterSpec:
        return self._spec

    def load(self) -> None:
        if not self._loaded:
            time.sleep(_seconds("MARROWSCOPE_FAKE_LOAD_S"))
            self._loaded = True

    def predict(self, tiles: npt.NDArray[np.uint8]) -> TileProbabilities:
        if tiles.ndim != 4 or tiles.shape[-1] != 3:
            raise ValueError(f"expected (N, H, W, 3) tiles, got {tiles.shape}")
        delay = _seconds("MARROWSCOPE_FAKE_BATCH_S")
        if delay:
            time.sleep(delay)
        grey = tiles.mean(axis=-1, dtype=np.float32)
        marrow = (grey < GLASS_GREY).astype(np.float32)
        return TileProbabilities(marrow=marrow)
