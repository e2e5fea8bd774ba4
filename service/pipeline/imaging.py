"""Small image helpers shared by the pipeline: greyscale and optical density."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

UInt8Array = npt.NDArray[np.uint8]
FloatArray = npt.NDArray[np.float32]


def grey(rgb: UInt8Array) -> UInt8Array:
    """Greyscale as OpenCV's IMREAD_GRAYSCALE (ITU-R 601 luma), which the seed used."""
    g = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    return np.asarray(np.clip(np.rint(g), 0, 255), dtype=np.uint8)


def optical_density(rgb: UInt8Array, glass: float = 255.0) -> FloatArray:
    """Per-channel optical density relative to a glass level (Beer-Lambert)."""
    ref = max(float(glass), 1.0)
    return np.asarray(-np.log(np.clip((rgb.astype(np.float32) + 1.0) / (ref + 1.0), 1e-3, 1.0)),
                      dtype=np.float32)
