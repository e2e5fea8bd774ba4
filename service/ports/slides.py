"""The slide interface every slide adapter implements. Coordinates are level-0 pixels."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt

from service.domain.geometry import Box
from service.domain.slide import SlideInfo

RGBArray = npt.NDArray[np.uint8]


class SlideSource(Protocol):
    """An opened slide.

    ``read_region(box, level)`` returns the pixels of the level-0 box ``box`` at pyramid level
    ``level`` as an RGB uint8 array of shape (ceil(h / ds), ceil(w / ds), 3), where ds is that
    level's downsample. Regions outside the image are filled with white (glass).
    """

    @property
    def info(self) -> SlideInfo: ...

    def read_region(self, box: Box, level: int) -> RGBArray: ...

    def thumbnail(self, max_size: int) -> RGBArray: ...

    def close(self) -> None: ...


class SlideOpener(Protocol):
    """Opens a slide reference (path or URL) into a SlideSource; raises domain errors."""

    def __call__(self, reference: str, mpp_override: float | None = None) -> SlideSource: ...
