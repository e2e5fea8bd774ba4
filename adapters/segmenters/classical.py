"""A weight-free marrow-space segmenter for H&E (colour deconvolution + morphology).

Marrow space = hematopoietic tissue plus the fat vacuoles it encloses; bone trabeculae, glass
and debris are excluded:
1. hematoxylin optical density by colour deconvolution (Ruifrok-Johnston vectors), relative to
   the tile's own white reference, so scanner brightness does not shift it;
2. hematopoietic tissue = where nuclei are dense (Gaussian-smoothed nuclear fraction), which
   excludes bone (eosinophilic, almost no nuclei) and debris (isolated specks, removed by size);
3. fat vacuoles = bright components next to that tissue and no larger than an adipocyte
   (large bright areas are glass between or inside particles);
4. small gaps closed and small holes filled.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from service.pipeline.morphology import keep_components
from service.ports.segmenters import SegmenterSpec, TileProbabilities

_RGB_FROM_HED = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]])
_HED_FROM_RGB = np.linalg.inv(_RGB_FROM_HED / np.linalg.norm(_RGB_FROM_HED, axis=1, keepdims=True))


class ClassicalSegmenter:
    """Weight-free segmenter; parameters are in micrometres and converted at ``mpp``."""

    NUCLEUS_OD = 0.25
    NUCLEUS_CONTRAST = 0.10
    DENSITY_SIGMA_UM = 4.0
    DENSITY_MIN = 0.15
    MIN_PARTICLE_UM2 = 2500.0
    MAX_VACUOLE_UM2 = 12000.0
    BRIGHT_FRACTION = 0.85

    def __init__(self, mpp: float = 1.0) -> None:
        self._spec = SegmenterSpec(
            name="classical",
            version="1",
            mpp=mpp,
            channels="rgb",
            provides_fat=False,
            batch_size=2,
            parameters=(
                ("nucleus_od", str(self.NUCLEUS_OD)),
                ("nucleus_contrast", str(self.NUCLEUS_CONTRAST)),
                ("density_sigma_um", str(self.DENSITY_SIGMA_UM)),
                ("density_min", str(self.DENSITY_MIN)),
                ("min_particle_um2", str(self.MIN_PARTICLE_UM2)),
                ("max_vacuole_um2", str(self.MAX_VACUOLE_UM2)),
            ),
        )

    @property
    def spec(self) -> SegmenterSpec:
        return self._spec

    def load(self) -> None:
        """Nothing to load."""

    def predict(self, tiles: npt.NDArray[np.uint8]) -> TileProbabilities:
        out = np.stack([self._segment(t) for t in tiles]).astype(np.float32)
        return TileProbabilities(marrow=out)

    def _segment(self, rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
        mpp = self._spec.mpp
        px2 = 1.0 / (mpp * mpp)
        rgbf = rgb.astype(np.float32)
        white = np.clip(np.percentile(rgbf.reshape(-1, 3), 99.5, axis=0), 180.0, 255.0)
        od = -np.log(np.clip((rgbf + 1.0) / (white + 1.0), 1e-3, 1.0))
        hema_od = od @ _HED_FROM_RGB[:, 0].astype(np.float32)
        # nuclei are small hematoxylin-dense blobs: darker than their surroundings, which
        # excludes homogeneously stained areas (bone, thick smear) whatever the stain's hue
        background = ndimage.uniform_filter(hema_od, size=max(3, int(round(12 / mpp))) | 1)
        nuclei = (hema_od - background > self.NUCLEUS_CONTRAST) & (hema_od > self.NUCLEUS_OD)
        density = ndimage.gaussian_filter(nuclei.astype(np.float32), self.DENSITY_SIGMA_UM / mpp)
        tissue = density > self.DENSITY_MIN
        grey = rgbf @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        bright = grey > self.BRIGHT_FRACTION * float(np.percentile(grey, 99.5))
        vacuoles = keep_components(bright, max_px=self.MAX_VACUOLE_UM2 * px2)
        closing = max(1, int(round(2 / mpp)))
        candidate = ndimage.binary_closing(tissue | vacuoles, iterations=closing, border_value=0)
        candidate |= tissue | vacuoles
        # a particle = nucleated tissue with its vacuoles; isolated specks (debris) are too small
        marrow = keep_components(candidate, min_px=self.MIN_PARTICLE_UM2 * px2, touching=tissue)
        return _fill_small_holes(marrow, self.MAX_VACUOLE_UM2 * px2)


def _fill_small_holes(mask: npt.NDArray[np.bool_], max_px: float) -> npt.NDArray[np.bool_]:
    holes = ndimage.binary_fill_holes(mask) & ~mask
    return np.asarray(mask | keep_components(holes, max_px=max_px))
