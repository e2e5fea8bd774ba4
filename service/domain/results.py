"""The result of one slide analysis, as stored in result.json and returned over gRPC."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from service.domain.cellularity import CellularityMetrics


class QCFlag(StrEnum):
    """Quality-control flags a user must see next to the number."""

    NO_MARROW = "no_marrow"
    MARROW_INADEQUATE = "marrow_area_inadequate"
    THRESHOLD_CLAMPED = "fat_threshold_clamped"
    MPP_CONFLICT = "mpp_conflict"
    GLASS_LEVEL_UNCERTAIN = "glass_level_uncertain"
    UPSAMPLED = "analysed_above_scan_resolution"


@dataclass(frozen=True)
class Provenance:
    """Everything needed to reproduce a result."""

    software_version: str
    library_versions: dict[str, str]
    parameters: dict[str, Any]
    input_path: str
    input_format: str
    input_identity: str
    segmenter_sha256: str | None = None


@dataclass(frozen=True)
class AnalysisResult:
    """Cellularity of one slide with QC and provenance. Percentages are None without marrow."""

    slide: str
    cellularity_pct: float | None
    cell_coverage_pct: float
    adipocyte_ratio_pct: float | None
    marrow_area_mm2: float
    hematopoietic_area_mm2: float
    adipose_area_mm2: float
    tiles_total: int
    tiles_analyzed: int
    mpp_analyzed: float
    mpp_slide: tuple[float, float]
    analysis_size: tuple[int, int]
    segmenter: str
    fat_method: str
    fat_threshold: float | None
    glass_level: float | None
    qc_flags: tuple[str, ...]
    warnings: tuple[str, ...]
    provenance: Provenance
    elapsed_s: float
    artifacts: tuple[str, ...] = field(default=())

    @classmethod
    def from_metrics(cls, metrics: CellularityMetrics, **kwargs: Any) -> AnalysisResult:
        return cls(**dataclasses.asdict(metrics), **kwargs)

    def with_artifacts(self, artifacts: tuple[str, ...]) -> AnalysisResult:
        return dataclasses.replace(self, artifacts=artifacts)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        return dataclasses.asdict(self)
