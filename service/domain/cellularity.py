"""Cellularity arithmetic from pixel counts (areas come from counts, never from polygons)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PixelCounts:
    """Pixel counts at the analysis resolution."""

    marrow_px: int
    adipose_px: int
    image_px: int

    def __post_init__(self) -> None:
        if not 0 <= self.adipose_px <= self.marrow_px <= self.image_px:
            raise ValueError(f"inconsistent counts: {self}")

    @property
    def hematopoietic_px(self) -> int:
        return self.marrow_px - self.adipose_px


@dataclass(frozen=True)
class CellularityMetrics:
    """Cellularity and areas; percentages are None when the marrow area is zero."""

    cellularity_pct: float | None
    adipocyte_ratio_pct: float | None
    cell_coverage_pct: float
    marrow_area_mm2: float
    hematopoietic_area_mm2: float
    adipose_area_mm2: float


def compute_metrics(counts: PixelCounts, mpp_analyzed: float) -> CellularityMetrics:
    """cellularity = hematopoietic / marrow; coverage = marrow / image (as the seed has it)."""
    mm2_per_px = (mpp_analyzed / 1000.0) ** 2
    coverage = 100.0 * counts.marrow_px / counts.image_px if counts.image_px else 0.0
    if counts.marrow_px == 0:
        cell = fat = None
    else:
        cell = 100.0 * counts.hematopoietic_px / counts.marrow_px
        fat = 100.0 * counts.adipose_px / counts.marrow_px
    return CellularityMetrics(
        cellularity_pct=cell,
        adipocyte_ratio_pct=fat,
        cell_coverage_pct=coverage,
        marrow_area_mm2=counts.marrow_px * mm2_per_px,
        hematopoietic_area_mm2=counts.hematopoietic_px * mm2_per_px,
        adipose_area_mm2=counts.adipose_px * mm2_per_px,
    )
