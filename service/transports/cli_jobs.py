"""CLI sub-commands of the gRPC service: ``serve`` and the client commands
``submit``, ``watch``, ``get``, ``cancel``, ``list``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service.domain.errors import InvalidInput

if TYPE_CHECKING:
    from service.client import AnalysisClient, JobInfo

DEFAULT_SERVER = "127.0.0.1:50051"
EXIT_FOR_STATE = {"DONE": 0, "FAILED": 1, "CANCELLED": 130}


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Registers this module's sub-commands; each sets ``func(args) -> int``."""
    _add_serve(subparsers)
    submit = subparsers.add_parser("submit", help="submit a slide to a marrowscope server")
    _client_options(submit)
    submit.add_argument("path", nargs="?", help="slide path (under the server's slide roots)")
    submit.add_argument("--study", default="", help="DICOMweb StudyInstanceUID")
    submit.add_argument("--series", default="", help="DICOMweb SeriesInstanceUID")
    submit.add_argument("--pacs", default="", help="name of a PACS configured on the server")
    submit.add_argument("--output", action="append", default=[], dest="outputs",
                        help="artifact to produce (overlay, geojson, sr, ann, seg); repeatable")
    submit.add_argument("--segmenter", default="")
    submit.add_argument("--model", default="")
    submit.add_argument("--fat-method", default="", choices=["", "robust", "seed"])
    submit.add_argument("--mpp", type=float, default=None, help="µm per level-0 pixel")
    submit.add_argument("--tile-size", type=int, default=None)
    submit.add_argument("--overlap", type=int, default=None)
    submit.add_argument("--idempotency-key", default="")
    submit.add_argument("--wait", action="store_true",
                        help="watch with a progress bar; Ctrl-C then cancels the job")
    submit.set_defaults(func=_submit)

    watch = subparsers.add_parser("watch", help="show a job's progress until it ends")
    _client_options(watch)
    watch.add_argument("job_id")
    watch.set_defaults(func=_watch)

    get = subparsers.add_parser("get", help="show a job, or download one of its artifacts")
    _client_options(get)
    get.add_argument("job_id")
    get.add_argument("--artifact", help="artifact name to download (e.g. result.json)")
    get.add_argument("--out", type=Path, help="where to write the artifact (default: its name)")
    get.set_defaults(func=_get)

    cancel = subparsers.add_parser("cancel", help="cancel a queued or running job")
    _client_options(cancel)
    cancel.add_argument("job_id")
    cancel.set_defaults(func=_cancel)

    lst = subparsers.add_parser("list", help="list jobs, newest first")
    _client_options(lst)
    lst.add_argument("--state", action="append", default=[], dest="states",
                     choices=["queued", "running", "done", "failed", "cancelled"])
    lst.add_argument("--limit", type=int, default=50)
    lst.set_defaults(func=_list)


# -- serve ----------------------------------------------------------------------------------------
def _add_serve(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = subparsers.add_parser(
        "serve", help="run the gRPC analysis server",
        description="Runs the gRPC server. Settings: embedded defaults < --config TOML file < "
                    "MARROWSCOPE_* environment < these flags.",
    )
    serve.add_argument("--config", type=Path, help="TOML configuration file")
    serve.add_argument("--host", help="interface to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 50051; 0 = any free port)")
    serve.add_argument("--data-dir", type=Path, help="ledger and results directory")
    serve.add_argument("--slide-root", type=Path, action="append", dest="slide_roots",
                       help="directory slides may be read from; repeatable")
    serve.add_argument("--token-file", type=Path, help="lines '<token> <roles> [name]'")
    serve.add_argument("--segmenter", help="default segmenter (classical, nnunet, fake)")
    serve.add_argument("--workers", type=int, help="worker processes")
    serve.add_argument("--queue-limit", type=int, help="max queued+running jobs")
    serve.add_argument("--reflection", action="store_true", default=None,
                       help="enable gRPC server reflection")
    serve.add_argument("--tls-cert", type=Path)
    serve.add_argument("--tls-key", type=Path)
    serve.add_argument("--tls-client-ca", type=Path, help="require client certificates (mTLS)")
    serve.add_argument("--allow-unauthenticated", action="store_true", default=None,
                       help="no bearer tokens (local development only)")
    serve.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    import asyncio

    from service.config import load_config
    from service.transports.grpc.server import serve

    overrides = {
        name: getattr(args, name)
        for name in ("host", "port", "data_dir", "token_file", "segmenter", "workers",
                     "queue_limit", "reflection", "tls_cert", "tls_key", "tls_client_ca",
                     "allow_unauthenticated")
    }
    overrides["slide_roots"] = tuple(args.slide_roots) if args.slide_roots else None
    config = load_config(args.config, overrides=overrides)
    return asyncio.run(serve(config))


# -- client commands ------------------------------------------------------------------------------
def _client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", default=os.environ.get("MARROWSCOPE_SERVER", DEFAULT_SERVER),
                        help=f"host:port (env MARROWSCOPE_SERVER, default {DEFAULT_SERVER})")
    parser.add_argument("--token-file", type=Path,
                        help="file with the bearer token (env MARROWSCOPE_TOKEN otherwise)")
    parser.add_argument("--tls-ca", type=Path, help="CA certificate of the server (enables TLS)")
    parser.add_argument("--tls-cert", type=Path, help="client certificate (mTLS)")
    parser.add_argument("--tls-key", type=Path, help="client key (mTLS)")
    parser.add_argument("--timeout", type=float, default=30.0, help="per-call deadline, seconds")
    parser.add_argument("--json", action="store_true", help="print JSON")


