"""GeoJSON for QuPath: valid geometry, QuPath properties, numbers from the result."""

from __future__ import annotations

import gzip
import json
import uuid
from pathlib import Path

import pytest
from shapely.geometry import shape

from adapters.writers.geojson import GeoJsonWriter
from adapters.writers.registry import build_writers
from service.domain.errors import InvalidInput
from tests.helpers_outcome import fake_outcome, without_dicom


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("geojson")
    GeoJsonWriter().write(fake_outcome(), out)
    return json.loads((out / "annotations.geojson").read_text())


def test_every_geometry_is_valid(collection: dict) -> None:
    assert collection["type"] == "FeatureCollection"
    for feature in collection["features"]:
        assert shape(feature["geometry"]).is_valid


def test_qupath_properties(collection: dict) -> None:
    kinds = [f["properties"]["objectType"] for f in collection["features"]]
    assert kinds[:2] == ["annotation", "annotation"]
    assert kinds[2:] == ["detection"] * 6
    for feature in collection["features"]:
        uuid.UUID(feature["id"])
        props = feature["properties"]
        assert set(props["classification"]) == {"name", "color"}
        assert all(isinstance(v, float) for v in props["measurements"].values())


def test_measurements_agree_with_result(collection: dict) -> None:
    result = fake_outcome().result
    region = collection["features"][0]["properties"]["measurements"]
    assert region["Cellularity %"] == result.cellularity_pct
    assert region["Marrow area mm^2"] == result.marrow_area_mm2
    assert region["Hematopoietic area mm^2"] == result.hematopoietic_area_mm2
    assert region["Adipose area mm^2"] == result.adipose_area_mm2
    tissue = collection["features"][1]
    assert tissue["properties"]["classification"]["name"] == "Hematopoietic"
    assert len(tissue["geometry"]["coordinates"]) == 7  # outer ring + 6 adipocyte holes


def test_gzip_twin_and_rerun_are_identical(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    GeoJsonWriter().write(fake_outcome(), first)
    GeoJsonWriter().write(fake_outcome(), second)
    plain = (first / "annotations.geojson").read_bytes()
    assert gzip.decompress((first / "annotations.geojson.gz").read_bytes()) == plain
    assert (second / "annotations.geojson").read_bytes() == plain
    assert (second / "annotations.geojson.gz").read_bytes() == (
        first / "annotations.geojson.gz").read_bytes()


def test_geojson_needs_no_dicom_metadata(tmp_path: Path) -> None:
    written = GeoJsonWriter().write(without_dicom(fake_outcome()), tmp_path)
    assert [p.name for p in written] == ["annotations.geojson", "annotations.geojson.gz"]


def test_registry_orders_writers_and_rejects_unknown_names() -> None:
    writers = build_writers(("ann", "geojson", "sr"))
    assert [w.name for w in writers] == ["geojson", "sr", "ann"]
    with pytest.raises(InvalidInput, match="pdf"):
        build_writers(("geojson", "pdf"))


def test_non_integer_scale_keeps_geometry_valid(tmp_path: Path) -> None:
    from dataclasses import replace

    outcome = replace(fake_outcome(job_key="scale"), px0_per_px=(2.7, 2.7))
    GeoJsonWriter().write(outcome, tmp_path)
    features = json.loads((tmp_path / "annotations.geojson").read_text())["features"]
    assert all(shape(f["geometry"]).is_valid for f in features)
    minx, miny, _, _ = shape(features[0]["geometry"]).bounds
    assert minx == pytest.approx(round(minx / 2.7) * 2.7, abs=1e-3)  # on a pixel edge


def test_streamed_tissue_pieces_are_separate_valid_annotations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np

    import adapters.writers.vectorize as vec
    from service.domain.labels import TissueClass

    monkeypatch.setattr(vec, "BAND_PIXELS", 1)  # 64-row bands
    cmap = np.zeros((300, 200), np.uint8)
    cmap[10:60, 20:180] = TissueClass.HEMATOPOIETIC
    cmap[20:40, 40:60] = TissueClass.ADIPOSE
    cmap[150:290, 30:170] = TissueClass.HEMATOPOIETIC
    cmap[200:230, 90:120] = TissueClass.ADIPOSE
    GeoJsonWriter().write(fake_outcome(cmap, job_key="two"), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "annotations.geojson", "annotations.geojson.gz"]  # no part file left behind
    features = json.loads((tmp_path / "annotations.geojson").read_text())["features"]
    names = [f["properties"]["classification"]["name"] for f in features]
    assert names == ["Marrow", "Hematopoietic", "Hematopoietic", "Adipocyte", "Adipocyte"]
    assert len({f["id"] for f in features}) == len(features)
    assert all(shape(f["geometry"]).is_valid for f in features)
    assert features[0]["properties"]["measurements"]["Adipocytes"] == 2.0
    tissue = [f for f in features if f["properties"]["classification"]["name"] == "Hematopoietic"]
    assert all(f["properties"]["measurements"] == {} for f in tissue)  # area is on the region
