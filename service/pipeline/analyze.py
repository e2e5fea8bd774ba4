"""The analysis use case: slide + segmenter + parameters -> numbers, class map, thumbnail.

request -> tissue map (thumbnail) -> tiles at the segmenter's µm/px (glass tiles skipped)
-> read ahead in a thread -> segment in batches -> fat rule -> core of each tile written to the
class map -> counts -> metrics and QC.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from service import __version__
from service.domain.cellularity import PixelCounts, compute_metrics
from service.domain.errors import Cancelled, SlideTooLarge
from service.domain.labels import TissueClass
from service.domain.results import AnalysisResult, Provenance, QCFlag
from service.pipeline.fat import (
    ROBUST_GLASS_FRACTION,
    robust_fat_mask,
    seed_fat_count,
    seed_threshold,
)
from service.pipeline.imaging import grey
from service.pipeline.params import AnalysisParams, CancelToken, ProgressEvent, ProgressSink
from service.pipeline.raster import ClassRaster
from service.pipeline.reading import AnalysisGrid, analysis_grid, prefetch_tiles
from service.pipeline.tiling import Tile, plan_tiles
from service.pipeline.tissue import TissueMap, detect_tissue
from service.pipeline.versions import library_versions
from service.ports.outputs import AnalysisOutcome
from service.ports.segmenters import Segmenter, SegmenterSpec
from service.ports.slides import SlideSource

MAX_ANALYSIS_PIXELS = 4_000_000_000  # ~64 Gpx of level 0 at 0.25 µm/px: far beyond any slide
THUMBNAIL_MPP = 4.0
THUMBNAIL_MAX = 1024


def job_key(identity: str, spec: SegmenterSpec, params: AnalysisParams) -> str:
    """A stable key of (slide identity, model, parameters): same analysis -> same key."""
    p = dataclasses.asdict(params)
    p.pop("device", None)
    payload = {
        "slide": identity,
        "segmenter": [spec.name, spec.version, spec.sha256, list(spec.parameters)],
        "params": p,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def make_thumbnail(slide: SlideSource) -> tuple[npt.NDArray[np.uint8], tuple[float, float]]:
    """A thumbnail at about THUMBNAIL_MPP µm/px and its scale (level-0 px per thumbnail px)."""
    info = slide.info
    mpp0 = (info.mpp[0] + info.mpp[1]) / 2
    long_um = max(info.width_px0, info.height_px0) * mpp0
    size = int(min(THUMBNAIL_MAX, max(256, math.ceil(long_um / THUMBNAIL_MPP))))
    thumb = slide.thumbnail(size)
    h, w = thumb.shape[:2]
    return thumb, (info.width_px0 / w, info.height_px0 / h)


class _Accumulator:
    """Counts, the seed histogram and the class map, filled tile core by tile core."""

    def __init__(self, grid: AnalysisGrid, params: AnalysisParams) -> None:
        self.params = params
        self.classes = ClassRaster(grid.width, grid.height)
        self.greys = ClassRaster(grid.width, grid.height) if params.fat_method == "seed" else None
        self.hist = np.zeros(256, dtype=np.int64)
        self.marrow_px = 0
        self.fat_px = 0

    def add(self, tile: Tile, g: npt.NDArray[np.uint8], marrow: npt.NDArray[np.bool_],
            fat: npt.NDArray[np.bool_] | None) -> None:
        sl = (slice(tile.core_y0 - tile.y, tile.core_y1 - tile.y),
              slice(tile.core_x0 - tile.x, tile.core_x1 - tile.x))
        m = marrow[sl]
        self.marrow_px += int(np.count_nonzero(m))
        if self.greys is not None:
            gc = g[sl]
            self.hist += np.bincount(gc[m], minlength=256)
            self.greys.write_block(tile.core_x0, tile.core_y0,
                                   np.where(m, np.maximum(gc, 1), 0).astype(np.uint8))
            return
        assert fat is not None
        f = fat[sl] & m
        self.fat_px += int(np.count_nonzero(f))
        cls = np.where(f, TissueClass.ADIPOSE, np.where(m, TissueClass.HEMATOPOIETIC,
                                                        TissueClass.OUTSIDE)).astype(np.uint8)
        self.classes.write_block(tile.core_x0, tile.core_y0, cls)

    def finish_seed(self) -> tuple[float | None, bool]:
        """Applies the seed threshold to the stored greys; returns (threshold, clamped)."""
        if self.greys is None:
            return None, False
        if self.marrow_px == 0:
            self.greys.close()
            return None, False
        st = seed_threshold(self.hist)
        self.fat_px = seed_fat_count(self.hist, st.threshold)
        for y0, y1 in self.greys.bands():
            gb = self.greys.read_rows(y0, y1)
            cls = np.where(gb == 0, TissueClass.OUTSIDE,
                           np.where(gb > st.threshold, TissueClass.ADIPOSE,
                                    TissueClass.HEMATOPOIETIC)).astype(np.uint8)
            self.classes.write_block(0, y0, cls)
        self.greys.close()
        return st.threshold, st.clamped


def _batches(items: Iterator[tuple[Tile, npt.NDArray[np.uint8]]],
             size: int) -> Iterator[list[tuple[Tile, npt.NDArray[np.uint8]]]]:
    batch: list[tuple[Tile, npt.NDArray[np.uint8]]] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def analyze(slide: SlideSource, segmenter: Segmenter, params: AnalysisParams,
            progress: ProgressSink | None = None,
            cancel: CancelToken | None = None) -> AnalysisOutcome:
    """Runs the whole analysis of one opened slide."""
    started = time.monotonic()
    report = progress or (lambda event: None)
    info = slide.info
    report(ProgressEvent("loading_model"))
    segmenter.load()
    spec = segmenter.spec
    grid = analysis_grid(slide, spec.mpp)
    if grid.width * grid.height > MAX_ANALYSIS_PIXELS:
        raise SlideTooLarge(
            f"{info.path}: {grid.width} x {grid.height} px at {spec.mpp} µm/px exceeds the "
            f"analysis limit of {MAX_ANALYSIS_PIXELS / 1e9:.0f} Gpx (corrupt header?)")
    report(ProgressEvent("detecting_tissue"))
    thumb, thumb_scale = make_thumbnail(slide)
    tmap = detect_tissue(thumb, thumb_scale)
    all_tiles = plan_tiles(grid.width, grid.height, params.tile_size, params.overlap)
    tiles = [t for t in all_tiles if _tile_has_tissue(t, grid, tmap)]
    acc = _Accumulator(grid, params)
    warnings: list[str] = []
    flags: list[QCFlag] = []
    glass_level = tmap.glass_level
    if glass_level is None and params.fat_method == "robust" and not spec.provides_fat:
        flags.append(QCFlag.GLASS_LEVEL_UNCERTAIN)
        warnings.append("no glass visible: fat threshold uses the brightest marrow pixels")
    done = 0
    report(ProgressEvent("segmenting", 0, len(tiles)))
    try:
        for batch in _batches(prefetch_tiles(slide, grid, tiles), spec.batch_size):
            if cancel is not None and cancel.is_set():
                raise Cancelled("analysis cancelled")
            rgb = np.stack([b[1] for b in batch])
            probs = segmenter.predict(rgb)
            for i, (tile, tile_rgb) in enumerate(batch):
                marrow = probs.marrow[i] >= 0.5
                g = grey(tile_rgb)
                fat = _fat_for_tile(tile, g, marrow, probs.fat[i] if probs.fat is not None
                                    else None, grid, tmap, params, spec)
                acc.add(tile, g, marrow, fat)
            done += len(batch)
            report(ProgressEvent("segmenting", done, len(tiles)))
        threshold, clamped = acc.finish_seed()
    except BaseException:
        acc.classes.close()
        if acc.greys is not None:
            acc.greys.close()
        raise
    if params.fat_method == "robust":
        # nominal: tiles use their local glass level; this is the threshold at the median glass
        threshold = None if glass_level is None or spec.provides_fat else float(
            ROBUST_GLASS_FRACTION * glass_level)
    if clamped:
        flags.append(QCFlag.THRESHOLD_CLAMPED)
    counts = PixelCounts(acc.marrow_px, acc.fat_px, grid.width * grid.height)
    metrics = compute_metrics(counts, spec.mpp)
    if counts.marrow_px == 0:
        flags.append(QCFlag.NO_MARROW)
        warnings.append("no marrow space found: cellularity is undefined")
    elif metrics.marrow_area_mm2 < params.min_marrow_area_mm2:
        flags.append(QCFlag.MARROW_INADEQUATE)
        warnings.append(f"marrow area {metrics.marrow_area_mm2:.3f} mm² is below the adequacy "
                        f"minimum of {params.min_marrow_area_mm2} mm²")
    if info.mpp_source == "file+override":
        flags.append(QCFlag.MPP_CONFLICT)
        warnings.append(f"--mpp {info.mpp[0]:.4g} overrides the file's {info.mpp_file} µm/px")
    if min(grid.scale) < 0.99:
        flags.append(QCFlag.UPSAMPLED)
        warnings.append(f"slide scanned at {info.mpp[0]:.3g} µm/px, coarser than the "
                        f"segmenter's {spec.mpp} µm/px: upsampled")
    key = job_key(info.identity, spec, params)
    result = AnalysisResult.from_metrics(
        metrics,
        slide=info.stem,
        tiles_total=len(all_tiles),
        tiles_analyzed=len(tiles),
        mpp_analyzed=spec.mpp,
        mpp_slide=info.mpp,
        analysis_size=(grid.width, grid.height),
        segmenter=f"{spec.name}:{spec.version}",
        fat_method="model" if spec.provides_fat and params.fat_method == "robust"
        else params.fat_method,
        fat_threshold=threshold,
        glass_level=glass_level,
        qc_flags=tuple(f.value for f in flags),
        warnings=tuple(warnings),
        provenance=Provenance(
            software_version=__version__,
            library_versions=library_versions(),
            parameters={**dataclasses.asdict(params), "segmenter_parameters": dict(spec.parameters),
                        "job_key": key},
            input_path=info.path,
            input_format=info.format,
            input_identity=info.identity,
            segmenter_sha256=spec.sha256,
        ),
        elapsed_s=round(time.monotonic() - started, 3),
    )
    report(ProgressEvent("segmented", done, len(tiles)))
    return AnalysisOutcome(result=result, slide=info, class_map=acc.classes,
                           px0_per_px=grid.scale, thumbnail=thumb, job_key=key)


def _tile_has_tissue(tile: Tile, grid: AnalysisGrid, tmap: TissueMap) -> bool:
    sx, sy = grid.scale
    return tmap.has_tissue(tile.core_x0 * sx, tile.core_y0 * sy, tile.core_x1 * sx,
                           tile.core_y1 * sy)


def _fat_for_tile(tile: Tile, g: npt.NDArray[np.uint8], marrow: npt.NDArray[np.bool_],
                  fat_prob: npt.NDArray[np.float32] | None, grid: AnalysisGrid, tmap: TissueMap,
                  params: AnalysisParams, spec: SegmenterSpec) -> npt.NDArray[np.bool_] | None:
    if params.fat_method == "seed":
        return None
    if fat_prob is not None:
        return np.asarray((fat_prob >= 0.5) & marrow)
    sx, sy = grid.scale
    cx, cy = (tile.x + tile.size / 2) * sx, (tile.y + tile.size / 2) * sy
    glass = tmap.glass_at(cx, cy) if tmap.glass_level is not None else float(
        np.percentile(g[marrow], 99.5)) if marrow.any() else 255.0
    return robust_fat_mask(g, marrow, glass, spec.mpp)
