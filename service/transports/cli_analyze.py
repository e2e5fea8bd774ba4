"""`marrowscope analyze` and `marrowscope demo`: slides in, results and artifacts out."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from service import bootstrap
from service.domain.errors import InvalidInput, MarrowscopeError
from service.domain.slide import DicomContext
from service.pipeline.params import (
    ALL_OUTPUTS,
    DEFAULT_OUTPUTS,
    AnalysisParams,
    OutputRequest,
    ProgressEvent,
)
from service.pipeline.summary import SlideOutcome, write_summary_csv

log = logging.getLogger(__name__)
UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("analyze", help="analyse slides (files or folders)",
                              description="Analyse slides; writes OUT/<slide>/result.json etc.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="slide files or folders")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    add_analysis_options(p)
    p.set_defaults(func=run_analyze)
    d = subparsers.add_parser("demo", help="generate a synthetic demo slide and analyse it",
                              description="Generates a synthetic marrow slide (DICOM-WSI and "
                              "SVS) with known truth and runs the whole pipeline on it.")
    d.add_argument("--out", type=Path, default=Path("demo-out"), help="output folder")
    d.add_argument("--segmenter", default="classical", help="classical | nnunet | fake")
    d.set_defaults(func=run_demo)


def add_analysis_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--segmenter", default="classical", help="classical (default) | nnunet | fake")
    p.add_argument("--model", default=None, help="nnU-Net model: results folder, zip or .pth")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] (nnunet)")
    p.add_argument("--tta", action="store_true", help="mirroring test-time augmentation (nnunet)")
    p.add_argument("--trust-model", action="store_true",
                   help="load an nnU-Net checkpoint whose sha256 is not in the model manifest "
                   "(checkpoints are pickles and can run code: only for files you trust)")
    p.add_argument("--fat-method", default="robust", choices=("robust", "seed"),
                   help="robust (default, relative to the slide's glass) or seed (P75 clamp rule)")
    p.add_argument("--mpp", type=float, default=None, help="µm/px of level 0 (overrides the file)")
    p.add_argument("--tile-size", type=int, default=1280, help="tile size in analysis px (1280)")
    p.add_argument("--overlap", type=int, default=128, help="tile overlap in analysis px (128)")
    p.add_argument("--outputs", default=",".join(DEFAULT_OUTPUTS),
                   help=f"comma list of {','.join(ALL_OUTPUTS)} "
                   f"(default {','.join(DEFAULT_OUTPUTS)})")
    p.add_argument("--seg", action="store_true", help="also write a DICOM SEG")
    p.add_argument("--json", action="store_true", help="print each result as JSON on stdout")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    g = p.add_argument_group("DICOM metadata for non-DICOM slides (needed for SR/ANN/SEG)")
    g.add_argument("--study-uid", default=None, help="StudyInstanceUID of the slide's study")
    g.add_argument("--patient-id", default="", help="PatientID")
    g.add_argument("--patient-name", default="", help="PatientName (DICOM PN, e.g. Doe^Jane)")
    g.add_argument("--accession", default="", help="AccessionNumber")
    g.add_argument("--specimen-id", default="", help="specimen identifier")


def params_from_args(args: argparse.Namespace) -> AnalysisParams:
    return AnalysisParams(segmenter=args.segmenter, model=args.model, device=args.device,
                          tta=args.tta, fat_method=args.fat_method, mpp_override=args.mpp,
                          tile_size=args.tile_size, overlap=args.overlap)


def outputs_from_args(args: argparse.Namespace) -> OutputRequest:
    names = tuple(n.strip() for n in args.outputs.split(",") if n.strip())
    if args.seg and "seg" not in names:
        names = (*names, "seg")
    unknown = [n for n in names if n not in ALL_OUTPUTS]
    if unknown:
        raise InvalidInput(f"unknown output(s) {', '.join(unknown)}; choose from "
                           f"{', '.join(ALL_OUTPUTS)}")
    meta = None
    if args.study_uid and (len(args.study_uid) > 64 or not UID_RE.match(args.study_uid)):
        raise InvalidInput(f"--study-uid {args.study_uid!r} is not a DICOM UID "
                           "(dot-separated numbers, no leading zeros, at most 64 characters)")
    for flag, value, limit in (("--patient-id", args.patient_id, 64),
                               ("--accession", args.accession, 16),
                               ("--patient-name", args.patient_name, 64 * 5)):
        if len(value) > limit:
            raise InvalidInput(f"{flag} is longer than DICOM allows ({limit} characters)")
    if args.study_uid:
        meta = DicomContext(study_instance_uid=args.study_uid, patient_id=args.patient_id,
                            patient_name=args.patient_name, accession_number=args.accession,
                            specimen_identifier=args.specimen_id,
                            container_identifier=args.specimen_id)
    return OutputRequest(outputs=names, dicom_metadata=meta)


class _Bars:
    """tqdm progress bars: one for the batch, one for the current slide's tiles."""

    def __init__(self, total: int, enabled: bool) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self.enabled = enabled
        self.overall: Any = tqdm(total=total, desc="slides", unit="slide", position=0,
                                 disable=not enabled, file=sys.stderr)
        self.tiles: Any = None

    def start(self, name: str) -> None:
        self.close_tiles()
        self.tiles = self._tqdm(total=0, desc=name[:30], unit="tile", position=1, leave=False,
                                disable=not self.enabled, file=sys.stderr)

    def __call__(self, event: ProgressEvent) -> None:
        if self.tiles is None:
            return
        if event.tiles_total and self.tiles.total != event.tiles_total:
            self.tiles.total = event.tiles_total
        self.tiles.n = event.tiles_done
        self.tiles.set_postfix_str(event.stage, refresh=True)

    def close_tiles(self) -> None:
        if self.tiles is not None:
            self.tiles.close()
            self.tiles = None

    def close(self) -> None:
        self.close_tiles()
        self.overall.close()


