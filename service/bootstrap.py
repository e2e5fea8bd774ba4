"""The one composition root: wires adapters into the pipeline. Transports call only this."""

from __future__ import annotations

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


def list_slides(paths: list[str]) -> list[str]:
    """Expands folders to the slides in them (a DICOM-WSI folder is one slide)."""
    from adapters.slides.registry import list_slides as _list

    return _list(paths)


def write_summary_figure(results: list[AnalysisResult], path: Path) -> Path:
    from adapters.writers.summary_figure import write_summary_figure as _write

    return _write(results, path)


DEMO_SIZE_PX0 = (8192, 6144)
DEMO_MPP = 0.5
DEMO_SEED = 2026


def make_demo_slides(folder: Path) -> tuple[Path, Path, float | None]:
    """The embedded demo: one synthetic marrow slide as DICOM-WSI and as SVS.

    Returns (DICOM folder, SVS path, true cellularity %). Files are reused if present.
    """
    from adapters.synthetic.scene import SyntheticScene
    from adapters.synthetic.writers import svs_to_dicom_wsi, write_svs

    scene = SyntheticScene(*DEMO_SIZE_PX0, mpp=DEMO_MPP, seed=DEMO_SEED, cellularity_target=45.0,
                           glass_level=232.0)
    folder.mkdir(parents=True, exist_ok=True)
    svs = folder / "demo-marrow.svs"
    dicom_dir = folder / "demo-marrow-dicom"
    if not svs.exists():
        tmp = folder / "demo-marrow.svs.part"
        write_svs(tmp, *DEMO_SIZE_PX0, DEMO_MPP, scene.render_rgb)
        tmp.replace(svs)
    if not dicom_dir.exists():
        part = folder / "demo-marrow-dicom.part"
        if part.exists():
            import shutil

            shutil.rmtree(part)
        svs_to_dicom_wsi(svs, part, seed=f"demo-{DEMO_SEED}")
        part.replace(dicom_dir)
    return dicom_dir, svs, scene.truth_cellularity_pct
