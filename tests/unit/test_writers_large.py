"""Vertex budget on a large synthetic slide (75 Mpx class map): counts, sizes, time.

Run: ``python -m pytest -s -m slow tests/unit/test_writers_large.py``; it prints the figures.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import shapely

from adapters.writers.dicom_ann import BulkAnnotationWriter
from adapters.writers.geojson import GeoJsonWriter
from adapters.writers.vectorize import MAX_TISSUE_VERTICES, vectorize
from service.domain.geometry import Box
from tests.helpers_outcome import ArrayRaster, fake_outcome

WIDTH_PX0, HEIGHT_PX0, MPP, DOWNSAMPLE = 40_000, 30_000, 0.25, 4


@pytest.mark.slow
def test_large_slide_stays_within_the_vertex_budget(tmp_path: Path) -> None:
    from adapters.synthetic.scene import SyntheticScene

    scene = SyntheticScene(WIDTH_PX0, HEIGHT_PX0, mpp=MPP, seed=1, cellularity_target=40.0)
    height, width = HEIGHT_PX0 // DOWNSAMPLE, WIDTH_PX0 // DOWNSAMPLE
    cmap = np.empty((height, width), np.uint8)
    band = 1000
    for y in range(0, height, band):
        rows = min(band, height - y)
        cmap[y:y + rows] = scene.truth(
            Box(0, y * DOWNSAMPLE, WIDTH_PX0, rows * DOWNSAMPLE), float(DOWNSAMPLE))
    outcome = fake_outcome(cmap)
    outcome = replace(outcome, px0_per_px=(float(DOWNSAMPLE), float(DOWNSAMPLE)),
                      result=replace(outcome.result, mpp_analyzed=MPP * DOWNSAMPLE),
                      class_map=ArrayRaster(cmap))
    start = time.perf_counter()
    vectors = vectorize(outcome)
    vectorize_s = time.perf_counter() - start
    tissue_vertices = int(shapely.get_num_coordinates(vectors.hematopoietic))
    start = time.perf_counter()
    geojson = GeoJsonWriter().write(outcome, tmp_path)
    geojson_s = time.perf_counter() - start
    start = time.perf_counter()
    ann = BulkAnnotationWriter().write(outcome, tmp_path)
    ann_s = time.perf_counter() - start
    print(
        f"\nclass map {width}x{height} ({width * height / 1e6:.0f} Mpx),"
        f" vectorise {vectorize_s:.1f}s,"
        f" geojson {geojson_s:.1f}s, ann {ann_s:.1f}s\n"
        f"tissue polygons {len(vectors.hematopoietic.geoms)}, holes "
        f"{sum(len(p.interiors) for p in vectors.hematopoietic.geoms)}, vertices {tissue_vertices},"
        f" tolerance {vectors.tolerance_px} px\n"
        f"adipocytes {len(vectors.adipocytes)} (dropped specks {vectors.adipocytes_dropped},"
        f" cut {vectors.adipocytes_truncated}), all vertices {vectors.vertex_count}\n"
        + "\n".join(f"{p.name}: {p.stat().st_size / 1e6:.1f} MB" for p in [*geojson, *ann])
    )
    assert tissue_vertices <= MAX_TISSUE_VERTICES
    assert vectors.hematopoietic.is_valid
    assert vectors.adipocytes_truncated == 0
