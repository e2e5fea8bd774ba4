"""The class map gives back what was written, in memory and spilled to disk."""

from __future__ import annotations

import numpy as np
import pytest

from service.pipeline.raster import ClassRaster


@pytest.mark.parametrize("spill_bytes", [0, 10**9])
def test_blocks_round_trip(spill_bytes: int) -> None:
    rng = np.random.default_rng(0)
    full = rng.integers(0, 3, size=(300, 500)).astype(np.uint8)
    r = ClassRaster(500, 300, spill_bytes=spill_bytes)
    assert r.spilled == (spill_bytes == 0)
    for y in range(0, 300, 70):
        for x in range(0, 500, 90):
            r.write_block(x, y, full[y : y + 70, x : x + 90])
    back = np.concatenate([r.read_rows(a, b) for a, b in r.bands(64)])
    np.testing.assert_array_equal(back, full)
    r.close()
