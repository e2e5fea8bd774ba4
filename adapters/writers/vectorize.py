"""Polygons from the analysis class map, in level-0 pixels, streamed band by band.

Contours are traced with marching squares at iso-level 0.5 on the binary mask, so every vertex
lies on a pixel edge or pixel centre line of the analysis grid (multiples of 0.5 px). Analysis
pixel (c, r) covers the continuous square [c, c+1) x [r, r+1); a level-0 point is that continuous
point times ``px0_per_px``. The traced outline deviates from the pixel staircase by at most
~0.35 px (corners are cut diagonally); simplification adds about ``SIMPLIFY_TOLERANCE_PX``.

Memory is bounded independently of slide size: no writer holds the polygons of a whole slide
(``vectorize``, for DICOM ANN, does), only one band and the tissue still open at its border.

- Tissue (``tissue_batches``) is traced per band with one row of context on each side and clipped
  to the band's own rows, then simplified as a coverage together with its complement in the
  band: the band's rectangle and the points where outlines meet it stay exact, so pieces of
  neighbouring bands meet on identical coordinates and union without seams. Only the pieces
  touching the band's lower border stay open and are unioned with the next band's pieces;
  every other connected piece is complete and is yielded at once. If the open pieces exceed
  ``MAX_OPEN_VERTICES`` vertices they are closed at the border (a horizontal seam between two
  features; counted in ``TissueStats.forced_cuts``).
- Adipocytes (``iter_adipocytes``) are connected components; a component that reaches the
  bottom of a band is deferred to the next band, which starts at its first row, so a vacuole cut
  by a band border is traced once, whole, and yielded as soon as it is complete.
- The marrow region (``marrow_region``) is a coarse outline from a block-downsampled map of at
  most ``REGION_PIXELS`` pixels (exact when the class map is that small): a superset of the
  marrow by less than one block.

Budget: adipocytes smaller than ``MIN_ADIPOCYTE_AREA_UM2`` are not vectorised (they still count
in every area, which come from pixel counts); at most ``MAX_ADIPOCYTES`` (largest kept, chosen
by a counting pass) and each yielded tissue batch has at most ``MAX_TISSUE_VERTICES`` vertices
(if over, the tolerance doubles until it fits, and the largest tolerance used is reported).
"""

from __future__ import annotations

import math
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
MAX_OPEN_VERTICES = 8_000_000
REGION_PIXELS = 4_000_000
BAND_PIXELS = 4_000_000
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
    """All polygons of one analysis, in level-0 pixels (held in memory: DICOM ANN only)."""

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


@dataclass
class TissueStats:
    """Filled in while ``tissue_batches`` runs."""

    tolerance_px: float = SIMPLIFY_TOLERANCE_PX
    forced_cuts: int = 0


@dataclass
class AdipocyteStats:
    """Filled in while ``iter_adipocytes`` runs."""

    dropped: int = 0
    truncated: int = 0


@dataclass(frozen=True)
class TissueBatch:
    """Complete tissue pieces (level-0 px) yielded together; ``last`` marks the final batch."""

    geometry: MultiPolygon
    last: bool


def vectorize(outcome: AnalysisOutcome) -> Vectors:
    """Marrow region, hematopoietic tissue and adipocytes of an analysis, all in memory."""
    tissue = TissueStats()
    parts = [p for b in tissue_batches(outcome, tissue) for p in b.geometry.geoms]
    fat = AdipocyteStats()
    cells = tuple(iter_adipocytes(outcome, fat))
    return Vectors(
        marrow=marrow_region(outcome),
        hematopoietic=MultiPolygon(parts),
        adipocytes=cells,
        tolerance_px=tissue.tolerance_px,
        adipocytes_dropped=fat.dropped,
        adipocytes_truncated=fat.truncated,
    )


def _is_marrow(rows: npt.NDArray[np.uint8]) -> Mask:
    return np.asarray(rows != TissueClass.OUTSIDE)


def _is_hematopoietic(rows: npt.NDArray[np.uint8]) -> Mask:
    return np.asarray(rows == TissueClass.HEMATOPOIETIC)


