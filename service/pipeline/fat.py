"""Adipocyte (fat vacuole) detection inside the marrow mask.

Two rules:
- ``seed``: the research repo's rule exactly. Threshold = clamp(P75 of the grey values inside the
  marrow mask over the whole slide, 180, 240), computed exactly from a 256-bin histogram
  (numpy's linear-interpolation percentile); fat = grey > threshold inside the mask. It assumes
  glass at a fixed brightness and breaks when the scanner's glass level drifts.
- ``robust`` (default): a vacuole is unstained, so it is as bright as the slide's own glass.
  Fat = marrow pixels brighter than ``ROBUST_GLASS_FRACTION`` x the local glass level (estimated
  from the slide's background, per block), closed by one pixel so thin membranes between packed
  adipocytes count with them, and kept only as components of at least ``MIN_VACUOLE_UM2``
  (specks of pale matrix between cells are not adipocytes), then grown by the ~1 µm
  membrane that belongs to each adipocyte. Being relative to the glass, it is
  invariant to a global brightness scaling of the scan (Beer-Lambert).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from service.pipeline.morphology import keep_components

SEED_CLAMP = (180.0, 240.0)
ROBUST_GLASS_FRACTION = 0.88
MIN_VACUOLE_UM2 = 40.0
MEMBRANE_UM = 1.0

BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class SeedThreshold:
    """The seed rule's threshold and whether the clamp changed the percentile."""

    threshold: float
    p75: float
    clamped: bool


def percentile_from_histogram(hist: npt.NDArray[np.int64], q: float) -> float:
    """``np.percentile(values, q)`` (linear method) of integer values given by their histogram."""
    n = int(hist.sum())
    if n == 0:
        raise ValueError("empty histogram")
    pos = (n - 1) * q / 100.0
    lo = int(np.floor(pos))
    frac = pos - lo
    cum = np.cumsum(hist)
    v_lo = int(np.searchsorted(cum, lo + 1))
    v_hi = int(np.searchsorted(cum, min(lo + 2, n)))
    return float(v_lo + (v_hi - v_lo) * frac)


def seed_threshold(hist: npt.NDArray[np.int64]) -> SeedThreshold:
    """clamp(P75, 180, 240) of the grey histogram inside the marrow mask."""
    p75 = percentile_from_histogram(hist, 75.0)
    thr = min(max(p75, SEED_CLAMP[0]), SEED_CLAMP[1])
    return SeedThreshold(threshold=thr, p75=p75, clamped=thr != p75)


def seed_fat_count(hist: npt.NDArray[np.int64], threshold: float) -> int:
    """Number of marrow pixels with grey > threshold, from the histogram alone."""
    first = int(np.floor(threshold)) + 1
    return int(hist[first:].sum())


def robust_fat_mask(grey: npt.NDArray[np.uint8], marrow: BoolArray, glass_level: float,
                    mpp: float) -> BoolArray:
    """Fat vacuoles inside ``marrow`` relative to the local glass level."""
    bright = marrow & (grey.astype(np.float32) > ROBUST_GLASS_FRACTION * glass_level)
    bright = ndimage.binary_closing(bright, structure=np.ones((3, 3), bool)) & marrow
    min_px = max(1, int(round(MIN_VACUOLE_UM2 / (mpp * mpp))))
    vacuoles = keep_components(bright, min_px=min_px)
    # an adipocyte is its vacuole plus its membrane (about 1 µm), as a pathologist counts it
    membrane_px = int(round(MEMBRANE_UM / mpp))
    if membrane_px > 0:
        vacuoles = ndimage.binary_dilation(vacuoles, iterations=membrane_px) & marrow
    return np.asarray(vacuoles)
