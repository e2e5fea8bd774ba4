"""Polygons from the analysis class map, in level-0 pixels, read band by band.

Contours are traced with marching squares at iso-level 0.5 on the binary mask, so every vertex
lies on a pixel edge or pixel centre line of the analysis grid (multiples of 0.5 px). Analysis
pixel (c, r) covers the continuous square [c, c+1) x [r, r+1); a level-0 point is that continuous
point times ``px0_per_px``. The traced outline deviates from the pixel staircase by at most
~0.35 px (corners are cut diagonally); simplification adds at most ``SIMPLIFY_TOLERANCE_PX``.

Seams: tissue (``mask_polygons``) is traced per band with one row of context on each side,
clipped to the band's own rows and unioned, so pieces meet on exact coordinates and merge.
Adipocytes (``adipocyte_polygons``) are connected components; a component that reaches the
bottom of a band is deferred to the next band, which starts at its first row, so a vacuole cut
by a band border is traced once, whole.

Budget: adipocytes smaller than ``MIN_ADIPOCYTE_AREA_UM2`` are not vectorised (they still count
in every area, which come from pixel counts); at most ``MAX_ADIPOCYTES`` (largest kept) and a
tissue outline of at most ``MAX_TISSUE_VERTICES`` vertices (the tolerance doubles until it fits,
and the tolerance used is reported).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import shapely
from scipy import ndimage
from shapely.geometry import MultiPolygon, Polygon, box
from skimage.measure import find_contours

from service.domain.labels import TissueClass
from service.ports.outputs import AnalysisOutcome, LabelRaster

SIMPLIFY_TOLERANCE_PX = 0.5
MIN_ADIPOCYTE_AREA_UM2 = 100.0
MIN_TISSUE_PIECE_PX = 2.0
MAX_ADIPOCYTES = 200_000
MAX_TISSUE_VERTICES = 2_000_000
BAND_PIXELS = 16_000_000
MAX_BAND_PIXELS = 128_000_000

Mask = npt.NDArray[np.bool_]
Predicate = Callable[[npt.NDArray[np.uint8]], Mask]


@dataclass(frozen=True)
class Adipocyte:
    """One vacuole: its outline (level-0 px, holes filled) and its pixel-count area."""

    polygon: Polygon
    area_um2: float


@dataclass(frozen=True)
class Vectors:
    """All polygons of one analysis, in level-0 pixels."""

    marrow: MultiPolygon
    hematopoietic: MultiPolygon
    adipocytes: tuple[Adipocyte, ...]
    tolerance_px: float
    adipocytes_dropped: int
    adipocytes_truncated: int

    @property
    def vertex_count(self) -> int:
        return int(
            shapely.get_num_coordinates(self.hematopoietic)
            + sum(shapely.get_num_coordinates(a.polygon) for a in self.adipocytes)
        )


_cache: dict[tuple[str, int], Vectors] = {}


def vectorize(outcome: AnalysisOutcome) -> Vectors:
    """Marrow region, hematopoietic tissue and adipocytes of an analysis, in level-0 pixels.

    The last result is kept, so the GeoJSON, ANN and SR writers of one analysis trace once.
    """
    key = (outcome.job_key, id(outcome.class_map))
    hit = _cache.get(key)
    if hit is None:
        hit = _vectorize(outcome)
        _cache.clear()
        _cache[key] = hit
    return hit


def _vectorize(outcome: AnalysisOutcome) -> Vectors:
    raster = outcome.class_map
    sx, sy = outcome.px0_per_px
    mpp = outcome.result.mpp_analyzed
    marrow, _ = mask_polygons(raster, _is_marrow)
    hema, tol = mask_polygons(raster, _is_hematopoietic)
    min_px = MIN_ADIPOCYTE_AREA_UM2 / (mpp * mpp) if mpp > 0 else 0.0
    fat, dropped, truncated = adipocyte_polygons(raster, min_px)
    if len(fat) > MAX_ADIPOCYTES:
        fat.sort(key=lambda item: -item[1])
        dropped += len(fat) - MAX_ADIPOCYTES
        fat = fat[:MAX_ADIPOCYTES]
        fat.sort(key=lambda item: (item[0].bounds[1], item[0].bounds[0]))
    um2_per_px = mpp * mpp
    return Vectors(
        marrow=_scaled(marrow, sx, sy),
        hematopoietic=_scaled(hema, sx, sy),
        adipocytes=tuple(
            Adipocyte(_scaled_polygon(p, sx, sy), n * um2_per_px) for p, n in fat
        ),
        tolerance_px=tol,
        adipocytes_dropped=dropped,
        adipocytes_truncated=truncated,
    )


def _is_marrow(rows: npt.NDArray[np.uint8]) -> Mask:
    return np.asarray(rows != TissueClass.OUTSIDE)


def _is_hematopoietic(rows: npt.NDArray[np.uint8]) -> Mask:
    return np.asarray(rows == TissueClass.HEMATOPOIETIC)


def _band_rows(width: int, pixels: int = BAND_PIXELS) -> int:
    return max(64, pixels // max(width, 1))


def mask_polygons(
    raster: LabelRaster, predicate: Predicate, band_rows: int | None = None
) -> tuple[MultiPolygon, float]:
    """Outline (with holes) of ``predicate(class_map)`` in analysis px, and the tolerance used."""
    rows_per_band = band_rows or _band_rows(raster.width)
    pieces: list[Polygon] = []
    for y0 in range(0, raster.height, rows_per_band):
        y1 = min(raster.height, y0 + rows_per_band)
        wy0, wy1 = max(0, y0 - 1), min(raster.height, y1 + 1)
        mask = predicate(raster.read_rows(wy0, wy1))
        if not mask.any():
            continue
        clip = box(0, y0, raster.width, y1)
        for poly in polygons_from_mask(mask, wy0):
            part = poly if (wy0 == y0 and wy1 == y1) else poly.intersection(clip)
            pieces.extend(polygons_of(part))
    if not pieces:
        return MultiPolygon(), SIMPLIFY_TOLERANCE_PX
    merged = shapely.unary_union(pieces)
    return _simplify_within_budget(merged)


def _simplify_within_budget(geom: shapely.Geometry) -> tuple[MultiPolygon, float]:
    tolerance = SIMPLIFY_TOLERANCE_PX
    while True:
        simple = shapely.simplify(geom, tolerance, preserve_topology=True)
        result = _drop_specks(_as_multipolygon(simple))
        if not result.is_valid:  # never expected: fall back to the unsimplified outline
            result = _drop_specks(_as_multipolygon(geom))
        if shapely.get_num_coordinates(result) <= MAX_TISSUE_VERTICES or tolerance >= 64:
            return result, tolerance
        tolerance *= 2


def _drop_specks(multi: MultiPolygon) -> MultiPolygon:
    kept: list[Polygon] = []
    for poly in multi.geoms:
        if poly.area < MIN_TISSUE_PIECE_PX:
            continue
        holes = [r for r in poly.interiors if Polygon(r).area >= MIN_TISSUE_PIECE_PX]
        kept.append(Polygon(poly.exterior, holes))
    return MultiPolygon(kept)


def polygons_from_mask(mask: Mask, y_offset: int = 0, x_offset: int = 0) -> list[Polygon]:
    """Valid polygons (with holes) of a binary mask; coordinates in continuous analysis px.

    Foreground is 8-connected (diagonal neighbours join one polygon).
    """
    padded = np.pad(mask.astype(np.uint8), 1)
    contours = find_contours(  # type: ignore[no-untyped-call]
        padded, 0.5, fully_connected="high", positive_orientation="high"
    )
    outers: list[Polygon] = []
    holes: list[Polygon] = []
    for contour in contours:
        if len(contour) < 4:
            continue
        ring = Polygon(
            np.column_stack([contour[:, 1] - 0.5 + x_offset, contour[:, 0] - 0.5 + y_offset])
        )
        if ring.area == 0:
            continue
        (outers if _winds_around_foreground(ring) else holes).append(ring)
    return _assemble(outers, holes)


def _winds_around_foreground(ring: Polygon) -> bool:
    """With ``positive_orientation="high"`` foreground outlines run clockwise in (x, y-down)."""
    return not ring.exterior.is_ccw


def _assemble(outers: list[Polygon], holes: list[Polygon]) -> list[Polygon]:
    """Assigns each hole ring to the smallest outer ring containing it."""
    if not outers:
        return []
    tree = shapely.STRtree(outers)
    owned: list[list[Polygon]] = [[] for _ in outers]
    areas = np.array([o.area for o in outers])
    for hole in holes:
        candidates = tree.query(hole, predicate="within")
        if len(candidates) == 0:
            continue
        owner = int(candidates[np.argmin(areas[candidates])])
        owned[owner].append(hole)
    pairs = zip(outers, owned, strict=True)
    return [Polygon(outer.exterior, [h.exterior for h in hs]) for outer, hs in pairs]


def adipocyte_polygons(
    raster: LabelRaster, min_area_px: float, band_rows: int | None = None
) -> tuple[list[tuple[Polygon, int]], int, int]:
    """Outline and pixel count of each adipose component (8-connected), seam-free.

    Returns (polygons in analysis px with their pixel counts, specks dropped, components cut
    at a band border because they were taller than the largest allowed band).
    """
    rows_per_band = band_rows or _band_rows(raster.width)
    max_rows = max(rows_per_band, _band_rows(raster.width, MAX_BAND_PIXELS))
    found: list[tuple[Polygon, int]] = []
    dropped = truncated = 0
    y, prev_end = 0, 0
    while y < raster.height:
        end = min(raster.height, y + rows_per_band)
        labels, objects = _components(raster.read_rows(y, end) == TissueClass.ADIPOSE)
        is_last = end == raster.height
        open_ids = set() if is_last else set(np.unique(labels[-1]).tolist()) - {0}
        next_y = end
        if open_ids:
            next_y = y + min(objects[i - 1][0].start for i in open_ids)
            if next_y == y:  # a component spans the whole band
                if end - y < max_rows:
                    rows_per_band *= 2
                    continue
                truncated += len(open_ids)
                open_ids, next_y = set(), end
        counts = np.bincount(labels.ravel())
        for index, sl in enumerate(objects, start=1):
            if sl is None or index in open_ids:
                continue
            if y + sl[0].stop - 1 < prev_end - 1:  # wholly seen (and emitted) by the last band
                continue
            if counts[index] < min_area_px:
                dropped += 1
                continue
            crop = labels[sl] == index
            outline = _outer_outline(crop, y + sl[0].start, sl[1].start)
            if outline is not None:
                found.append((outline, int(counts[index])))
        prev_end, y = end, next_y
        rows_per_band = band_rows or _band_rows(raster.width)
    return found, dropped, truncated


def _components(mask: Mask) -> tuple[npt.NDArray[np.int32], list[tuple[slice, slice]]]:
    labels, _ = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    return labels.astype(np.int32, copy=False), list(ndimage.find_objects(labels))


def _outer_outline(crop: Mask, y0: int, x0: int) -> Polygon | None:
    polys = polygons_from_mask(ndimage.binary_fill_holes(crop), y0, x0)
    if not polys:
        return None
    outline = max(polys, key=lambda p: p.area)
    simple = shapely.simplify(Polygon(outline.exterior), SIMPLIFY_TOLERANCE_PX,
                              preserve_topology=True)
    return simple if isinstance(simple, Polygon) and simple.is_valid else outline


def polygons_of(geom: shapely.Geometry) -> Iterator[Polygon]:
    if isinstance(geom, Polygon):
        if not geom.is_empty:
            yield geom
    elif hasattr(geom, "geoms"):
        for part in geom.geoms:
            yield from polygons_of(part)


def _as_multipolygon(geom: shapely.Geometry) -> MultiPolygon:
    return MultiPolygon(list(polygons_of(geom)))


def _scaled(multi: MultiPolygon, sx: float, sy: float) -> MultiPolygon:
    return MultiPolygon([_scaled_polygon(p, sx, sy) for p in multi.geoms])


def _scaled_polygon(poly: Polygon, sx: float, sy: float) -> Polygon:
    out = shapely.transform(poly, lambda xy: xy * np.array([sx, sy]))
    assert isinstance(out, Polygon)
    return out
