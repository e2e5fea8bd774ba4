"""Tile grid at the analysis resolution, seed-compatible, with midline stitching cores.

Tiles step by ``tile - overlap``; the last tile of a row/column is shifted back to stay inside
the image (as the seed does). Each tile owns a *core*: the part of it closer to its own centre
than to its neighbours' (split at the middle of each overlap). Cores partition the image, so
every analysis pixel is decided by exactly one tile, with at least ``overlap / 2`` pixels of
context on interior sides, and no full-resolution float canvas is needed.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tile:
    """A tile in analysis pixels: its read window and the core it writes."""

    index: int
    x: int
    y: int
    size: int
    core_x0: int
    core_y0: int
    core_x1: int
    core_y1: int

    @property
    def core_pixels(self) -> int:
        return (self.core_x1 - self.core_x0) * (self.core_y1 - self.core_y0)


def tile_positions(length: int, tile: int, overlap: int) -> list[int]:
    """Start positions along one axis: stride ``tile - overlap``, last one shifted back."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    positions = list(range(0, length - tile, stride))
    positions.append(length - tile)
    return sorted(set(positions))


def _core_bounds(positions: list[int], tile: int, length: int) -> list[tuple[int, int]]:
    bounds = [0]
    for prev, cur in zip(positions, positions[1:], strict=False):
        bounds.append((cur + prev + tile) // 2)
    bounds.append(length)
    return [(bounds[i], bounds[i + 1]) for i in range(len(positions))]


def plan_tiles(width: int, height: int, tile: int, overlap: int) -> list[Tile]:
    """All tiles of a width x height analysis raster, row-major."""
    xs = tile_positions(width, tile, overlap)
    ys = tile_positions(height, tile, overlap)
    x_cores = _core_bounds(xs, tile, width)
    y_cores = _core_bounds(ys, tile, height)
    tiles: list[Tile] = []
    for y, (cy0, cy1) in zip(ys, y_cores, strict=True):
        for x, (cx0, cx1) in zip(xs, x_cores, strict=True):
            tiles.append(Tile(len(tiles), x, y, tile, cx0, cy0, cx1, cy1))
    return tiles
