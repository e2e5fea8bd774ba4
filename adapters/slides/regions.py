"""Level-0 box → pyramid-level window arithmetic, white padding and chunked thumbnails.

Shared by every slide adapter so that all of them agree on one convention: a level-0 box
``(x, y, w, h)`` read at a level with downsample ``ds`` starts at level pixel
``(floor(x / ds), floor(y / ds))`` and has size ``(ceil(w / ds), ceil(h / ds))``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from service.domain.geometry import Box
from service.domain.slide import Level, SlideInfo

RGBArray = npt.NDArray[np.uint8]
WHITE = 255

# Reads ``(x, y, w, h)`` in level pixels, entirely inside the level, as RGB uint8 (h, w, 3).
LevelReader = Callable[[int, int, int, int], RGBArray]


@dataclass(frozen=True)
class LevelWindow:
    """The level-pixel window a level-0 box maps to (may extend beyond the level)."""

    x: int
    y: int
    width: int
    height: int


def level_window(box: Box, downsample: float) -> LevelWindow:
    """The level window of ``box`` at ``downsample`` (see module docstring)."""
    return LevelWindow(
        x=math.floor(box.x_px0 / downsample),
        y=math.floor(box.y_px0 / downsample),
        width=max(1, math.ceil(box.w_px0 / downsample)),
        height=max(1, math.ceil(box.h_px0 / downsample)),
    )


def read_padded(window: LevelWindow, level: Level, reader: LevelReader) -> RGBArray:
    """Reads ``window`` from ``level``; the part outside the level is white."""
    x0, y0 = max(window.x, 0), max(window.y, 0)
    x1 = min(window.x + window.width, level.width)
    y1 = min(window.y + window.height, level.height)
    inside = x1 > x0 and y1 > y0
    if inside and (x0, y0, x1 - x0, y1 - y0) == (window.x, window.y, window.width, window.height):
        return reader(x0, y0, x1 - x0, y1 - y0)
    out = np.full((window.height, window.width, 3), WHITE, dtype=np.uint8)
    if inside:
        part = reader(x0, y0, x1 - x0, y1 - y0)
        out[y0 - window.y : y1 - window.y, x0 - window.x : x1 - window.x] = part
    return out


def composite_on_white(rgba: npt.NDArray[np.uint8]) -> RGBArray:
    """RGBA (straight alpha) → RGB over a white background."""
    if rgba.shape[-1] == 3:
        return rgba
    alpha = rgba[..., 3:4]
    if bool(np.all(alpha == 255)):
        return np.ascontiguousarray(rgba[..., :3])
    a = alpha.astype(np.uint16)
    rgb = (rgba[..., :3].astype(np.uint16) * a + WHITE * (255 - a) + 127) // 255
    return rgb.astype(np.uint8)


def check_level_index(levels: tuple[Level, ...], level: int) -> Level:
    """The level with index ``level``; ValueError (a programming error) if there is none."""
    if not 0 <= level < len(levels):
        raise ValueError(f"level {level} does not exist (slide has {len(levels)} levels)")
    return levels[level]


def chunked_thumbnail(
    levels: tuple[Level, ...],
    read_level: Callable[[int, LevelWindow], RGBArray],
    max_size: int,
    chunk_px: int = 2048,
) -> RGBArray:
    """A thumbnail whose longer side is ``max_size`` (or less), with bounded memory.

    Uses the coarsest level that still has at least ``max_size`` pixels on its longer side,
    reads it in chunks, reduces each chunk by an integer factor and resizes the mosaic.
    """
    from PIL import Image

    if max_size < 1:
        raise ValueError("max_size must be positive")
    base = levels[0]
    target_ds = max(base.width, base.height) / max_size
    candidates = [lv for lv in levels if lv.downsample <= max(target_ds, 1.0)]
    level = max(candidates, key=lambda lv: lv.downsample) if candidates else levels[0]
    factor = max(1, int(target_ds / level.downsample))
    step = max(factor, (chunk_px // factor) * factor)
    out_w, out_h = math.ceil(level.width / factor), math.ceil(level.height / factor)
    mosaic = np.full((out_h, out_w, 3), WHITE, dtype=np.uint8)
    for cy in range(0, level.height, step):
        for cx in range(0, level.width, step):
            win = LevelWindow(cx, cy, min(step, level.width - cx), min(step, level.height - cy))
            part = read_level(level.index, win)
            if factor > 1:
                part = np.asarray(Image.fromarray(part).reduce(factor), dtype=np.uint8)
            ph, pw = part.shape[:2]
            mosaic[cy // factor : cy // factor + ph, cx // factor : cx // factor + pw] = part
    scale = max_size / max(out_w, out_h)
    if scale >= 1.0:
        return mosaic
    size = (max(1, round(out_w * scale)), max(1, round(out_h * scale)))
    img = Image.fromarray(mosaic).resize(size, Image.Resampling.BOX)
    return np.asarray(img, dtype=np.uint8)


class LevelReadMixin:
    """``read_region`` and ``thumbnail`` for adapters that read level windows.

    A subclass provides ``_info`` (its SlideInfo) and ``_read_level(level, window)``.
    """

    _info: SlideInfo

    def _read_level(self, lv: Level, win: LevelWindow) -> RGBArray:
        raise NotImplementedError

    def read_region(self, box: Box, level: int) -> RGBArray:
        lv = check_level_index(self._info.levels, level)
        return self._read_level(lv, level_window(box, lv.downsample))

    def thumbnail(self, max_size: int) -> RGBArray:
        levels = self._info.levels
        return chunked_thumbnail(levels, lambda i, win: self._read_level(levels[i], win), max_size)
