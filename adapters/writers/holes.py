"""Splits polygons with holes into hole-free pieces (DICOM ANN polygons cannot have holes)."""

from __future__ import annotations

from shapely.geometry import Polygon, box

from adapters.writers.vectorize import polygons_of


def hole_free_pieces(poly: Polygon) -> list[Polygon]:
    """Pieces that tile ``poly`` exactly: cut vertically through a middle hole, recurse.

    Each cut runs through the interior of one hole, turning it into notches of the two halves,
    so every step removes at least one hole; balanced cuts keep the depth ~log2(holes).
    """
    if not poly.interiors:
        return [poly]
    xs = sorted(Polygon(ring).representative_point().x for ring in poly.interiors)
    cut = xs[len(xs) // 2]
    minx, miny, maxx, maxy = poly.bounds
    pieces: list[Polygon] = []
    for half in (box(minx - 1, miny - 1, cut, maxy + 1), box(cut, miny - 1, maxx + 1, maxy + 1)):
        for part in polygons_of(poly.intersection(half)):
            if part.area > 0:
                pieces.extend(hole_free_pieces(part))
    return pieces
