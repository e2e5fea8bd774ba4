"""QuPath-compatible GeoJSON: the analysed marrow region, hematopoietic tissue, adipocytes.

Follows QuPath's GeoJSON (v0.4+): a FeatureCollection of Features with uuid ``id``, level-0
pixel coordinates (origin at the top-left corner of the full-resolution image) and
``properties.objectType`` (``annotation`` or ``detection``), ``classification``
(``{"name", "color": [r, g, b]}``), ``isLocked`` and ``measurements`` (a name -> number map).

Streamed: features are written to the file as the vectoriser yields them, so memory does not
grow with the slide. Adipocytes go to a temporary part file first (the marrow feature, written
first, carries their count), then are appended; the ``.gz`` twin is compressed from the file.
"""

from __future__ import annotations

import gzip
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon

from adapters.writers.identity import job_uuid
from adapters.writers.vectorize import (
    Adipocyte,
    AdipocyteStats,
    TissueStats,
    iter_adipocytes,
    marrow_region,
    tissue_batches,
)
from service.ports.outputs import AnalysisOutcome

MARROW_COLOR = (255, 200, 0)
HEMATOPOIETIC_COLOR = (160, 32, 240)
ADIPOCYTE_COLOR = (0, 200, 255)
COORD_DECIMALS = 3
_COPY_CHUNK = 1 << 20
_CHUNK_VERTICES = 65_536


class GeoJsonWriter:
    """Writes ``annotations.geojson`` and its gzip twin ``annotations.geojson.gz``."""

    name = "geojson"

    def write(self, outcome: AnalysisOutcome, out_dir: Path) -> list[Path]:
        plain = out_dir / "annotations.geojson"
        packed = out_dir / "annotations.geojson.gz"
        part = out_dir / ".annotations.adipocytes.part"
        try:
            with part.open("w", encoding="utf-8") as cells:
                count = _write_adipocytes(outcome, cells)
            with plain.open("w", encoding="utf-8") as out:
                write_feature_collection(outcome, out, count, part)
        finally:
            part.unlink(missing_ok=True)
        with plain.open("rb") as src, packed.open("wb") as raw, gzip.GzipFile(
            filename="annotations.geojson", mode="wb", fileobj=raw, mtime=0
        ) as gz:
            shutil.copyfileobj(src, gz, _COPY_CHUNK)
        return [plain, packed]


def write_feature_collection(
    outcome: AnalysisOutcome, out: IO[str], adipocyte_count: int, adipocytes: Path
) -> None:
    """Marrow region, hematopoietic annotations, then the adipocyte features in ``adipocytes``."""
    res = outcome.result
    key = outcome.job_key
    out.write('{"type":"FeatureCollection","features":[')
    first = True
    marrow = marrow_region(outcome)
    if not marrow.is_empty:
        out.write(feature_json(
            str(job_uuid(key, "geojson/marrow")), marrow, "annotation",
            "Analysed marrow", "Marrow", MARROW_COLOR,
            _numbers({
                "Cellularity %": res.cellularity_pct,
                "Adipocyte ratio %": res.adipocyte_ratio_pct,
                "Cell coverage %": res.cell_coverage_pct,
                "Marrow area mm^2": res.marrow_area_mm2,
                "Hematopoietic area mm^2": res.hematopoietic_area_mm2,
                "Adipose area mm^2": res.adipose_area_mm2,
                "Fat threshold": res.fat_threshold,
                "Analysis um per px": res.mpp_analyzed,
                "Adipocytes": adipocyte_count,
            }),
        ))
        first = False
    for index, batch in enumerate(tissue_batches(outcome, TissueStats())):
        purpose = "geojson/hematopoietic" + (f"/{index}" if index else "")
        only = index == 0 and batch.last  # the whole tissue in one feature
        if not first:
            out.write(",")
        out.writelines(feature_parts(
            str(job_uuid(key, purpose)), batch.geometry, "annotation",
            "Hematopoietic tissue", "Hematopoietic", HEMATOPOIETIC_COLOR,
            {"Area mm^2": res.hematopoietic_area_mm2} if only else {},
        ))
        first = False
    with adipocytes.open("r", encoding="utf-8") as cells:
        head = cells.read(1)
        if head:
            out.write("" if first else ",")
            if head != ",":
                out.write(head)
            shutil.copyfileobj(cells, out, _COPY_CHUNK)
    out.write("]}")


def _write_adipocytes(outcome: AnalysisOutcome, out: IO[str]) -> int:
    """Each adipocyte as a comma-prefixed ``detection`` feature; returns how many."""
    count = 0
    for count, cell in enumerate(iter_adipocytes(outcome, AdipocyteStats()), start=1):
        out.write(",")
        out.write(_adipocyte_json(outcome.job_key, count - 1, cell))
    return count


def _adipocyte_json(key: str, index: int, cell: Adipocyte) -> str:
    return feature_json(
        str(job_uuid(key, f"geojson/adipocyte/{index}")), cell.polygon, "detection",
        None, "Adipocyte", ADIPOCYTE_COLOR, {"Area um^2": round(cell.area_um2, 3)},
    )


def feature_json(
    uid: str,
    geometry: Polygon | MultiPolygon,
    object_type: str,
    name: str | None,
    class_name: str,
    color: tuple[int, int, int],
    measurements: dict[str, float],
) -> str:
    """One Feature as compact JSON; coordinates rounded to ``COORD_DECIMALS``."""
    return "".join(feature_parts(uid, geometry, object_type, name, class_name, color,
                                 measurements))


def feature_parts(
    uid: str,
    geometry: Polygon | MultiPolygon,
    object_type: str,
    name: str | None,
    class_name: str,
    color: tuple[int, int, int],
    measurements: dict[str, float],
) -> Iterator[str]:
    """``feature_json`` in pieces, so a huge outline is never one string or one JSON tree."""
    if isinstance(geometry, MultiPolygon) and len(geometry.geoms) == 1:
        geometry = geometry.geoms[0]
    properties: dict[str, Any] = {"objectType": object_type}
    if name is not None:
        properties["name"] = name
    properties["classification"] = {"name": class_name, "color": list(color)}
    properties["isLocked"] = object_type == "annotation"
    properties["measurements"] = measurements
    yield f'{{"type":"Feature","id":{json.dumps(uid)},"geometry":'
    if isinstance(geometry, Polygon):
        yield '{"type":"Polygon","coordinates":'
        yield from _polygon_parts(geometry)
    else:
        yield '{"type":"MultiPolygon","coordinates":['
        for index, part in enumerate(geometry.geoms):
            if index:
                yield ","
            yield from _polygon_parts(part)
        yield "]"
    yield "}"
    yield f',"properties":{json.dumps(properties, separators=(",", ":"), allow_nan=False)}}}'


def _polygon_parts(poly: Polygon) -> Iterator[str]:
    yield "["
    for index, ring in enumerate([poly.exterior, *poly.interiors]):
        if index:
            yield ","
        yield "["
        coords = np.round(shapely.get_coordinates(ring), COORD_DECIMALS) + 0.0
        for start in range(0, len(coords), _CHUNK_VERTICES):
            if start:
                yield ","
            chunk = coords[start:start + _CHUNK_VERTICES].tolist()
            yield json.dumps(chunk, separators=(",", ":"), allow_nan=False)[1:-1]
        yield "]"
    yield "]"


def _numbers(values: dict[str, float | int | None]) -> dict[str, float]:
    """Measurements QuPath can read: numbers only (a missing percentage is left out)."""
    return {k: float(v) for k, v in values.items() if v is not None}
