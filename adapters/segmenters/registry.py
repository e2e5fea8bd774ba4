"""Segmenter factory: maps a segmenter name to its adapter (heavy imports stay lazy)."""

from __future__ import annotations

from service.domain.errors import InvalidInput
from service.pipeline.params import AnalysisParams
from service.ports.segmenters import Segmenter

SEGMENTERS = ("classical", "nnunet", "fake")


def build_segmenter(params: AnalysisParams) -> Segmenter:
    """A not-yet-loaded segmenter for ``params.segmenter``."""
    if params.segmenter == "classical":
        from adapters.segmenters.classical import ClassicalSegmenter

        return ClassicalSegmenter()
    if params.segmenter == "nnunet":
        from adapters.segmenters.nnunet import NnUNetSegmenter

        return NnUNetSegmenter.from_params(params)
    if params.segmenter == "fake":
        from adapters.segmenters.fake import FakeSegmenter

        return FakeSegmenter()
    raise InvalidInput(
        f"unknown segmenter {params.segmenter!r}; choose one of {', '.join(SEGMENTERS)}"
    )
