"""Vendor slide formats (Aperio SVS, Hamamatsu NDPI, MIRAX, generic tiled TIFF, …) via OpenSlide.

OpenSlide's ``read_region`` takes level-0 coordinates, like ours, and returns straight-alpha RGBA
that is transparent outside the scanned area; we composite it on white.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from adapters.slides.checks import check_declared_size, check_tiff_declared_size, file_identity
from adapters.slides.mpp import resolve_mpp
from adapters.slides.regions import (
    LevelReadMixin,
    LevelWindow,
    RGBArray,
    read_padded,
)
from adapters.slides.tiff_tiles import TiledTiffReader
from service.domain.errors import SlideUnreadable, UnsupportedFormat
from service.domain.slide import Level, SlideInfo

# OpenSlide vendors whose levels are plain tiled TIFF pages (read directly, see tiff_tiles).
FAST_TIFF_VENDORS = frozenset({"aperio", "generic-tiff"})
FAST_MAX_MEAN_DIFF = 1.0


def detect_vendor(path: str) -> str | None:
    """OpenSlide's vendor name for ``path`` (``aperio``, ``generic-tiff``, …) or None."""
    import openslide

    try:
        vendor = openslide.OpenSlide.detect_format(path)
    except openslide.OpenSlideError:
        return None
    return str(vendor) if vendor else None


def _float_prop(props: Any, key: str) -> float | None:
    try:
        return float(props[key])
    except (KeyError, TypeError, ValueError):
        return None


