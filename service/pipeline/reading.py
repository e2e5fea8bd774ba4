"""Reading slide regions at the analysis resolution, ahead of the consumer in a thread."""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image

from service.domain.geometry import Box
from service.pipeline.tiling import Tile
from service.ports.slides import SlideSource


@dataclass(frozen=True)
class AnalysisGrid:
    """Mapping between analysis pixels and level-0 pixels: level-0 px = analysis px * scale."""

    scale: tuple[float, float]
    width: int
    height: int
    level: int
    level_downsample: float


def choose_level(slide: SlideSource, scale: float) -> tuple[int, float]:
    """The coarsest pyramid level that is still at least as fine as the analysis resolution."""
    best = (0, 1.0)
    for lvl in slide.info.levels:
        if lvl.downsample <= scale * 1.01 and lvl.downsample >= best[1]:
            best = (lvl.index, lvl.downsample)
    return best


def analysis_grid(slide: SlideSource, mpp_analysis: float) -> AnalysisGrid:
    info = slide.info
    sx, sy = mpp_analysis / info.mpp[0], mpp_analysis / info.mpp[1]
    level, ds = choose_level(slide, min(sx, sy))
    return AnalysisGrid(
        scale=(sx, sy),
        width=max(1, math.ceil(info.width_px0 / sx)),
        height=max(1, math.ceil(info.height_px0 / sy)),
        level=level,
        level_downsample=ds,
    )


def read_analysis_region(slide: SlideSource, grid: AnalysisGrid, x: int, y: int, w: int,
                         h: int) -> npt.NDArray[np.uint8]:
    """RGB of analysis pixels [x, x+w) x [y, y+h), resampled from the chosen level."""
    sx, sy = grid.scale
    fx0, fy0 = x * sx, y * sy
    fx1, fy1 = (x + w) * sx, (y + h) * sy
    ds = grid.level_downsample
    # level pixels start on multiples of the downsample: align the box to them
    bx0, by0 = int(math.floor(fx0 / ds) * ds), int(math.floor(fy0 / ds) * ds)
    bx1, by1 = int(math.ceil(fx1 / ds) * ds), int(math.ceil(fy1 / ds) * ds)
    region = slide.read_region(Box(bx0, by0, bx1 - bx0, by1 - by0), grid.level)
    if abs(sx - ds) < 1e-6 and abs(sy - ds) < 1e-6 and region.shape[:2] == (h, w):
        return region
    img = Image.fromarray(region)
    # the float crop box maps the requested analysis pixels exactly onto the level's pixels
    crop = ((fx0 - bx0) / ds, (fy0 - by0) / ds, (fx1 - bx0) / ds, (fy1 - by0) / ds)
    resample = Image.Resampling.BOX if sx >= ds else Image.Resampling.BILINEAR
    return np.asarray(img.resize((w, h), resample=resample, box=crop))


def prefetch_tiles(slide: SlideSource, grid: AnalysisGrid, tiles: Sequence[Tile],
                   depth: int = 4) -> Iterator[tuple[Tile, npt.NDArray[np.uint8]]]:
    """Yields (tile, rgb) in order, reading up to ``depth`` tiles ahead in a thread.

    Errors in the reader are re-raised in the consumer; closing the generator stops the reader.
    """
    q: queue.Queue[tuple[Tile, npt.NDArray[np.uint8]] | BaseException | None] = queue.Queue(depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for t in tiles:
                if stop.is_set():
                    return
                q.put((t, read_analysis_region(slide, grid, t.x, t.y, t.size, t.size)))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            q.put(exc)
            return
        q.put(None)

    thread = threading.Thread(target=produce, name="tile-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)
