"""Opens any slide reference with the right adapter; format detection is by content.

Order: DICOMweb/HTTP references → ``adapters.slides.dicomweb``; folders → DICOM-WSI;
``DICM`` preamble → DICOM-WSI; whatever OpenSlide recognises → OpenSlide; PNG/JPEG/TIFF
magic → plain image; anything else → ``UnsupportedFormat``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable, Iterator

from adapters.slides.checks import check_declared_size
from adapters.slides.dicom_context import is_dicom_file
from adapters.slides.dicom_slide import DicomSlide, dicom_files_in, wsi_series_in
from adapters.slides.image_slide import ImageSlide, sniff_image_kind
from adapters.slides.openslide_slide import OpenSlideSlide, detect_vendor
from service.domain.errors import SlideNotFound, SlideTooLarge, SlideUnreadable, UnsupportedFormat
from service.ports.slides import SlideSource

REMOTE_PREFIXES = ("dicomweb:", "http://", "https://")
_SNIFF_BYTES = 16
# OpenSlide's catch-all TIFF reader; a plain (stripped) TIFF is left to the image adapter.
_GENERIC_TIFF = "generic-tiff"


def is_remote(reference: str) -> bool:
    """True for references served over DICOMweb/HTTP rather than read from disk."""
    return reference.lower().startswith(REMOTE_PREFIXES)


def _head(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(_SNIFF_BYTES)
    except OSError as exc:
        raise SlideNotFound(f"{path}: cannot read ({exc.strerror or exc})") from exc


def detect_format(path: str) -> str | None:
    """``dicom``, ``openslide`` or a plain image kind (``png``/``jpeg``/``tiff``), or None.

    A TIFF that OpenSlide does not recognise is a plain image only if it is a readable,
    stripped (untiled) TIFF; a tiled or unparseable one is a broken slide (``SlideUnreadable``).
    """
    if os.path.isdir(path):
        return "dicom" if dicom_files_in(path) else None
    if is_dicom_file(path):
        return "dicom"
    kind = sniff_image_kind(_head(path))
    vendor = detect_vendor(path)
    if kind == "tiff":
        if vendor and vendor != _GENERIC_TIFF:
            return "openslide"
        tiled = _tiff_is_tiled(path)
        if vendor:
            return "openslide" if tiled else "tiff"
        if tiled:
            raise SlideUnreadable(
                f"{path}: a tiled TIFF that OpenSlide cannot read; the file is probably "
                "truncated or corrupt"
            )
        return "tiff"
    if vendor:
        return "openslide"
    return kind


@contextlib.contextmanager
def _quiet_tifffile() -> Iterator[None]:
    """Silences tifffile's log warnings about broken files; we raise our own error instead."""
    logger = logging.getLogger("tifffile")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _tiff_is_tiled(path: str) -> bool:
    """Whether the TIFF's first image is tiled; ``SlideUnreadable`` if its IFDs are broken."""
    import tifffile

    try:
        with _quiet_tifffile(), tifffile.TiffFile(path) as tif:
            pages = list(tif.pages)
            if not pages:
                raise ValueError("no images in the file")
            first = tif.pages.first
            check_declared_size(path, int(first.imagewidth), int(first.imagelength))
            tiled = bool(first.is_tiled)
            end = os.path.getsize(path)
            offsets = [o + n for p in pages for o, n in
                       zip(getattr(p, "dataoffsets", ()), getattr(p, "databytecounts", ()),
                           strict=False)]
            if offsets and max(offsets) > end:
                raise ValueError("image data extends beyond the end of the file")
            return tiled
    except SlideTooLarge:
        raise
    except Exception as exc:  # tifffile raises many types for broken files
        raise SlideUnreadable(f"{path}: corrupt or truncated TIFF ({exc})") from exc


def open_slide(reference: str, mpp_override: float | None = None) -> SlideSource:
    """Opens ``reference`` (a path, a DICOM folder or a DICOMweb URL) as a ``SlideSource``.

    Raises the domain errors ``SlideNotFound``, ``UnsupportedFormat``, ``SlideUnreadable``,
    ``MissingResolution``, ``SlideTooLarge`` (or ``InvalidInput`` for a bad ``--mpp``).
    """
    if is_remote(reference):
        from adapters.slides.dicomweb import (  # type: ignore[import-not-found,unused-ignore]
            open_dicomweb_slide,
        )

        slide: SlideSource = open_dicomweb_slide(reference, mpp_override)
        return slide
    if not os.path.exists(reference):
        raise SlideNotFound(f"{reference}: no such file or folder")
    fmt = detect_format(reference)
    if fmt == "dicom":
        return DicomSlide(reference, mpp_override)
    if fmt == "openslide":
        return OpenSlideSlide(reference, mpp_override)
    if fmt in ("png", "jpeg", "tiff"):
        return ImageSlide(reference, fmt, mpp_override)
    what = "folder holds no slide files" if os.path.isdir(reference) else "unrecognised content"
    raise UnsupportedFormat(
        f"{reference}: {what}; supported are DICOM-WSI, OpenSlide formats "
        "(SVS, NDPI, MRXS, SCN, tiled TIFF, …) and PNG/JPEG/TIFF images"
    )


def _is_slide_file(path: str) -> bool:
    """A non-DICOM file recognised as a slide; broken slides count (opening reports them)."""
    try:
        return not is_dicom_file(path) and detect_format(path) is not None
    except SlideUnreadable:
        return True
    except SlideNotFound:
        return False


def _expand_folder(folder: str) -> list[str]:
    found: list[str] = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        series = wsi_series_in(root)
        if len(series) == 1:
            found.append(root)
        elif len(series) > 1:
            found.extend(sorted(group[0].path for group in series.values()))
        found.extend(
            p for p in (os.path.join(root, f) for f in sorted(files)) if _is_slide_file(p)
        )
    return found


def list_slides(paths: Iterable[str]) -> list[str]:
    """Expands folders to the slides inside them; other references are kept as given.

    A folder of DICOM instances of one slide counts as one slide (several series: one file
    per series). Other folders are walked for files recognised as slides by content.
    """
    out: list[str] = []
    for path in paths:
        if is_remote(path) or not os.path.isdir(path):
            out.append(path)
        else:
            out.extend(_expand_folder(path))
    return list(dict.fromkeys(out))
