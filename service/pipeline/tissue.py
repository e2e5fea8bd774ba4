"""Low-resolution tissue detection and the slide's own glass (background) brightness.

Works on a thumbnail at a few µm/px: tissue = anything clearly darker or more saturated
than glass; glass level = the median brightness of glass pixels, per block, so illumination
drift across the slide (vignetting, scanner stripes) is followed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from service.pipeline.imaging import grey

_BLOCK = 32


@dataclass(frozen=True)
class TissueMap:
    """Tissue mask and glass-level map on the thumbnail grid.

    ``scale`` is level-0 px per thumbnail px; ``glass_level`` is None when no glass was seen.
    """

    tissue: npt.NDArray[np.bool_]
    glass_map: npt.NDArray[np.float32]
    glass_level: float | None
    scale: tuple[float, float]

    def has_tissue(self, x0_px0: float, y0_px0: float, x1_px0: float, y1_px0: float) -> bool:
        """True if any tissue pixel lies in the level-0 box."""
        sx, sy = self.scale
        i0, i1 = int(y0_px0 / sy), int(np.ceil(y1_px0 / sy))
        j0, j1 = int(x0_px0 / sx), int(np.ceil(x1_px0 / sx))
        return bool(self.tissue[max(i0, 0) : i1, max(j0, 0) : j1].any())

    def glass_at(self, x_px0: float, y_px0: float) -> float:
        """Local glass level at a level-0 point (slide-wide level if none was seen)."""
        sx, sy = self.scale
        h, w = self.glass_map.shape
        i = min(max(int(y_px0 / sy), 0), h - 1)
        j = min(max(int(x_px0 / sx), 0), w - 1)
        return float(self.glass_map[i, j])


def detect_tissue(thumb: npt.NDArray[np.uint8], scale: tuple[float, float],
                  margin_px: int = 2) -> TissueMap:
    """Tissue mask and glass map from an RGB thumbnail (``scale`` level-0 px per thumb px)."""
    g = grey(thumb).astype(np.float32)
    rgbf = thumb.astype(np.float32)
    sat = rgbf.max(axis=2) - rgbf.min(axis=2)
    bright_ref = float(np.percentile(g, 99.5)) if g.size else 255.0
    # glass: bright and unsaturated relative to the brightest part of the slide
    tissue = (g < bright_ref - 25.0) | (sat > 18.0)
    tissue = ndimage.binary_opening(tissue, iterations=1)
    glass = ~ndimage.binary_dilation(tissue, iterations=2) & (sat < 15.0)
    glass_level: float | None = float(np.median(g[glass])) if glass.sum() > 50 else None
    glass_map = _glass_map(g, glass, glass_level)
    if margin_px:
        tissue = ndimage.binary_dilation(tissue, iterations=margin_px)
    return TissueMap(tissue=tissue, glass_map=glass_map, glass_level=glass_level, scale=scale)


def _glass_map(g: npt.NDArray[np.float32], glass: npt.NDArray[np.bool_],
               fallback: float | None) -> npt.NDArray[np.float32]:
    """Block medians of glass pixels, holes filled from the nearest block with glass."""
    h, w = g.shape
    bh, bw = max(1, -(-h // _BLOCK)), max(1, -(-w // _BLOCK))
    blocks = np.full((bh, bw), np.nan, dtype=np.float32)
    for bi in range(bh):
        for bj in range(bw):
            sl = (slice(bi * _BLOCK, (bi + 1) * _BLOCK), slice(bj * _BLOCK, (bj + 1) * _BLOCK))
            vals = g[sl][glass[sl]]
            if vals.size >= 16:
                blocks[bi, bj] = np.median(vals)
    missing = np.isnan(blocks)
    if missing.all():
        blocks[:] = fallback if fallback is not None else np.nan
    elif missing.any():
        idx = ndimage.distance_transform_edt(missing, return_distances=False, return_indices=True)
        blocks = blocks[tuple(idx)]
    up = np.repeat(np.repeat(blocks, _BLOCK, axis=0), _BLOCK, axis=1)[:h, :w]
    return np.asarray(up, dtype=np.float32)
