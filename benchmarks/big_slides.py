"""Large synthetic SVS slides for memory/throughput benchmarks, written without holding level 0.

Level 0 repeats a pool of rendered scene tiles (periodic texture), so a 1.6 Gpx pyramid is
written in about a minute instead of rendering every pixel; tissue covers the whole slide,
which is the worst case for the analysis (no tile is skipped as glass).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import numpy.typing as npt

from adapters.synthetic.scene import SyntheticScene
from adapters.synthetic.writers import write_svs
from benchmarks.common import CACHE, cached
from service.domain.geometry import Box

POOL_PX = 2048
MPP = 0.25


class PeriodicRender:
    """render(box, downsample) over an endless periodic copy of one rendered scene region."""

    def __init__(self, seed: int = 5) -> None:
        scene = SyntheticScene(8192, 8192, mpp=MPP, seed=seed, cellularity_target=50.0,
                               marrow_fraction=0.9)
        self.pool = scene.render_rgb(Box(3072, 3072, POOL_PX, POOL_PX), 1.0)

    def __call__(self, box: Box, downsample: float) -> npt.NDArray[np.uint8]:
        nx, ny = math.ceil(box.w_px0 / downsample), math.ceil(box.h_px0 / downsample)
        xs = ((box.x_px0 + (np.arange(nx) + 0.5) * downsample).astype(np.int64)) % POOL_PX
        ys = ((box.y_px0 + (np.arange(ny) + 0.5) * downsample).astype(np.int64)) % POOL_PX
        return self.pool[ys[:, None], xs[None, :]]


def big_svs(side_px0: int) -> Path:
    """A square pyramidal SVS (levels 1/4/16/64) of ``side_px0`` level-0 px at 0.25 µm/px."""
    render = None

    def make(p: Path) -> None:
        nonlocal render
        render = render or PeriodicRender()
        write_svs(p, side_px0, side_px0, MPP, render, tile=512, levels=(1, 4, 16, 64),
                  quality=85, bigtiff=True)

    return cached(CACHE / f"big-{side_px0}.svs", make)
