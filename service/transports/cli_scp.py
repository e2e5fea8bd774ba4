"""`marrowscope scp`: receive slides from a PACS, analyse each stable series, store results back."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path
from types import FrameType

from service.domain.errors import InvalidInput
from service.pacs.router import RouterPolicy
from service.transports.scp_config import CallerRule, ScpConfig

LOG = logging.getLogger(__name__)


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Registers ``scp``."""
    p = subparsers.add_parser(
        "scp",
        help="DICOM C-STORE SCP: analyse routed slides, store SR/ANN back into the PACS",
        description=(
            "Accepts VL Whole Slide Microscopy instances from allow-listed callers, analyses a "
            "series once no instance arrived for --stable-s seconds, and stores the DICOM "
            "results into the slide's study. DICOMweb servers are named in the file given by "
            "MARROWSCOPE_DICOMWEB_CONFIG."
        ),
    )
    p.add_argument("--spool", type=Path, required=True, help="spool folder (instances, ledger)")
    p.add_argument("--ae-title", default="MARROWSCOPE", help="our AE title")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=11112, help="DICOM port (0 = any free port)")
    p.add_argument("--allow", action="append", default=[], metavar="AE@HOST[,HOST|CIDR]",
                   help="allowed caller (repeatable); nobody is allowed without one")
    p.add_argument("--stable-s", type=float, default=30.0,
                   help="a series is complete after this many seconds without a new instance")
    p.add_argument("--min-free-mb", type=int, default=2048,
                   help="refuse instances (status A700) below this much free spool disk")
    p.add_argument("--store-to", required=True, metavar="TARGET",
                   help="dicomweb:<server name> (STOW-RS) or cstore:AE@host:port")
    p.add_argument("--outputs", default="sr,ann", help="DICOM results to store: sr,ann[,seg]")
    p.add_argument("--grpc", metavar="HOST:PORT",
                   help="submit jobs to this marrowscope gRPC service (else analyse in-process)")
    p.add_argument("--token-file", type=Path, help="bearer token for --grpc")
    p.add_argument("--results", type=Path,
                   help="in-process results folder (default: <spool>/results)")
    p.add_argument("--segmenter", default="classical", help="segmenter for in-process analysis")
    p.add_argument("--workers", type=int, default=1, help="in-process analysis threads")
    p.add_argument("--max-attempts", type=int, default=5, help="attempts per series")
    p.add_argument("--retention-h", type=float, default=24.0,
                   help="delete spooled instances this long after their results were stored "
                        "(negative = keep forever)")
    p.set_defaults(func=run_scp)


def _outputs(text: str) -> tuple[str, ...]:
    return tuple(o.strip() for o in text.split(",") if o.strip())


def run_scp(args: argparse.Namespace) -> int:
    from service.pacs.ports import JobSubmitter
    from service.pipeline.params import AnalysisParams
    from service.transports.scp_app import build_pacs_service, parse_store_target

    outputs = _outputs(args.outputs)
    policy = RouterPolicy(outputs=outputs, max_attempts=args.max_attempts)
    config = ScpConfig(
        spool_dir=args.spool, ae_title=args.ae_title, bind_host=args.host, port=args.port,
        allowed_callers=tuple(CallerRule.parse(rule) for rule in args.allow),
        stable_age_s=args.stable_s, min_free_bytes=args.min_free_mb * 2**20,
    )
    submitter: JobSubmitter
    if args.grpc:
        from service.pacs.submit_grpc import GrpcJobSubmitter

        submitter = GrpcJobSubmitter(args.grpc, args.token_file, outputs=outputs,
                                     segmenter=args.segmenter)
    else:
        from service.pacs.submit_local import LocalJobSubmitter

        if args.workers < 1:
            raise InvalidInput("--workers must be at least 1")
        submitter = LocalJobSubmitter(
            args.results or args.spool / "results", AnalysisParams(segmenter=args.segmenter),
            outputs=outputs, workers=args.workers,
        )
    retention_s = None if args.retention_h < 0 else args.retention_h * 3600.0
    service = build_pacs_service(config, submitter, parse_store_target(args.store_to), policy,
                                 retention_s)
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    service.start()
    print(f"marrowscope scp: {config.ae_title} listening on {config.bind_host}:{service.scp.port}",
          flush=True)
    if not config.allowed_callers:
        LOG.warning("no --allow rule: every association will be refused")
    stop.wait()
    service.stop()
    return 0
