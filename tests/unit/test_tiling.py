"""Tiles follow the seed's grid and their cores partition the image exactly once."""

from __future__ import annotations

import numpy as np
import pytest

from service.pipeline.tiling import plan_tiles, tile_positions


def test_positions_follow_the_seed_grid_with_the_last_tile_shifted_back() -> None:
    assert tile_positions(3000, 1280, 128) == [0, 1152, 1720]
    assert tile_positions(1280, 1280, 128) == [0]
    assert tile_positions(500, 1280, 128) == [0]


@pytest.mark.parametrize(("w", "h"), [(3000, 2000), (1280, 1280), (500, 4000), (2433, 1281)])
def test_cores_cover_every_pixel_exactly_once(w: int, h: int) -> None:
    cover = np.zeros((h, w), dtype=np.int32)
    for t in plan_tiles(w, h, 1280, 128):
        assert t.x <= t.core_x0 < t.core_x1 <= t.x + t.size
        assert t.y <= t.core_y0 < t.core_y1 <= t.y + t.size
        cover[t.core_y0 : t.core_y1, t.core_x0 : t.core_x1] += 1
    assert (cover == 1).all()


def test_interior_cores_keep_half_the_overlap_as_context() -> None:
    tiles = plan_tiles(5000, 1280, 1280, 128)
    for t in tiles[1:-1]:
        assert t.core_x0 - t.x >= 64
        assert t.x + t.size - t.core_x1 >= 64
