"""Vectorisation: level-0 mapping, seam-free bands, validity and the vertex budget."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from shapely.geometry import Polygon

from adapters.writers.holes import hole_free_pieces
from adapters.writers.vectorize import (
    adipocyte_polygons,
    mask_polygons,
    polygons_from_mask,
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
