"""Vectorisation: level-0 mapping, seam-free bands, validity and the vertex budget."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from shapely.geometry import Polygon

from adapters.writers.holes import hole_free_pieces
from adapters.writers.vectorize import (
    adipocyte_polygons,
    iter_adipocytes,
    marrow_region,
    mask_polygons,
    polygons_from_mask,
    tissue_batches,
    vectorize,
)
from service.domain.labels import TissueClass
from tests.helpers_outcome import PX0_PER_PX, ArrayRaster, fake_outcome, known_class_map


def test_block_maps_to_level0_pixel_edges() -> None:
    cmap = np.zeros((20, 20), np.uint8)
    cmap[5:8, 2:5] = TissueClass.HEMATOPOIETIC  # analysis px cols 2..4, rows 5..7
    vectors = vectorize(fake_outcome(cmap))
    minx, miny, maxx, maxy = vectors.hematopoietic.bounds
    # pixel (c, r) covers level-0 [c*s, (c+1)*s): the block spans [2s, 5s) x [5s, 8s)
    assert (minx, miny, maxx, maxy) == (2 * PX0_PER_PX, 5 * PX0_PER_PX,
                                        5 * PX0_PER_PX, 8 * PX0_PER_PX)


def test_tissue_has_holes_where_adipocytes_are() -> None:
    vectors = vectorize(fake_outcome())
    assert vectors.hematopoietic.is_valid
    assert sum(len(p.interiors) for p in vectors.hematopoietic.geoms) == 6
    assert vectors.marrow.is_valid
    assert sum(len(p.interiors) for p in vectors.marrow.geoms) == 0


def test_tissue_outline_is_seam_free_across_bands() -> None:
    raster = ArrayRaster(known_class_map())
    whole, _ = mask_polygons(raster, lambda rows: rows == TissueClass.HEMATOPOIETIC)
    banded, _ = mask_polygons(raster, lambda rows: rows == TissueClass.HEMATOPOIETIC,
                              band_rows=37)
    assert banded.is_valid
    assert len(banded.geoms) == len(whole.geoms) == 1
    assert len(banded.geoms[0].interiors) == len(whole.geoms[0].interiors)
    assert shapely.hausdorff_distance(banded, whole) <= 1.0


@pytest.mark.parametrize("band_rows", [7, 16, 64, 1000])
def test_adipocyte_cut_by_band_border_is_one_polygon(band_rows: int) -> None:
    raster = ArrayRaster(known_class_map())
    reference, dropped_ref, _ = adipocyte_polygons(raster, 25, band_rows=10_000)
    found, dropped, truncated = adipocyte_polygons(raster, 25, band_rows=band_rows)
    assert sorted(n for _, n in found) == sorted(n for _, n in reference)
    assert (dropped, truncated) == (dropped_ref, 0) == (1, 0)
    assert all(p.is_valid and not p.interiors for p, _ in found)


def test_adipocyte_areas_are_pixel_counts() -> None:
    cmap = known_class_map()
    vectors = vectorize(fake_outcome(cmap))
    um2_per_px = (PX0_PER_PX * 0.5) ** 2
    total = sum(a.area_um2 for a in vectors.adipocytes)
    speck = 1
    expected = (np.count_nonzero(cmap == TissueClass.ADIPOSE) - speck) * um2_per_px
    assert total == pytest.approx(expected)


def test_simplified_outline_stays_within_one_pixel() -> None:
    mask = known_class_map() == TissueClass.HEMATOPOIETIC
    mask[150, 90] = True  # fill the one-pixel speck (dropped from outlines by design)
    exact = shapely.unary_union(polygons_from_mask(mask))
    simple, tolerance = mask_polygons(ArrayRaster(mask.astype(np.uint8)), lambda r: r == 1)
    assert tolerance <= 1.0
    assert shapely.hausdorff_distance(simple, exact) <= 1.0


def test_speckled_fat_does_not_explode_into_vertices() -> None:
    rng = np.random.default_rng(0)
    cmap = np.full((400, 400), TissueClass.HEMATOPOIETIC, np.uint8)
    cmap[rng.random((400, 400)) < 0.15] = TissueClass.ADIPOSE  # isolated specks
    vectors = vectorize(fake_outcome(cmap))
    assert len(vectors.adipocytes) == 0
    assert vectors.adipocytes_dropped > 1000
    assert vectors.hematopoietic.is_valid


def test_hole_free_pieces_tile_the_polygon() -> None:
    outer = [(0, 0), (100, 0), (100, 60), (0, 60)]
    holes = [[(10 + 20 * i, 10), (20 + 20 * i, 10), (20 + 20 * i, 20), (10 + 20 * i, 20)]
             for i in range(4)]
    poly = Polygon(outer, holes)
    pieces = hole_free_pieces(poly)
    assert all(not p.interiors and p.is_valid for p in pieces)
    assert sum(p.area for p in pieces) == pytest.approx(poly.area)
    assert shapely.unary_union(pieces).equals(poly)


def two_blobs() -> np.ndarray:
    """Two separate tissue blobs, one near the top and one near the bottom, with a vacuole each."""
    cmap = np.zeros((300, 200), np.uint8)
    cmap[10:60, 20:180] = TissueClass.HEMATOPOIETIC
    cmap[20:40, 40:60] = TissueClass.ADIPOSE
    cmap[150:290, 30:170] = TissueClass.HEMATOPOIETIC
    cmap[200:230, 90:120] = TissueClass.ADIPOSE
    return cmap


def test_complete_tissue_is_yielded_before_the_last_band() -> None:
    outcome = fake_outcome(two_blobs())
    batches = list(tissue_batches(outcome, band_rows=64))
    assert [b.last for b in batches] == [False, True]  # the top blob did not wait for the end
    assert [len(b.geometry.geoms) for b in batches] == [1, 1]
    whole = vectorize(outcome).hematopoietic
    streamed = shapely.unary_union([b.geometry for b in batches])
    assert shapely.hausdorff_distance(streamed, whole) <= PX0_PER_PX


def test_open_vertex_cap_cuts_tissue_into_valid_features(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import adapters.writers.vectorize as vec

    monkeypatch.setattr(vec, "MAX_OPEN_VERTICES", 10)
    stats = vec.TissueStats()
    outcome = fake_outcome()
    batches = list(tissue_batches(outcome, stats, band_rows=40))
    assert stats.forced_cuts > 0 and len(batches) > 1
    assert all(b.geometry.is_valid for b in batches)
    area = sum(b.geometry.area for b in batches)
    assert area == pytest.approx(vectorize(fake_outcome()).hematopoietic.area, rel=0.01)


def test_adipocyte_cap_keeps_the_largest(monkeypatch: pytest.MonkeyPatch) -> None:
    import adapters.writers.vectorize as vec

    everything = sorted((a.area_um2 for a in iter_adipocytes(fake_outcome())), reverse=True)
    monkeypatch.setattr(vec, "MAX_ADIPOCYTES", 3)
    stats = vec.AdipocyteStats()
    kept = sorted((a.area_um2 for a in iter_adipocytes(fake_outcome(), stats)), reverse=True)
    assert kept == everything[:3]
    assert stats.dropped == 1 + len(everything) - 3  # the speck and the three smallest


def test_coarse_marrow_region_covers_the_marrow(monkeypatch: pytest.MonkeyPatch) -> None:
    import adapters.writers.vectorize as vec

    exact = marrow_region(fake_outcome())
    monkeypatch.setattr(vec, "REGION_PIXELS", 2_000)
    block = vec.region_block(400, 300)
    assert block > 1
    coarse = marrow_region(fake_outcome())
    assert coarse.is_valid
    assert coarse.buffer(1e-6).contains(exact)
    assert shapely.hausdorff_distance(coarse, exact) <= 1.5 * block * PX0_PER_PX