def analyze_batch(references: list[str], out: Path, params: AnalysisParams,
                  outputs: OutputRequest, progress: bool = True,
                  print_json: bool = False) -> list[SlideOutcome]:
    """Analyses each slide (one loaded segmenter), isolating failures; writes the summary."""
    slides = bootstrap.list_slides(references)
    if not slides:
        raise InvalidInput(f"no slides found in {', '.join(references)}")
    segmenter = bootstrap.build_segmenter(params)
    segmenter.load()
    bars = _Bars(len(slides), progress)
    outcomes: list[SlideOutcome] = []
    used: set[str] = set()
    try:
        for ref in slides:
            bars.start(Path(ref).name)
            try:
                result = bootstrap.analyze_to_dir(
                    ref, params, out / _unique_stem(ref, used), outputs=outputs,
                    progress=bars, segmenter=segmenter)
            except (MarrowscopeError, OSError) as exc:
                msg = str(exc) if ref in str(exc) else f"{ref}: {exc}"
                bars.overall.write(f"marrowscope: {msg}", file=sys.stderr)
                outcomes.append(SlideOutcome(ref, None, str(exc)))
            except Exception as exc:  # a bug must not stop the batch nor print a traceback
                log.debug("unexpected error on %s", ref, exc_info=True)
                msg = f"{ref}: internal error: {type(exc).__name__}: {exc} (-v for details)"
                bars.overall.write(f"marrowscope: {msg}", file=sys.stderr)
                outcomes.append(SlideOutcome(ref, None, msg))
            else:
                outcomes.append(SlideOutcome(ref, result))
                if print_json:
                    bars.overall.write(json.dumps(result.to_dict(), default=str))
            bars.overall.update(1)
    finally:
        bars.close()
    out.mkdir(parents=True, exist_ok=True)
    write_summary_csv(outcomes, out / "summary.csv")
    ok = [o.result for o in outcomes if o.result is not None]
    if ok:
        bootstrap.write_summary_figure(ok, out / "summary.png")
    return outcomes


def _unique_stem(reference: str, used: set[str]) -> str:
    from service.domain.slide import SlideInfo

    stem = SlideInfo(path=reference, format="", width_px0=1, height_px0=1, mpp=(1, 1),
                     levels=(), identity="").stem
    name, i = stem, 2
    while name in used:
        name, i = f"{stem}-{i}", i + 1
    used.add(name)
    return name


def _print_line(o: SlideOutcome) -> None:
    if o.result is None:
        return
    r = o.result
    cell = "n/a" if r.cellularity_pct is None else f"{r.cellularity_pct:.1f} %"
    flags = f"  QC: {', '.join(r.qc_flags)}" if r.qc_flags else ""
    print(f"{r.slide}: cellularity {cell}, marrow {r.marrow_area_mm2:.2f} mm², "
          f"{r.tiles_analyzed}/{r.tiles_total} tiles, {r.elapsed_s:.1f} s{flags}")


def run_analyze(args: argparse.Namespace) -> int:
    if args.trust_model:
        print("marrowscope: warning: --trust-model: checkpoints not in the manifest will be "
              "unpickled; a malicious checkpoint can run code", file=sys.stderr)
        os.environ["MARROWSCOPE_TRUST_MODELS"] = "1"
    params = params_from_args(args)
    outputs = outputs_from_args(args)
    outcomes = analyze_batch(args.paths, args.out, params, outputs,
                             progress=not args.no_progress and sys.stderr.isatty(),
                             print_json=args.json)
    if not args.json:
        for o in outcomes:
            _print_line(o)
    failed = [o for o in outcomes if o.result is None]
    if failed:
        print(f"marrowscope: {len(failed)} of {len(outcomes)} slide(s) failed", file=sys.stderr)
    return 1 if failed else 0


def run_demo(args: argparse.Namespace) -> int:
    out: Path = args.out
    t0 = time.monotonic()
    print("generating the synthetic demo slide (DICOM-WSI and SVS) ...", flush=True)
    dicom_dir, svs, truth = bootstrap.make_demo_slides(out / "slides")
    params = AnalysisParams(segmenter=args.segmenter)
    outcomes = analyze_batch([str(dicom_dir), str(svs)], out / "results", params,
                             OutputRequest(outputs=("overlay", "geojson", "sr", "ann")),
                             progress=sys.stderr.isatty())
    for o in outcomes:
        _print_line(o)
        if o.result is not None:
            print(f"   artifacts: {', '.join(o.result.artifacts)}")
    if truth is not None:
        print(f"true cellularity of the synthetic slide: {truth:.1f} %")
    print(f"results in {out / 'results'} ({time.monotonic() - t0:.0f} s)")
    return 1 if any(o.result is None for o in outcomes) else 0
