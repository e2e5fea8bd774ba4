"""Slides backed by memory: a numpy image, or a synthetic scene rendered on demand."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import numpy.typing as npt
from PIL import Image

from adapters.synthetic.scene import SyntheticScene
from service.domain.geometry import Box
from service.domain.slide import Level, SlideInfo


def _pyramid(width: int, height: int, downsamples: tuple[int, ...]) -> tuple[Level, ...]:
    return tuple(
        Level(i, max(1, math.ceil(width / d)), max(1, math.ceil(height / d)), float(d))
        for i, d in enumerate(downsamples)
    )


class ArraySlide:
    """An RGB numpy array as a single-level slide (tests, in-memory images)."""

    def __init__(self, rgb: npt.NDArray[np.uint8], mpp: float, name: str = "array") -> None:
        self._rgb = rgb
        h, w = rgb.shape[:2]
        digest = hashlib.sha256(rgb.tobytes()).hexdigest()[:32]
        self._info = SlideInfo(path=name, format="array", width_px0=w, height_px0=h,
                               mpp=(mpp, mpp), levels=_pyramid(w, h, (1,)),
                               identity=f"array:{digest}")

    @property
    def info(self) -> SlideInfo:
        return self._info

    def read_region(self, box: Box, level: int) -> npt.NDArray[np.uint8]:
        out = np.full((box.h_px0, box.w_px0, 3), 255, dtype=np.uint8)
        inside = box.clipped(self._info.width_px0, self._info.height_px0)
        if inside is not None:
            out[inside.y_px0 - box.y_px0 : inside.y1_px0 - box.y_px0,
                inside.x_px0 - box.x_px0 : inside.x1_px0 - box.x_px0] = self._rgb[
                inside.y_px0 : inside.y1_px0, inside.x_px0 : inside.x1_px0]
        return out

    def thumbnail(self, max_size: int) -> npt.NDArray[np.uint8]:
        img = Image.fromarray(self._rgb)
        img.thumbnail((max_size, max_size), Image.Resampling.BOX)
        return np.asarray(img)

    def close(self) -> None:
        """Nothing to release."""


class SceneSlide:
    """A ``SyntheticScene`` as a pyramidal slide, rendered on demand (no file involved)."""

    def __init__(self, scene: SyntheticScene, downsamples: tuple[int, ...] = (1, 2, 4, 16),
                 supersample: bool = False) -> None:
        self.scene = scene
        self._supersample = supersample
        self._info = SlideInfo(
            path=f"synthetic-{scene.seed}", format="synthetic", width_px0=scene.width_px0,
            height_px0=scene.height_px0, mpp=(scene.mpp, scene.mpp),
            levels=_pyramid(scene.width_px0, scene.height_px0, downsamples),
            identity=f"synthetic:{hash(scene) & 0xFFFFFFFFFFFF:x}")

    @property
    def info(self) -> SlideInfo:
        return self._info

    def read_region(self, box: Box, level: int) -> npt.NDArray[np.uint8]:
        ds = self._info.levels[level].downsample
        rgb = self.scene.render_rgb(box, ds, self._supersample)
        # outside the slide is glass-white, as every adapter returns
        inside = box.clipped(self._info.width_px0, self._info.height_px0)
        if inside != box:
            mask = np.ones(rgb.shape[:2], dtype=bool)
            if inside is not None:
                y0 = int((inside.y_px0 - box.y_px0) / ds)
                x0 = int((inside.x_px0 - box.x_px0) / ds)
                y1 = math.ceil((inside.y1_px0 - box.y_px0) / ds)
                x1 = math.ceil((inside.x1_px0 - box.x_px0) / ds)
                mask[y0:y1, x0:x1] = False
            rgb[mask] = 255
        return rgb

    def thumbnail(self, max_size: int) -> npt.NDArray[np.uint8]:
        w, h = self._info.width_px0, self._info.height_px0
        ds = max(w, h) / max_size
        return self.scene.render_rgb(Box(0, 0, w, h), ds, self._supersample)

    def close(self) -> None:
        """Nothing to release."""
