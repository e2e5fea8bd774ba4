"""The analysis class map: uint8 rows, in memory when small, in a temp file when large.

The file variant writes and reads with pwrite/pread (no mmap), so resident memory stays
bounded by the band being read, whatever the slide size.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import numpy as np
import numpy.typing as npt

DEFAULT_SPILL_BYTES = 32 * 1024 * 1024


class ClassRaster:
    """A width x height uint8 raster written block by block, read in row bands."""

    def __init__(self, width: int, height: int, spill_bytes: int = DEFAULT_SPILL_BYTES,
                 spill_dir: str | None = None) -> None:
        self._width = width
        self._height = height
        self._mem: npt.NDArray[np.uint8] | None = None
        self._fd: int | None = None
        if width * height <= spill_bytes:
            self._mem = np.zeros((height, width), dtype=np.uint8)
        else:
            where = spill_dir or tempfile.gettempdir()
            need = width * height
            free = shutil.disk_usage(where).free
            if free < need * 1.1:
                from service.domain.errors import ResourceExhausted

                raise ResourceExhausted(
                    f"the class map needs {need / 1e6:.0f} MB in {where} but only "
                    f"{free / 1e6:.0f} MB are free (set TMPDIR to a larger disk)")
            fd, path = tempfile.mkstemp(prefix="marrowscope-map-", suffix=".u8", dir=spill_dir)
            os.unlink(path)  # anonymous: freed when closed, even after a crash
            os.ftruncate(fd, width * height)
            self._fd = fd

    @property
    def width(self) -> int:
        return self._width

    @property
    def height(self) -> int:
        return self._height

    @property
    def spilled(self) -> bool:
        return self._fd is not None

    def write_block(self, x: int, y: int, block: npt.NDArray[np.uint8]) -> None:
        """Writes ``block`` with its top-left corner at (x, y)."""
        h, w = block.shape
        if self._mem is not None:
            self._mem[y : y + h, x : x + w] = block
            return
        assert self._fd is not None
        block = np.ascontiguousarray(block, dtype=np.uint8)
        if x == 0 and w == self._width:
            os.pwrite(self._fd, block.tobytes(), y * self._width)
            return
        for r in range(h):
            os.pwrite(self._fd, block[r].tobytes(), (y + r) * self._width + x)

    def read_rows(self, y0: int, y1: int) -> npt.NDArray[np.uint8]:
        """Rows [y0, y1) as a new (y1 - y0, width) array."""
        y0, y1 = max(0, y0), min(self._height, y1)
        if self._mem is not None:
            return self._mem[y0:y1].copy()
        assert self._fd is not None
        n = (y1 - y0) * self._width
        data = os.pread(self._fd, n, y0 * self._width)
        return np.frombuffer(data, dtype=np.uint8).reshape(y1 - y0, self._width).copy()

    def bands(self, rows: int = 1024) -> list[tuple[int, int]]:
        """Row ranges covering the raster."""
        return [(y, min(y + rows, self._height)) for y in range(0, self._height, rows)]

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._mem = None