def read_token(token_file: Path | None) -> str | None:
    """The token: first word of the file's first non-comment line (a bare token, or a line of the
    server's token file), else ``$MARROWSCOPE_TOKEN``."""
    if token_file is None:
        return os.environ.get("MARROWSCOPE_TOKEN") or None
    try:
        lines = token_file.read_text().splitlines()
    except OSError as exc:
        raise InvalidInput(f"cannot read token file {token_file}: {exc.strerror}") from exc
    for line in lines:
        words = line.split("#", 1)[0].split()
        if words:
            return words[0]
    raise InvalidInput(f"token file {token_file} holds no token")


def _client(args: argparse.Namespace) -> AnalysisClient:
    from service.client import AnalysisClient

    return AnalysisClient(
        args.server, read_token(args.token_file), tls_ca=args.tls_ca, tls_cert=args.tls_cert,
        tls_key=args.tls_key, timeout_s=args.timeout,
    )


def _job_dict(job: JobInfo) -> dict[str, Any]:
    import dataclasses

    return dataclasses.asdict(job)


def _print_job(job: JobInfo, as_json: bool) -> None:
    if as_json:
        print(json.dumps(_job_dict(job)))
        return
    line = f"{job.job_id}  {job.state}"
    if job.state == "RUNNING":
        line += f"  {job.stage} {job.tiles_done}/{job.tiles_total}"
    if job.state == "FAILED":
        line += f"  {job.failure_reason}"
    if job.summary is not None:
        pct = job.summary.get("cellularity_pct")
        line += f"  cellularity {pct:.1f}%" if pct is not None else "  no marrow"
        line += f"  artifacts: {', '.join(job.artifacts)}"
    print(line)


def _follow(client: AnalysisClient, job_id: str, cancel_on_disconnect: bool, as_json: bool) -> int:
    """Watches until the job ends; a progress bar on a terminal, JSON lines with --json."""
    final: JobInfo | None = None
    bar: Any = None
    try:
        for job in client.watch(job_id, cancel_on_disconnect=cancel_on_disconnect):
            final = job
            if as_json:
                print(json.dumps(_job_dict(job)), flush=True)
                continue
            if bar is None and job.tiles_total:
                from tqdm import tqdm

                bar = tqdm(total=job.tiles_total, unit="tile", desc=job_id[:8], leave=False,
                           file=sys.stderr)
            if bar is not None:
                bar.total = job.tiles_total or bar.total
                bar.n = job.tiles_done
                bar.set_postfix_str(job.stage)
                bar.refresh()
    finally:
        if bar is not None:
            bar.close()
    if final is None:
        return 1
    if not as_json:
        _print_job(final, False)
    return EXIT_FOR_STATE.get(final.state, 1)


def _submit(args: argparse.Namespace) -> int:
    if bool(args.path) == bool(args.study or args.series):
        raise InvalidInput("give either a slide path or --study and --series")
    path = args.path
    if path and os.path.exists(path):  # a local path: the server resolves absolute paths only
        path = os.path.abspath(path)
    with _client(args) as client:
        submitted = client.submit(
            path, study_uid=args.study, series_uid=args.series, pacs=args.pacs,
            outputs=args.outputs, segmenter=args.segmenter, model=args.model,
            fat_method=args.fat_method, mpp=args.mpp, tile_size=args.tile_size,
            overlap=args.overlap, idempotency_key=args.idempotency_key,
        )
        if args.json and not args.wait:
            print(json.dumps({"job_id": submitted.job_id, "state": submitted.state,
                              "created": submitted.created}))
        elif not args.json:
            note = "" if submitted.created else " (existing job)"
            print(f"{submitted.job_id}  {submitted.state}{note}", flush=True)
        if not args.wait:
            return 0
        return _follow(client, submitted.job_id, cancel_on_disconnect=True, as_json=args.json)


def _watch(args: argparse.Namespace) -> int:
    with _client(args) as client:
        return _follow(client, args.job_id, cancel_on_disconnect=False, as_json=args.json)


def _get(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.artifact:
            dest = client.download(args.job_id, args.artifact,
                                   args.out or Path(Path(args.artifact).name))
            print(dest)
            return 0
        _print_job(client.get(args.job_id), args.json)
    return 0


def _cancel(args: argparse.Namespace) -> int:
    with _client(args) as client:
        _print_job(client.cancel(args.job_id), args.json)
    return 0


def _list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        jobs, _ = client.list(states=[s.upper() for s in args.states], page_size=args.limit)
    for job in jobs:
        _print_job(job, args.json)
    return 0
