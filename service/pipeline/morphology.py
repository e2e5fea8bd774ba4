"""Connected-component filters on binary masks, shared by the segmenter and the fat rules."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import ndimage

Mask = npt.NDArray[np.bool_]


def keep_components(mask: Mask, min_px: float = 0.0, max_px: float = float("inf"),
                    touching: Mask | None = None) -> Mask:
    """The connected components of ``mask`` with min_px <= size <= max_px (and, if given,
    overlapping ``touching``)."""
    labels, n = ndimage.label(mask)
    if n == 0:
        return np.asarray(mask, dtype=bool)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = (sizes >= min_px) & (sizes <= max_px)
    if touching is not None:
        keep &= np.bincount(labels[touching].ravel(), minlength=n + 1) > 0
    keep[0] = False
    return np.asarray(keep[labels])
