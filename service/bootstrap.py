"""The one composition root: wires adapters into the pipeline. Transports call only this."""

from __future__ import annotations

import json
from pathlib import Path

from service.domain.results import AnalysisResult
from service.pipeline.params import AnalysisParams, CancelToken, OutputRequest, ProgressSink
from service.ports.outputs import ResultWriter
from service.ports.segmenters import Segmenter
from service.ports.slides import SlideSource


def open_slide(reference: str, mpp_override: float | None = None) -> SlideSource:
    """Opens a slide path (format detected by content) or DICOMweb reference."""
    from adapters.slides.registry import open_slide as _open

    return _open(reference, mpp_override=mpp_override)


def build_segmenter(params: AnalysisParams) -> Segmenter:
    """The segmenter named in ``params`` (``classical`` or ``nnunet``), not yet loaded."""
    from adapters.segmenters.registry import build_segmenter as _build

    return _build(params)


def build_writers(names: tuple[str, ...]) -> list[ResultWriter]:
    """Writers for the requested output names, in a fixed order."""
    from adapters.writers.registry import build_writers as _build

    return _build(names)


def analyze_to_dir(
    reference: str,
    params: AnalysisParams,
    out_dir: Path,
    outputs: OutputRequest | None = None,
    progress: ProgressSink | None = None,
    cancel: CancelToken | None = None,
    segmenter: Segmenter | None = None,
) -> AnalysisResult:
    """Analyses one slide and writes result.json plus the requested artifacts into ``out_dir``.

    Pass a loaded ``segmenter`` to reuse it across slides (servers, batches).
    """
    from service.pipeline.analyze import analyze
    from service.pipeline.publish import publish

    outputs = outputs or OutputRequest()
    seg = segmenter or build_segmenter(params)
    slide = open_slide(reference, mpp_override=params.mpp_override)
    try:
        outcome = analyze(slide, seg, params, progress=progress, cancel=cancel)
        return publish(outcome, out_dir, outputs, build_writers(outputs.outputs))
    finally:
        slide.close()


def write_result_json(result: AnalysisResult, path: Path) -> None:
    """result.json, written atomically."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result.to_dict(), indent=2, sort_keys=False, default=str))
    tmp.replace(path)
