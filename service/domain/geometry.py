"""Geometry value types. Every coordinate is in level-0 pixels, top-left pixel corner = (0, 0)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in level-0 pixels: x, y of the top-left corner, width and height."""

    x_px0: int
    y_px0: int
    w_px0: int
    h_px0: int

    def __post_init__(self) -> None:
        if self.w_px0 <= 0 or self.h_px0 <= 0:
            raise ValueError(f"box must have positive size, got {self.w_px0}x{self.h_px0}")

    @property
    def x1_px0(self) -> int:
        return self.x_px0 + self.w_px0

    @property
    def y1_px0(self) -> int:
        return self.y_px0 + self.h_px0

    def clipped(self, width_px0: int, height_px0: int) -> Box | None:
        """The part of this box inside an image of the given size, or None if disjoint."""
        x0, y0 = max(self.x_px0, 0), max(self.y_px0, 0)
        x1, y1 = min(self.x1_px0, width_px0), min(self.y1_px0, height_px0)
        if x1 <= x0 or y1 <= y0:
            return None
        return Box(x0, y0, x1 - x0, y1 - y0)


@dataclass(frozen=True)
class Size:
    """Width and height in pixels of some raster."""

    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height
