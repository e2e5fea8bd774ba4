"""The µm/px policy shared by all slide adapters: the file's value, or the user's ``--mpp``."""

from __future__ import annotations

import math
from dataclasses import dataclass

from service.domain.errors import InvalidInput, MissingResolution

# Two resolutions within this relative difference are treated as the same.
MPP_TOLERANCE = 0.01
MPP_MIN_UM = 0.01
MPP_MAX_UM = 1000.0


@dataclass(frozen=True)
class ResolvedMpp:
    """The µm/px to use, where it came from, and the file's own value if it had one."""

    mpp: tuple[float, float]
    source: str
    mpp_file: tuple[float, float] | None


def valid_mpp(value: float | None) -> bool:
    """True for a finite, plausible µm/px value."""
    return value is not None and math.isfinite(value) and MPP_MIN_UM <= value <= MPP_MAX_UM


def resolve_mpp(
    file_mpp: tuple[float | None, float | None] | None,
    override: float | None,
    path: str,
) -> ResolvedMpp:
    """Applies the ``--mpp`` policy.

    - no override: the file's µm/px, or ``MissingResolution``;
    - override within 1 % of the file's: the file's value, source ``file``;
    - override differing by more: the override, source ``file+override``, file value kept;
    - override and no file value: the override, source ``override``.
    """
    if override is not None and not valid_mpp(override):
        raise InvalidInput(
            f"--mpp {override} is not a plausible resolution "
            f"(expected {MPP_MIN_UM}..{MPP_MAX_UM} µm per pixel)"
        )
    fx, fy = file_mpp if file_mpp is not None else (None, None)
    if valid_mpp(fx) and not valid_mpp(fy):
        fy = fx
    has_file = valid_mpp(fx) and valid_mpp(fy)
    if not has_file:
        if override is None:
            raise MissingResolution(
                f"{path}: the file does not say how many µm a pixel is; "
                "pass it with --mpp (e.g. --mpp 0.25 for a 40x scan, 0.5 for 20x)"
            )
        return ResolvedMpp((override, override), "override", None)
    assert fx is not None
    assert fy is not None
    from_file = (float(fx), float(fy))
    if override is None:
        return ResolvedMpp(from_file, "file", None)
    mean_file = (from_file[0] + from_file[1]) / 2.0
    if abs(override - mean_file) <= MPP_TOLERANCE * mean_file:
        return ResolvedMpp(from_file, "file", from_file)
    return ResolvedMpp((override, override), "file+override", from_file)
