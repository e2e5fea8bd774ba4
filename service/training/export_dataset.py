"""Annotated slides → an nnU-Net v2 raw dataset of tiles at a chosen µm/px.

Labels come from QuPath GeoJSON annotations (polygons in level-0 pixels; a class name matching
fat/adipo is label 2 with ``with_fat``, every other annotation is marrow space, label 1) or from
mask images covering the whole slide (0 background, 1 marrow, 2 fat; 255 counts as 1).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from service.domain.errors import InvalidInput
from service.ports.slides import SlideSource
from service.training.nnunet_raw import RawDataset

FAT_CLASS = re.compile(r"fat|adipo", re.IGNORECASE)
IGNORED_CLASS = re.compile(r"^(ignore|exclude|background|region\*?)$", re.IGNORECASE)
Polygon = list[list[tuple[float, float]]]  # exterior ring then holes, level-0 px


@dataclass(frozen=True)
class ExportOptions:
    out: Path
    mpp: float = 2.0
    tile_px: int = 512
    channels: Literal["rgb", "grey"] = "rgb"
    with_fat: bool = False
    all_tiles: bool = False
    mpp_override: float | None = None


@dataclass(frozen=True)
class ExportSummary:
    dataset_json: Path
    cases: int
    slides: int


def read_qupath_geojson(path: Path, with_fat: bool) -> list[tuple[int, Polygon]]:
    """(label, polygon) pairs from a QuPath GeoJSON export (FeatureCollection or feature list)."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"cannot read annotations {path}: {exc}") from exc
    features = doc.get("features", []) if isinstance(doc, dict) else doc
    if isinstance(doc, dict) and doc.get("type") == "Feature":
        features = [doc]
    out: list[tuple[int, Polygon]] = []
    for feature in features:
        name = _class_name(feature.get("properties") or {})
        if name and IGNORED_CLASS.match(name):
            continue
        label = 2 if with_fat and name and FAT_CLASS.search(name) else 1
        geometry = feature.get("geometry") or {}
        kind, coords = geometry.get("type"), geometry.get("coordinates", [])
        polygons = [coords] if kind == "Polygon" else coords if kind == "MultiPolygon" else []
        for poly in polygons:
            out.append((label, [[(float(x), float(y)) for x, y, *_ in ring] for ring in poly]))
    if not out:
        raise InvalidInput(f"{path}: no polygon annotations found")
    return out


def _class_name(props: dict[str, Any]) -> str:
    cls = props.get("classification")
    if isinstance(cls, dict):
        return str(cls.get("name", ""))
    return str(props.get("name", "") or "")


def rasterise(
    polygons: Sequence[tuple[int, Polygon]], scale: tuple[float, float], size: tuple[int, int]
) -> npt.NDArray[np.uint8]:
    """Label raster (height, width) at analysis resolution; fat drawn over marrow."""
    from PIL import Image, ImageDraw

    width, height = size
    image = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(image)
    for label in (1, 2):
        for lab, rings in polygons:
            if lab != label:
                continue
            for i, ring in enumerate(rings):
                pts = [(x / scale[0], y / scale[1]) for x, y in ring]
                if len(pts) >= 3:
                    draw.polygon(pts, fill=label if i == 0 else 0)
    return np.asarray(image, dtype=np.uint8)


def read_mask(path: Path, size: tuple[int, int]) -> npt.NDArray[np.uint8]:
    """A whole-slide mask image resized (nearest) to the analysis grid; 255 → 1."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            mask = np.asarray(im.convert("L").resize(size, Image.Resampling.NEAREST))
    except OSError as exc:
        raise InvalidInput(f"cannot read mask {path}: {exc}") from exc
    out = mask.copy()
    out[mask == 255] = 1
    if out.max() > 2:
        raise InvalidInput(f"mask {path}: values must be 0, 1, 2 (or 255 for marrow)")
    return out


def tile_origins(length: int, tile: int) -> list[int]:
    """Non-overlapping tile starts; the last one shifted back to stay inside (as the seed)."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile + 1, tile))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return starts


def export_dataset(
    slides: Sequence[Path],
    labels_for: Callable[[int, tuple[float, float], tuple[int, int]], npt.NDArray[np.uint8]],
    options: ExportOptions,
    open_slide: Callable[[str, float | None], SlideSource],
) -> ExportSummary:
    """Writes imagesTr/, labelsTr/, dataset.json; ``labels_for(i, scale, size)`` labels slide i."""
    from service.pipeline.reading import analysis_grid, read_analysis_region

    ds = RawDataset.create(options.out, options.channels, options.with_fat, options.mpp)
    cases = 0
    for i, path in enumerate(slides):
        slide = open_slide(str(path), options.mpp_override)
        try:
            grid = analysis_grid(slide, options.mpp)
            labels = labels_for(i, grid.scale, (grid.width, grid.height))
            for x, y in _tiles(labels, options):
                w, h = min(options.tile_px, grid.width - x), min(options.tile_px, grid.height - y)
                rgb = read_analysis_region(slide, grid, x, y, w, h)
                rgb, lab = _pad(rgb, labels[y : y + h, x : x + w], options.tile_px)
                ds.add(f"s{i:03d}-{_case_stem(path)}_{y:06d}_{x:06d}", rgb, lab)
                cases += 1
        finally:
            slide.close()
    description = f"Exported by marrowscope export-dataset at {options.mpp} µm/px"
    return ExportSummary(ds.finish(description), cases, len(slides))


def _tiles(labels: npt.NDArray[np.uint8], options: ExportOptions) -> Iterator[tuple[int, int]]:
    height, width = labels.shape
    for y in tile_origins(height, options.tile_px):
        for x in tile_origins(width, options.tile_px):
            window = labels[y : y + options.tile_px, x : x + options.tile_px]
            if options.all_tiles or window.any():
                yield x, y


def _pad(
    rgb: npt.NDArray[np.uint8], label: npt.NDArray[np.uint8], tile: int
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """Slides smaller than a tile: pad with glass (white) and background."""
    h, w = label.shape
    if h >= tile and w >= tile:
        return rgb, label
    th, tw = max(h, tile), max(w, tile)
    rgb_out = np.full((th, tw, 3), 255, dtype=np.uint8)
    rgb_out[:h, :w] = rgb[:h, :w]
    lab_out = np.zeros((th, tw), dtype=np.uint8)
    lab_out[:h, :w] = label
    return rgb_out, lab_out


def _case_stem(path: Path) -> str:
    stem = re.sub(r"[^A-Za-z0-9]+", "-", path.name.split(".")[0]).strip("-") or "slide"
    return stem[:40]