def _band_rows(width: int, pixels: int | None = None) -> int:
    return max(64, (pixels or BAND_PIXELS) // max(width, 1))


# --- marrow region -------------------------------------------------------------------------


def marrow_region(outcome: AnalysisOutcome) -> MultiPolygon:
    """Outline of the marrow (level-0 px) from a block-downsampled map; empty without marrow."""
    raster = outcome.class_map
    block = region_block(raster.width, raster.height)
    coarse = _coarse_mask(raster, block)
    if not coarse.any():
        return MultiPolygon()
    outline = shapely.unary_union(polygons_from_mask(coarse))
    scaled = shapely.transform(outline, lambda xy: xy * block)
    clipped = shapely.intersection(scaled, box(0, 0, raster.width, raster.height))
    simple, _ = _simplify_within_budget(clipped)
    sx, sy = outcome.px0_per_px
    return _scaled(simple, sx, sy)


def region_block(width: int, height: int) -> int:
    """Side (analysis px) of the blocks of the coarse marrow map (1 for small maps)."""
    return max(1, math.ceil(math.sqrt(width * height / REGION_PIXELS)))


def _coarse_mask(raster: LabelRaster, block: int) -> Mask:
    cols = -(-raster.width // block)
    rows_per_band = max(1, _band_rows(raster.width) // block) * block
    out: list[Mask] = []
    for y0 in range(0, raster.height, rows_per_band):
        y1 = min(raster.height, y0 + rows_per_band)
        mask = _is_marrow(raster.read_rows(y0, y1))
        pad_y, pad_x = -(y1 - y0) % block, cols * block - raster.width
        if pad_y or pad_x:
            mask = np.pad(mask, ((0, pad_y), (0, pad_x)))
        blocks = mask.reshape(mask.shape[0] // block, block, cols, block)
        out.append(np.asarray(blocks.any(axis=(1, 3)), dtype=bool))
    return np.concatenate(out) if out else np.zeros((0, cols), bool)


# --- tissue ---------------------------------------------------------------------------------


def tissue_batches(
    outcome: AnalysisOutcome, stats: TissueStats | None = None, band_rows: int | None = None
) -> Iterator[TissueBatch]:
    """Hematopoietic tissue (polygons with holes, level-0 px) in batches of complete pieces."""
    sx, sy = outcome.px0_per_px
    for multi, last in _mask_batches(
        outcome.class_map, _is_hematopoietic, stats or TissueStats(), band_rows
    ):
        yield TissueBatch(_scaled(multi, sx, sy), last)


def mask_polygons(
    raster: LabelRaster, predicate: Predicate, band_rows: int | None = None
) -> tuple[MultiPolygon, float]:
    """Outline (with holes) of ``predicate(class_map)`` in analysis px, and the tolerance used."""
    stats = TissueStats()
    parts = [p for multi, _ in _mask_batches(raster, predicate, stats, band_rows)
             for p in multi.geoms]
    return MultiPolygon(parts), stats.tolerance_px


@dataclass
class _Open:
    """A piece touching the band border: its outer ring as a polygon and its holes as arrays.

    Holes of a clipped piece never reach the border, so they are complete; they are kept as
    compact coordinate arrays (16 bytes a vertex) and only the outer ring takes part in unions.
    """

    shell: Polygon
    holes: list[npt.NDArray[np.float64]]

    @classmethod
    def of(cls, poly: Polygon, holes: list[npt.NDArray[np.float64]]) -> _Open:
        rings = [np.asarray(r.coords) for r in poly.interiors]
        return cls(Polygon(poly.exterior), holes + rings)

    def vertices(self) -> int:
        return int(shapely.get_num_coordinates(self.shell)) + sum(len(h) for h in self.holes)

    def polygon(self) -> Polygon:
        return Polygon(self.shell.exterior, self.holes) if self.holes else self.shell


def _mask_batches(
    raster: LabelRaster, predicate: Predicate, stats: TissueStats, band_rows: int | None
) -> Iterator[tuple[MultiPolygon, bool]]:
    """Complete pieces (analysis px, simplified) per band; only border pieces are carried."""
    rows_per_band = band_rows or _band_rows(raster.width)
    open_pieces: list[_Open] = []
    pending: MultiPolygon | None = None
    for y0 in range(0, raster.height, rows_per_band):
        y1 = min(raster.height, y0 + rows_per_band)
        last = y1 == raster.height
        pieces = _simplified_band(
            _band_pieces(raster, predicate, y0, y1), box(0, y0, raster.width, y1))
        top = [p for p in pieces if p.bounds[1] <= y0]
        inner = [_Open.of(p, []) for p in pieces if p.bounds[1] > y0]
        joined = _joined(open_pieces, top) if top else open_pieces
        done: list[Polygon] = []
        open_pieces = []
        for piece in joined + inner:
            if not last and piece.shell.bounds[3] >= y1:
                open_pieces.append(piece)
            else:
                done.append(piece.polygon())
        if open_pieces and sum(p.vertices() for p in open_pieces) > MAX_OPEN_VERTICES:
            stats.forced_cuts += 1
            done.extend(p.polygon() for p in open_pieces)
            open_pieces = []
        if done:
            simple, tolerance = _within_budget(MultiPolygon(done))
            stats.tolerance_px = max(stats.tolerance_px, tolerance)
            if not simple.is_empty:
                if pending is not None:
                    yield pending, False
                pending = simple
    if pending is not None:
        yield pending, True


def _joined(open_pieces: list[_Open], top: list[Polygon]) -> list[_Open]:
    """Open pieces unioned with the new band's pieces at its top; stashed holes follow along."""
    if not open_pieces:
        return [_Open.of(p, []) for p in top]
    merged = list(polygons_of(shapely.unary_union([p.shell for p in open_pieces] + top)))
    tree = shapely.STRtree(merged)
    stash: list[list[npt.NDArray[np.float64]]] = [[] for _ in merged]
    for piece in open_pieces:
        if piece.holes:
            point = piece.shell.representative_point()
            hits = tree.query(point, predicate="intersects")
            stash[int(hits[0])].extend(piece.holes)
    return [_Open.of(poly, holes) for poly, holes in zip(merged, stash, strict=True)]


def _simplified_band(pieces: list[Polygon], frame: Polygon) -> list[Polygon]:
    """The band's pieces simplified as a coverage with their complement in ``frame``.

    The band's rectangle is the coverage's outer boundary and stays exact, and vertices where
    an outline meets it are coverage nodes, so they are kept: pieces of neighbouring bands
    still meet on identical coordinates and union seam-free.
    """
    if not pieces:
        return pieces
    tissue = list(polygons_of(shapely.unary_union(pieces)))
    rest = list(polygons_of(shapely.difference(frame, MultiPolygon(tissue))))
    coverage = np.array(tissue + rest, dtype=object)
    simple = shapely.coverage_simplify(coverage, SIMPLIFY_TOLERANCE_PX, simplify_boundary=False)
    out = [p for g in simple[: len(tissue)] for p in polygons_of(g)]
    if not all(p.is_valid for p in out):  # never expected: keep the traced outline
        return tissue
    return out


def _within_budget(multi: MultiPolygon) -> tuple[MultiPolygon, float]:
    """Specks dropped; simplified further only if over ``MAX_TISSUE_VERTICES``."""
    kept = _drop_specks(multi)
    if shapely.get_num_coordinates(kept) <= MAX_TISSUE_VERTICES:
        return kept, SIMPLIFY_TOLERANCE_PX
    return _simplify_within_budget(kept)


def _band_pieces(
    raster: LabelRaster, predicate: Predicate, y0: int, y1: int
) -> list[Polygon]:
    wy0, wy1 = max(0, y0 - 1), min(raster.height, y1 + 1)
    mask = predicate(raster.read_rows(wy0, wy1))
    if not mask.any():
        return []
    clip = box(0, y0, raster.width, y1)
    pieces: list[Polygon] = []
    for poly in polygons_from_mask(mask, wy0):
        part = poly if (wy0 == y0 and wy1 == y1) else poly.intersection(clip)
        pieces.extend(polygons_of(part))
    return pieces


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
    del padded
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


# --- adipocytes -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Component:
    labels: npt.NDArray[np.int32]
    index: int
    rows: slice
    cols: slice
    y0: int
    count: int


def iter_adipocytes(
    outcome: AnalysisOutcome, stats: AdipocyteStats | None = None
) -> Iterator[Adipocyte]:
    """Each vacuole (level-0 px) as soon as it is complete, top to bottom, within the cap.

    A first pass counts component sizes only, so that when there are more than
    ``MAX_ADIPOCYTES`` the largest are kept without holding any polygon.
    """
    stats = stats or AdipocyteStats()
    raster = outcome.class_map
    mpp = outcome.result.mpp_analyzed
    min_px = MIN_ADIPOCYTE_AREA_UM2 / (mpp * mpp) if mpp > 0 else 0.0
    sizes = np.array([c.count for c in _components_of(raster, None, AdipocyteStats())
                      if c.count >= min_px], dtype=np.int64)
    floor, quota_at_floor = min_px, len(sizes)
    if len(sizes) > MAX_ADIPOCYTES:
        floor = float(np.sort(sizes)[-MAX_ADIPOCYTES])
        quota_at_floor = MAX_ADIPOCYTES - int(np.count_nonzero(sizes > floor))
        stats.dropped += len(sizes) - MAX_ADIPOCYTES
    sx, sy = outcome.px0_per_px
    um2_per_px = mpp * mpp
    for polygon, count in _adipocyte_outlines(raster, min_px, None, stats):
        if count < floor:
            continue
        if count == floor and len(sizes) > MAX_ADIPOCYTES:
            if quota_at_floor <= 0:
                continue
            quota_at_floor -= 1
        yield Adipocyte(_scaled_polygon(polygon, sx, sy), count * um2_per_px)


def adipocyte_polygons(
    raster: LabelRaster, min_area_px: float, band_rows: int | None = None
) -> tuple[list[tuple[Polygon, int]], int, int]:
    """Outline and pixel count of each adipose component (8-connected), seam-free.

    Returns (polygons in analysis px with their pixel counts, specks dropped, components cut
    at a band border because they were taller than the largest allowed band).
    """
    stats = AdipocyteStats()
    found = list(_adipocyte_outlines(raster, min_area_px, band_rows, stats))
    return found, stats.dropped, stats.truncated


def _adipocyte_outlines(
    raster: LabelRaster, min_area_px: float, band_rows: int | None, stats: AdipocyteStats
) -> Iterator[tuple[Polygon, int]]:
    for comp in _components_of(raster, band_rows, stats):
        if comp.count < min_area_px:
            stats.dropped += 1
            continue
        crop = comp.labels[comp.rows, comp.cols] == comp.index
        outline = _outer_outline(crop, comp.y0 + comp.rows.start, comp.cols.start)
        if outline is not None:
            yield outline, comp.count


def _components_of(
    raster: LabelRaster, band_rows: int | None, stats: AdipocyteStats
) -> Iterator[_Component]:
    """Complete adipose components, each once; a component open at a band's bottom is deferred."""
    rows_per_band = band_rows or _band_rows(raster.width)
    max_rows = max(rows_per_band, _band_rows(raster.width, MAX_BAND_PIXELS))
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
                stats.truncated += len(open_ids)
                open_ids, next_y = set(), end
        counts = np.bincount(labels.ravel())
        for index, sl in enumerate(objects, start=1):
            if sl is None or index in open_ids:
                continue
            if y + sl[0].stop - 1 < prev_end - 1:  # wholly seen (and emitted) by the last band
                continue
            yield _Component(labels, index, sl[0], sl[1], y, int(counts[index]))
        prev_end, y = end, next_y
        rows_per_band = band_rows or _band_rows(raster.width)


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


# --- helpers --------------------------------------------------------------------------------


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
