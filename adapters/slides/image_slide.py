"""Plain single images (PNG, JPEG, single-image TIFF) as a slide.

Such files carry no trustworthy µm/px, so ``--mpp`` is required. The image is decoded once, on
first read, and a small pyramid (downsamples 4, 16, …) is derived lazily for cheap thumbnails
and low-resolution reads. The declared size is checked before anything is decoded.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from adapters.slides.checks import check_plain_image_size, file_identity
from adapters.slides.mpp import resolve_mpp
from adapters.slides.regions import (
    RGBArray,
    check_level_index,
    chunked_thumbnail,
    composite_on_white,
    level_window,
    read_padded,
)
from service.domain.errors import (
    MarrowscopeError,
    MissingResolution,
    SlideTooLarge,
    SlideUnreadable,
    UnsupportedFormat,
)
from service.domain.geometry import Box
from service.domain.slide import Level, SlideInfo

PYRAMID_FACTOR = 4
PYRAMID_MIN_SIDE_PX = 512

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def sniff_image_kind(head: bytes) -> str | None:
    """``png``, ``jpeg`` or ``tiff`` from a file's first bytes, else None."""
    if head.startswith(PNG_MAGIC):
        return "png"
    if head.startswith(JPEG_MAGIC):
        return "jpeg"
    if head[:4] in TIFF_MAGICS:
        return "tiff"
    return None


def _pyramid(width: int, height: int) -> tuple[Level, ...]:
    levels = [Level(0, width, height, 1.0)]
    ds = PYRAMID_FACTOR
    while max(width, height) / ds >= PYRAMID_MIN_SIDE_PX:
        w, h = -(-width // ds), -(-height // ds)
        levels.append(Level(len(levels), w, h, float(ds)))
        ds *= PYRAMID_FACTOR
    return tuple(levels)


def _to_rgb(array: np.ndarray[Any, Any]) -> RGBArray:
    """Any decoded raster (grey, RGB, RGBA; 8 or 16 bit) → RGB uint8."""
    a = array
    if a.dtype == np.uint16:
        a = (a >> 8).astype(np.uint8)
    elif a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype != np.uint8:
        raise UnsupportedFormat(f"pixel type {a.dtype} is not supported for plain images")
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4):
        raise UnsupportedFormat(f"image of shape {array.shape} is not an RGB picture")
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    elif a.shape[2] == 2:  # grey + alpha
        a = np.concatenate([np.repeat(a[:, :, :1], 3, axis=2), a[:, :, 1:]], axis=2)
    return np.ascontiguousarray(composite_on_white(a))


class ImageSlide:
    """A ``SlideSource`` over one plain image file."""

    def __init__(self, path: str, kind: str, mpp_override: float | None = None) -> None:
        self._path = path
        self._kind = kind
        width, height = self._declared_size()
        check_plain_image_size(path, width, height)
        if mpp_override is None:
            raise MissingResolution(
                f"{path}: a plain {kind.upper()} image has no µm/px; it needs --mpp "
                "(e.g. --mpp 0.5 for a 20x scan)"
            )
        mpp = resolve_mpp(None, mpp_override, path)
        self._levels = _pyramid(width, height)
        self._pixels: dict[int, RGBArray] = {}
        self._lock = threading.Lock()
        self._info = SlideInfo(
            path=path,
            format=kind,
            width_px0=width,
            height_px0=height,
            mpp=mpp.mpp,
            levels=self._levels,
            identity=file_identity(path),
            mpp_source=mpp.source,
            mpp_file=None,
        )

    def _declared_size(self) -> tuple[int, int]:
        """Width and height from the header only (no pixels decoded)."""
        if self._kind == "tiff":
            import tifffile

            try:
                with tifffile.TiffFile(self._path) as tif:
                    page = tif.pages.first
                    return int(page.imagewidth), int(page.imagelength)
            except Exception as exc:  # tifffile raises many types for broken files
                raise SlideUnreadable(f"{self._path}: corrupt TIFF header ({exc})") from exc
        with self._open_pil() as img:
            return int(img.size[0]), int(img.size[1])

    def _open_pil(self) -> Any:
        """Opens with the format's Pillow plugin directly, bypassing Pillow's global
        decompression-bomb limit: our own limit is checked on the declared size instead."""
        from PIL import Image, JpegImagePlugin, PngImagePlugin

        plugin: Any = {"png": PngImagePlugin.PngImageFile, "jpeg": JpegImagePlugin.JpegImageFile}
        try:
            return plugin[self._kind](self._path)
        except Image.DecompressionBombError as exc:
            raise SlideTooLarge(f"{self._path}: {exc}") from exc
        except (OSError, SyntaxError, ValueError) as exc:
            raise SlideUnreadable(f"{self._path}: corrupt {self._kind.upper()} ({exc})") from exc

    def _decode(self) -> RGBArray:
        try:
            if self._kind == "tiff":
                import tifffile

                with tifffile.TiffFile(self._path) as tif:
                    raw = tif.pages.first.asarray()
            else:
                with self._open_pil() as img:
                    img.load()
                    raw = np.asarray(img)
        except MarrowscopeError:
            raise
        except Exception as exc:  # decoders raise many types for truncated data
            raise SlideUnreadable(
                f"{self._path}: cannot decode the {self._kind.upper()} image ({exc})"
            ) from exc
        rgb = _to_rgb(raw)
        if rgb.shape[:2] != (self._levels[0].height, self._levels[0].width):
            raise SlideUnreadable(f"{self._path}: decoded size differs from the declared size")
        return rgb

    def _level_pixels(self, index: int) -> RGBArray:
        with self._lock:
            return self._level_pixels_locked(index)

    def _level_pixels_locked(self, index: int) -> RGBArray:
        cached = self._pixels.get(index)
        if cached is not None:
            return cached
        if index == 0:
            pixels = self._decode()
        else:
            from PIL import Image

            finer = self._level_pixels_locked(index - 1)
            reduced = Image.fromarray(finer).reduce(PYRAMID_FACTOR)
            pixels = np.asarray(reduced, dtype=np.uint8)
        self._pixels[index] = pixels
        return pixels

    @property
    def info(self) -> SlideInfo:
        return self._info

    def _read_level(self, lv: Level, x: int, y: int, w: int, h: int) -> RGBArray:
        return self._level_pixels(lv.index)[y : y + h, x : x + w].copy()

    def read_region(self, box: Box, level: int) -> RGBArray:
        lv = check_level_index(self._levels, level)
        return read_padded(
            level_window(box, lv.downsample),
            lv,
            lambda x, y, w, h: self._read_level(lv, x, y, w, h),
        )

    def thumbnail(self, max_size: int) -> RGBArray:
        levels = self._levels
        return chunked_thumbnail(
            levels,
            lambda i, win: self._read_level(levels[i], win.x, win.y, win.width, win.height),
            max_size,
        )

    def close(self) -> None:
        with self._lock:
            self._pixels.clear()
