"""Fast tile reads for tiled TIFF pyramids (Aperio SVS, generic tiled TIFF).

OpenSlide paints regions through cairo with premultiplied ARGB, several times slower than
decoding the tiles themselves. For TIFF levels that are plain tiled images this module reads
the tile bytes with ``os.pread`` and decodes them with tifffile's codec (libjpeg-turbo via
imagecodecs), in parallel, with a small LRU cache of decoded tiles. ``OpenSlideSlide`` uses it
only after checking on a real tile that it returns the same pixels as OpenSlide.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from adapters.slides.regions import WHITE, RGBArray

CACHE_BYTES = 96 << 20
DECODE_THREADS = min(4, os.cpu_count() or 1)


@dataclass(frozen=True)
class TiffLevel:
    """One tiled TIFF page used as a pyramid level."""

    width: int
    height: int
    tile_width: int
    tile_height: int
    offsets: tuple[int, ...]
    bytecounts: tuple[int, ...]
    jpegtables: bytes | None
    decode: Callable[..., Any]

    @property
    def tiles_across(self) -> int:
        return -(-self.width // self.tile_width)


def _rgb_tiled_page(page: Any) -> bool:
    return bool(
        page.is_tiled
        and page.dtype == np.uint8
        and page.samplesperpixel == 3
        and page.planarconfig == 1
        and page.imagedepth == 1
        and page.photometric in (2, 6)  # RGB, YCbCr
    )


class TiledTiffReader:
    """Reads level-pixel windows of tiled TIFF pages; thread-safe."""

    def __init__(self, path: str, levels: Sequence[TiffLevel]) -> None:
        self._levels = list(levels)
        self._fd = os.open(path, os.O_RDONLY)
        self._cache: OrderedDict[tuple[int, int], RGBArray] = OrderedDict()
        self._cache_bytes = 0
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="tiff-decode")
        self._file_size = os.fstat(self._fd).st_size

    @classmethod
    def open(cls, path: str, sizes: Sequence[tuple[int, int]]) -> TiledTiffReader | None:
        """A reader whose level i is the tiled page of size ``sizes[i]``, or None if some
        level has no such plain tiled RGB page (then callers keep using OpenSlide)."""
        import tifffile

        try:
            with tifffile.TiffFile(path) as tif:
                pages = [p for p in tif.pages if isinstance(p, tifffile.TiffPage)]
                pages += [p for series in tif.series for level in series.levels
                          for p in level.pages if isinstance(p, tifffile.TiffPage)]
                by_size: dict[tuple[int, int], Any] = {}
                for page in pages:
                    if _rgb_tiled_page(page):
                        by_size.setdefault((int(page.imagewidth), int(page.imagelength)), page)
                chosen = [by_size.get((int(w), int(h))) for w, h in sizes]
                if any(p is None for p in chosen):
                    return None
                levels = [
                    TiffLevel(
                        width=int(p.imagewidth),
                        height=int(p.imagelength),
                        tile_width=int(p.tilewidth),
                        tile_height=int(p.tilelength),
                        offsets=tuple(int(o) for o in p.dataoffsets),
                        bytecounts=tuple(int(n) for n in p.databytecounts),
                        jpegtables=p.jpegtables,
                        decode=p.decode,
                    )
                    for p in chosen
                    if p is not None
                ]
        except Exception:  # anything unusual: OpenSlide remains the reader
            return None
        return cls(path, levels)

    @staticmethod
    def subifd_level_sizes(path: str) -> list[tuple[int, int]]:
        """Sizes of the pyramid levels tifffile finds in the first series (SubIFD pyramids
        included, which OpenSlide's generic-tiff reader ignores); [] if unreadable."""
        import tifffile

        try:
            with tifffile.TiffFile(path) as tif:
                levels = tif.series[0].levels
                sizes = []
                for level in levels:
                    page = level.pages[0]
                    if not isinstance(page, tifffile.TiffPage) or not _rgb_tiled_page(page):
                        return []
                    sizes.append((int(page.imagewidth), int(page.imagelength)))
                return sizes
        except Exception:  # not a pyramid we understand
            return []

    def _decode_tile(self, level: int, index: int) -> RGBArray:
        lv = self._levels[level]
        count = lv.bytecounts[index] if index < len(lv.bytecounts) else 0
        if count == 0:  # sparse TIFF: missing tile
            return np.full((lv.tile_height, lv.tile_width, 3), WHITE, dtype=np.uint8)
        offset = lv.offsets[index]
        if offset + count > self._file_size:
            raise ValueError(f"tile {index} of level {level} lies beyond the end of the file")
        data = os.pread(self._fd, count, offset)
        array, _, _ = lv.decode(data, index, jpegtables=lv.jpegtables)
        if array is None:
            raise ValueError(f"tile {index} of level {level} could not be decoded")
        tile = np.asarray(array, dtype=np.uint8).reshape(lv.tile_height, lv.tile_width, 3)
        return tile

    def _tile(self, level: int, index: int) -> RGBArray:
        key = (level, index)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        tile = self._decode_tile(level, index)
        with self._lock:
            if key not in self._cache:
                self._cache[key] = tile
                self._cache_bytes += tile.nbytes
                while self._cache_bytes > CACHE_BYTES and self._cache:
                    _, old = self._cache.popitem(last=False)
                    self._cache_bytes -= old.nbytes
        return tile

    def read(self, level: int, x: int, y: int, w: int, h: int) -> RGBArray:
        """The window (x, y, w, h) in pixels of ``level``; it must lie inside the level."""
        lv = self._levels[level]
        tw, th = lv.tile_width, lv.tile_height
        tx0, ty0 = x // tw, y // th
        tx1, ty1 = (x + w - 1) // tw, (y + h - 1) // th
        keys = [(tx, ty) for ty in range(ty0, ty1 + 1) for tx in range(tx0, tx1 + 1)]
        indices = [ty * lv.tiles_across + tx for tx, ty in keys]
        if len(indices) == 1:
            tiles = [self._tile(level, indices[0])]
        else:
            tiles = list(self._pool.map(lambda i: self._tile(level, i), indices))
        out = np.empty((h, w, 3), dtype=np.uint8)
        for (tx, ty), tile in zip(keys, tiles, strict=True):
            x0, y0 = max(x, tx * tw), max(y, ty * th)
            x1, y1 = min(x + w, (tx + 1) * tw), min(y + h, (ty + 1) * th)
            out[y0 - y : y1 - y, x0 - x : x1 - x] = tile[
                y0 - ty * th : y1 - ty * th, x0 - tx * tw : x1 - tx * tw
            ]
        return out

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        with self._lock:
            self._cache.clear()
            self._cache_bytes = 0
        os.close(self._fd)
