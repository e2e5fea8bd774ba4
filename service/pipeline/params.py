"""Parameters of one analysis, and the progress/cancel hooks the pipeline calls."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from service.domain.slide import DicomContext

FatMethod = Literal["robust", "seed"]
ALL_OUTPUTS = ("overlay", "geojson", "sr", "ann", "seg")
DEFAULT_OUTPUTS = ("overlay", "geojson", "sr", "ann")


@dataclass(frozen=True)
class AnalysisParams:
    """Everything that changes the numbers of an analysis (and so its job key)."""

    segmenter: str = "classical"
    model: str | None = None
    device: str = "auto"
    tta: bool = False
    fat_method: FatMethod = "robust"
    mpp_override: float | None = None
    tile_size: int = 1280
    overlap: int = 128
    min_marrow_area_mm2: float = 0.5

    def __post_init__(self) -> None:
        from service.domain.errors import InvalidInput

        if self.fat_method not in ("robust", "seed"):
            raise InvalidInput(f"unknown fat method {self.fat_method!r} (use robust or seed)")
        if not 64 <= self.tile_size <= 8192:
            raise InvalidInput(f"tile size {self.tile_size} outside [64, 8192]")
        if not 0 <= self.overlap < self.tile_size // 2:
            raise InvalidInput(f"overlap {self.overlap} must be in [0, tile_size/2)")
        if self.mpp_override is not None and not 0.05 <= self.mpp_override <= 100:
            raise InvalidInput(f"--mpp {self.mpp_override} outside [0.05, 100] µm/px")


@dataclass(frozen=True)
class OutputRequest:
    """Which artifacts to write, and the DICOM metadata needed for non-DICOM inputs."""

    outputs: tuple[str, ...] = DEFAULT_OUTPUTS
    dicom_metadata: DicomContext | None = None


@dataclass(frozen=True)
class ProgressEvent:
    """A progress report: stage name and tiles done out of total (total 0 = unknown)."""

    stage: str
    tiles_done: int = 0
    tiles_total: int = 0


class ProgressSink(Protocol):
    def __call__(self, event: ProgressEvent) -> None: ...


class CancelToken(Protocol):
    """Anything with ``is_set()`` (a threading.Event or multiprocessing.Event)."""

    def is_set(self) -> bool: ...
