"""What writers receive after an analysis, and the writer interface."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from service.domain.results import AnalysisResult
from service.domain.slide import SlideInfo


class LabelRaster(Protocol):
    """The analysis class map (values of ``TissueClass``), read in horizontal bands."""

    @property
    def width(self) -> int: ...

    @property
    def height(self) -> int: ...

    def read_rows(self, y0: int, y1: int) -> npt.NDArray[np.uint8]:
        """Rows [y0, y1) as a (y1 - y0, width) uint8 array."""
        ...

    def close(self) -> None:
        """Releases memory or the spill file; the raster is unusable afterwards."""
        ...


@dataclass(frozen=True)
class AnalysisOutcome:
    """A finished analysis: numbers, the class map and how it maps to level-0 pixels.

    Analysis pixel (col, row) covers level-0 pixels
    [col * px0_per_px, (col + 1) * px0_per_px) horizontally, likewise vertically.
    """

    result: AnalysisResult
    slide: SlideInfo
    class_map: LabelRaster
    px0_per_px: tuple[float, float]
    thumbnail: npt.NDArray[np.uint8]
    job_key: str

    def class_map_close(self) -> None:
        self.class_map.close()


class ResultWriter(Protocol):
    """Writes one artifact kind (sr, ann, geojson, seg, overlay) into a slide's output folder."""

    @property
    def name(self) -> str: ...

    def write(self, outcome: AnalysisOutcome, out_dir: Path) -> list[Path]: ...
