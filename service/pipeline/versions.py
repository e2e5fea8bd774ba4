"""Versions of the libraries that shape a result, for provenance."""

from __future__ import annotations

from functools import lru_cache
from importlib import metadata

_LIBS = ("numpy", "scipy", "pillow", "openslide-python", "openslide-bin", "wsidicom",
         "tifffile", "highdicom", "pydicom", "torch", "nnunetv2")


@lru_cache(maxsize=1)
def library_versions() -> dict[str, str]:
    out = {}
    for name in _LIBS:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out
