"""Read and segmentation throughput, measured side by side in one run.

- read ratio: our read path at the analysis resolution (adapter read + resample to the
  analysis grid, tile by tile as the pipeline reads) vs raw decode of the same level's JPEG
  tiles (tifffile + imagecodecs, no adapter), both in analysis MPix/s; goal >= 0.8;
- segmenter MPix/s for the classical segmenter on 1280² tiles.
Medians of ``--repeat`` runs; the last line is ``read ratio <ours/raw>``.

    python benchmarks/throughput.py [--side 20000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.big_slides import big_svs  # noqa: E402
from service import bootstrap  # noqa: E402
from service.pipeline.params import AnalysisParams  # noqa: E402
from service.pipeline.reading import analysis_grid, prefetch_tiles  # noqa: E402
from service.pipeline.tiling import plan_tiles  # noqa: E402


def raw_decode_mpix_s(path: Path, level_ifd: int) -> float:
    import imagecodecs
    import tifffile

    with tifffile.TiffFile(path) as tf:
        page = tf.pages[level_ifd]
        fh = tf.filehandle
        tables = page.jpegtables
        t = time.perf_counter()
        px = 0
        for off, cnt in zip(page.dataoffsets, page.databytecounts, strict=True):
            fh.seek(off)
            tile = imagecodecs.jpeg8_decode(fh.read(cnt), tables=tables)
            px += tile.shape[0] * tile.shape[1]
        return px / (time.perf_counter() - t) / 1e6


def ours_mpix_s(path: Path) -> tuple[float, int]:
    slide = bootstrap.open_slide(str(path))
    try:
        grid = analysis_grid(slide, 1.0)
        tiles = plan_tiles(grid.width, grid.height, 1280, 128)
        t = time.perf_counter()
        px = 0
        for tile, rgb in prefetch_tiles(slide, grid, tiles):
            px += tile.core_pixels
            assert rgb.shape == (tile.size, tile.size, 3)
        return px / (time.perf_counter() - t) / 1e6, grid.level
    finally:
        slide.close()


def segmenter_mpix_s(n: int = 4) -> float:
    seg = bootstrap.build_segmenter(AnalysisParams())
    seg.load()
    from adapters.synthetic.scene import SyntheticScene
    from service.domain.geometry import Box

    scene = SyntheticScene(6000, 6000, mpp=1.0, seed=3)
    tiles = np.stack([scene.render_rgb(Box(1280 * (i % 3), 1280 * (i // 3), 1280, 1280))
                      for i in range(n)])
    t = time.perf_counter()
    seg.predict(tiles)
    return n * 1280 * 1280 / (time.perf_counter() - t) / 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--side", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    path = big_svs(args.side)
    ours, raw, seg = [], [], []
    for _ in range(args.repeat):
        o, level = ours_mpix_s(path)
        # the SVS has a thumbnail IFD after level 0: pyramid level L > 0 is IFD L + 1
        raw.append(raw_decode_mpix_s(path, 0 if level == 0 else level + 1))
        ours.append(o)
        seg.append(segmenter_mpix_s())
    o, r, s = (statistics.median(v) for v in (ours, raw, seg))
    print(f"slide {args.side}x{args.side} px0 at 0.25 µm/px, analysis at 1.0 µm/px (level {level})")
    print(f"raw JPEG tile decode of that level: {r:.1f} MPix/s (median of {args.repeat})")
    print(f"our read path at analysis level:    {o:.1f} MPix/s")
    print(f"classical segmenter:                {s:.1f} MPix/s")
    print(f"read ratio {o / r:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
