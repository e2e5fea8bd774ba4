"""Checks every adapter runs before it allocates pixels, and a cheap content identity."""

from __future__ import annotations

import hashlib
import os

from service.domain.errors import SlideTooLarge

# A pyramid side longer than this is certainly a corrupt header (the largest scanners
# produce ~200 000 px); OpenSlide and DICOM use 32-bit coordinates anyway.
MAX_SIDE_PX = 2**31 - 1
# A plain (non-pyramidal) image is decoded whole into memory; beyond this it is refused.
MAX_PLAIN_IMAGE_PX = 1_000_000_000

_IDENTITY_CHUNK = 1 << 20
_FULL_HASH_LIMIT = 64 << 20


def check_declared_size(path: str, width_px0: int, height_px0: int) -> None:
    """Raises ``SlideTooLarge`` for absurd or non-positive declared dimensions."""
    if width_px0 <= 0 or height_px0 <= 0:
        raise SlideTooLarge(f"{path}: declared size {width_px0}x{height_px0} px is not valid")
    if width_px0 > MAX_SIDE_PX or height_px0 > MAX_SIDE_PX:
        raise SlideTooLarge(
            f"{path}: declared size {width_px0}x{height_px0} px exceeds the limit of "
            f"{MAX_SIDE_PX} px per side; the header is probably corrupt"
        )


def check_plain_image_size(path: str, width_px0: int, height_px0: int) -> None:
    """Like ``check_declared_size`` plus the pixel budget of a plain image held in memory."""
    check_declared_size(path, width_px0, height_px0)
    if width_px0 * height_px0 > MAX_PLAIN_IMAGE_PX:
        raise SlideTooLarge(
            f"{path}: a plain image of {width_px0}x{height_px0} px "
            f"({width_px0 * height_px0 / 1e9:.2f} Gpx) is too large to decode in memory "
            f"(limit {MAX_PLAIN_IMAGE_PX / 1e9:g} Gpx); convert it to a pyramidal TIFF or DICOM-WSI"
        )


def check_tiff_declared_size(path: str) -> None:
    """``SlideTooLarge`` if a TIFF's first image declares absurd dimensions (header only)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            width, height = int(page.imagewidth), int(page.imagelength)
    except Exception:  # not parseable: the caller reports the file as unreadable
        return
    check_declared_size(path, width, height)


def file_identity(path: str) -> str:
    """``sha256:<hex>`` of the file's content (size + first/last MiB for files over 64 MiB)."""
    digest = hashlib.sha256()
    size = os.path.getsize(path)
    digest.update(str(size).encode())
    with open(path, "rb") as fh:
        if size <= _FULL_HASH_LIMIT:
            for chunk in iter(lambda: fh.read(_IDENTITY_CHUNK), b""):
                digest.update(chunk)
        else:
            digest.update(fh.read(_IDENTITY_CHUNK))
            fh.seek(size - _IDENTITY_CHUNK)
            digest.update(fh.read(_IDENTITY_CHUNK))
    return f"sha256:{digest.hexdigest()}"
