"""Label values of the analysis class map (uint8, one value per analysis pixel)."""

from __future__ import annotations

from enum import IntEnum


class TissueClass(IntEnum):
    """Classes of the analysis map. Marrow space = HEMATOPOIETIC | ADIPOSE."""

    OUTSIDE = 0
    HEMATOPOIETIC = 1
    ADIPOSE = 2
