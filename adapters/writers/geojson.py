"""QuPath-compatible GeoJSON: the analysed marrow region, hematopoietic tissue, adipocytes.

Follows QuPath's GeoJSON (v0.4+): a FeatureCollection of Features with uuid ``id``, level-0
pixel coordinates (origin at the top-left corner of the full-resolution image) and
``properties.objectType`` (``annotation`` or ``detection``), ``classification``
(``{"name", "color": [r, g, b]}``), ``isLocked`` and ``measurements`` (a name -> number map).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import shapely
from shapely.geometry import MultiPolygon, Polygon, mapping

from adapters.writers.identity import job_uuid
from adapters.writers.vectorize import Vectors, vectorize
from service.ports.outputs import AnalysisOutcome

MARROW_COLOR = (255, 200, 0)
HEMATOPOIETIC_COLOR = (160, 32, 240)
ADIPOCYTE_COLOR = (0, 200, 255)
COORD_DECIMALS = 3


class GeoJsonWriter:
    """Writes ``annotations.geojson`` and its gzip twin ``annotations.geojson.gz``."""

    name = "geojson"

    def write(self, outcome: AnalysisOutcome, out_dir: Path) -> list[Path]:
        collection = feature_collection(outcome, vectorize(outcome))
        text = json.dumps(collection, separators=(",", ":"), allow_nan=False)
        plain = out_dir / "annotations.geojson"
        packed = out_dir / "annotations.geojson.gz"
        plain.write_text(text, encoding="utf-8")
        with packed.open("wb") as raw, gzip.GzipFile(
            filename="annotations.geojson", mode="wb", fileobj=raw, mtime=0
        ) as gz:
            gz.write(text.encode("utf-8"))
        return [plain, packed]


def feature_collection(outcome: AnalysisOutcome, vectors: Vectors) -> dict[str, Any]:
    """The FeatureCollection: marrow region and hematopoietic annotations, adipocyte detections."""
    res = outcome.result
    key = outcome.job_key
    features: list[dict[str, Any]] = []
    if not vectors.marrow.is_empty:
        features.append(_feature(
            str(job_uuid(key, "geojson/marrow")), vectors.marrow, "annotation",
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
                "Adipocytes": len(vectors.adipocytes),
            }),
        ))
    if not vectors.hematopoietic.is_empty:
        features.append(_feature(
            str(job_uuid(key, "geojson/hematopoietic")), vectors.hematopoietic, "annotation",
            "Hematopoietic tissue", "Hematopoietic", HEMATOPOIETIC_COLOR,
            {"Area mm^2": res.hematopoietic_area_mm2},
        ))
    for index, cell in enumerate(vectors.adipocytes):
        features.append(_feature(
            str(job_uuid(key, f"geojson/adipocyte/{index}")), cell.polygon, "detection",
            None, "Adipocyte", ADIPOCYTE_COLOR, {"Area um^2": round(cell.area_um2, 3)},
        ))
    return {"type": "FeatureCollection", "features": features}


def _feature(
    uid: str,
    geometry: Polygon | MultiPolygon,
    object_type: str,
    name: str | None,
    class_name: str,
    color: tuple[int, int, int],
    measurements: dict[str, float],
) -> dict[str, Any]:
    if isinstance(geometry, MultiPolygon) and len(geometry.geoms) == 1:
        geometry = geometry.geoms[0]
    properties: dict[str, Any] = {"objectType": object_type}
    if name is not None:
        properties["name"] = name
    properties["classification"] = {"name": class_name, "color": list(color)}
    properties["isLocked"] = object_type == "annotation"
    properties["measurements"] = measurements
    rounded = shapely.set_precision(geometry, 10.0**-COORD_DECIMALS, mode="pointwise")
    return {"type": "Feature", "id": uid, "geometry": mapping(rounded),
            "properties": properties}


def _numbers(values: dict[str, float | int | None]) -> dict[str, float]:
    """Measurements QuPath can read: numbers only (a missing percentage is left out)."""
    return {k: float(v) for k, v in values.items() if v is not None}