def rgba_image_on_white(img: Any) -> RGBArray:
    """An RGBA PIL image (straight alpha) → RGB array over white, in Pillow's C code."""
    from PIL import Image

    if img.mode == "RGBA" and img.getchannel("A").getextrema()[0] < 255:
        background = Image.new("RGB", img.size, (255, 255, 255))
        background.paste(img, mask=img.getchannel("A"))
        img = background
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def nominal_downsample(width: int, height: int, lw: int, lh: int, downsample: float) -> float:
    """The whole-number downsample a level was made with, if its size is that downsample's
    rounding of the level-0 size (OpenSlide reports e.g. 3.992 for 1000 px -> 250 px);
    otherwise OpenSlide's estimate. Keeps level geometry identical across adapters."""
    nominal = round(downsample)
    if nominal >= 1 and abs(downsample - nominal) < 0.05 * nominal:
        fits_w = lw in (width // nominal, -(-width // nominal))
        fits_h = lh in (height // nominal, -(-height // nominal))
        if fits_w and fits_h:
            return float(nominal)
    return downsample


class OpenSlideSlide(LevelReadMixin):
    """A ``SlideSource`` over an ``openslide.OpenSlide``.

    Metadata always comes from OpenSlide; pixels of plain tiled TIFF pyramids are decoded
    directly (``tiff_tiles``) when a check at open shows identical output, else by OpenSlide.
    """

    def __init__(
        self, path: str, mpp_override: float | None = None, direct_tiles: bool = True
    ) -> None:
        """Opens ``path``; ``direct_tiles`` allows the verified fast TIFF tile reader."""
        import openslide

        self._openslide_error: type[Exception] = openslide.OpenSlideError
        try:
            self._slide = openslide.OpenSlide(path)
        except openslide.OpenSlideUnsupportedFormatError as exc:
            raise UnsupportedFormat(f"{path}: not a slide format OpenSlide supports") from exc
        except (openslide.OpenSlideError, OSError) as exc:
            check_tiff_declared_size(path)
            raise SlideUnreadable(f"{path}: corrupt or truncated slide ({exc})") from exc
        self._fast: TiledTiffReader | None = None
        try:
            self._info = self._describe(path, mpp_override)
            self._probe()
            self._fast = self._verified_fast_reader(path) if direct_tiles else None
            if self._fast is not None and self._info.vendor == "generic-tiff":
                self._add_subifd_levels(path)
        except BaseException:
            self.close()
            raise

    def _describe(self, path: str, mpp_override: float | None) -> SlideInfo:
        slide = self._slide
        props = slide.properties
        width, height = (int(v) for v in slide.dimensions)
        check_declared_size(path, width, height)
        levels = tuple(
            Level(index=i, width=int(w), height=int(h),
                  downsample=nominal_downsample(width, height, int(w), int(h), float(ds)))
            for i, ((w, h), ds) in enumerate(
                zip(slide.level_dimensions, slide.level_downsamples, strict=True)
            )
        )
        import openslide

        mpp = resolve_mpp(
            (_float_prop(props, openslide.PROPERTY_NAME_MPP_X),
             _float_prop(props, openslide.PROPERTY_NAME_MPP_Y)),
            mpp_override,
            path,
        )
        vendor = str(props.get(openslide.PROPERTY_NAME_VENDOR, "") or "")
        quickhash = props.get(openslide.PROPERTY_NAME_QUICKHASH1)
        identity = f"openslide:quickhash1:{quickhash}" if quickhash else file_identity(path)
        return SlideInfo(
            path=path,
            format=f"openslide:{vendor}" if vendor else "openslide",
            width_px0=width,
            height_px0=height,
            mpp=mpp.mpp,
            levels=levels,
            identity=identity,
            mpp_source=mpp.source,
            mpp_file=mpp.mpp_file,
            vendor=vendor,
            properties={str(k): str(v) for k, v in props.items()},
        )

    def _probe(self) -> None:
        """Decodes one pixel of the last tile of each level, so truncation shows at open."""
        for lv in self._info.levels:
            self._read_level(lv, LevelWindow(lv.width - 1, lv.height - 1, 1, 1))

    def _verified_fast_reader(self, path: str) -> TiledTiffReader | None:
        """The direct tile reader, if this is a plain tiled TIFF pyramid and a real tile
        decodes to the same pixels as through OpenSlide."""
        if self._info.vendor not in FAST_TIFF_VENDORS:
            return None
        sizes = [(lv.width, lv.height) for lv in self._info.levels]
        fast = TiledTiffReader.open(path, sizes)
        if fast is None:
            return None
        try:
            for lv in self._info.levels:
                # OpenSlide maps level-0 locations with its own (non-integer) downsample, so
                # away from the origin a rounded-downsample level can be a pixel off: compare
                # level 0 in the middle and the other levels at their origin
                x0 = lv.width // 2 if lv.index == 0 else 0
                y0 = lv.height // 2 if lv.index == 0 else 0
                win = LevelWindow(x0, y0, min(256, lv.width - x0), min(256, lv.height - y0))
                ours = fast.read(lv.index, win.x, win.y, win.width, win.height)
                theirs = self._read_level(lv, win)
                diff = np.abs(ours.astype(np.int16) - theirs.astype(np.int16)).mean()
                if not diff <= FAST_MAX_MEAN_DIFF:
                    fast.close()
                    return None
        except Exception:  # any doubt: stay with OpenSlide
            fast.close()
            return None
        return fast

    def _add_subifd_levels(self, path: str) -> None:
        """OpenSlide's generic-tiff reader ignores pyramid levels stored as SubIFDs
        (e.g. OME-TIFF); add them, read by the direct tile reader."""
        sizes = TiledTiffReader.subifd_level_sizes(path)
        base = self._info.levels[0]
        if len(sizes) <= len(self._info.levels) or sizes[0] != (base.width, base.height):
            return
        fast = TiledTiffReader.open(path, sizes)
        if fast is None:
            return
        levels = tuple(
            Level(i, w, h, round((base.width / w + base.height / h) / 2.0, 6))
            for i, (w, h) in enumerate(sizes)
        )
        assert self._fast is not None
        self._fast.close()
        self._fast = fast
        self._info = dataclasses.replace(self._info, levels=levels)
        self._probe()

    @property
    def info(self) -> SlideInfo:
        return self._info

    def _read_level(self, lv: Level, win: LevelWindow) -> RGBArray:
        fast = self._fast
        if fast is not None:
            def fast_reader(x: int, y: int, w: int, h: int) -> RGBArray:
                try:
                    return fast.read(lv.index, x, y, w, h)
                except Exception as exc:  # decoder and I/O errors of any kind
                    raise SlideUnreadable(
                        f"{self._info.path}: cannot decode level {lv.index} at ({x}, {y}) "
                        f"({exc}); the file is probably truncated or corrupt"
                    ) from exc

            return read_padded(win, lv, fast_reader)

        def reader(x: int, y: int, w: int, h: int) -> RGBArray:
            location = (round(x * lv.downsample), round(y * lv.downsample))
            try:
                img = self._slide.read_region(location, lv.index, (w, h))
            except self._openslide_error as exc:
                raise SlideUnreadable(
                    f"{self._info.path}: cannot decode level {lv.index} at {location} ({exc})"
                ) from exc
            return rgba_image_on_white(img)

        return read_padded(win, lv, reader)

    def close(self) -> None:
        if self._fast is not None:
            self._fast.close()
            self._fast = None
        self._slide.close()

