"""Shared set-up of the gRPC tests: a small synthetic PNG slide, tokens, an in-process server."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import grpc

from service.config import ServerConfig
from service.transports.grpc.inprocess import ServerThread
from service.transports.grpc.stubs import pb, pb_grpc

ADMIN = "admin-token-0123456789"
READER = "reader-token-0123456789"
SUBMITTER = "submit-token-0123456789"
TOKENS = f"{ADMIN} admin admin;{READER} read reader;{SUBMITTER} submit,read submitter"
SLIDE_MPP = 2.0  # passed as mpp_override: the PNG has no resolution of its own


def write_slide(folder: Path, name: str = "slide.png", seed: int = 3,
                width: int = 1024, height: int = 768) -> Path:
    """A synthetic marrow PNG (glass, bone, hematopoietic tissue and fat vacuoles)."""
    from adapters.synthetic.scene import SyntheticScene
    from adapters.synthetic.writers import write_png

    folder.mkdir(parents=True, exist_ok=True)
    scene = SyntheticScene(width, height, mpp=SLIDE_MPP, seed=seed)
    return Path(write_png(folder / name, width, height, scene.render_rgb))


def base_config(tmp: Path, **changes: object) -> ServerConfig:
    config = ServerConfig(
        host="127.0.0.1", port=0, data_dir=tmp / "data", slide_roots=(tmp / "slides",),
        segmenter="fake", tokens=TOKENS, workers=1, lease_s=2.0, backoff_s=0.2, drain_s=5.0,
        default_outputs=("overlay", "geojson"),
    )
    return replace(config, **changes)  # type: ignore[arg-type]


def metadata(token: str = ADMIN) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def submit_request(path: Path | str, key: str = "", tile_size: int = 64, **kw: object) -> object:
    params = pb.AnalysisParameters(segmenter="fake", mpp_override=SLIDE_MPP, tile_size=tile_size,
                                   overlap=8)
    return pb.SubmitAnalysisRequest(
        slide=pb.SlideReference(file=pb.FileSlide(path=str(path))), parameters=params,
        outputs=list(kw.get("outputs", ("overlay", "geojson"))),  # type: ignore[call-overload]
        idempotency_key=key,
    )


@contextlib.contextmanager
def running_server(config: ServerConfig, env: dict[str, str] | None = None,
                   wait: bool = True) -> Iterator[tuple[ServerThread, object]]:
    """An in-process server and a stub on a fresh channel; env vars apply to spawned workers."""
    saved = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})  # kept until the end: workers may be respawned meanwhile
    try:
        server = ServerThread(config)
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        try:
            if wait:
                server.wait_ready()
            yield server, pb_grpc.AnalysisServiceStub(channel)
        finally:
            channel.close()
            server.stop()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def watch_states(stub: object, job_id: str, timeout_s: float = 60.0) -> list[object]:
    """Every WatchAnalysis update of a job until it ends."""
    updates = stub.WatchAnalysis(  # type: ignore[attr-defined]
        pb.WatchAnalysisRequest(job_id=job_id), metadata=metadata(), timeout=timeout_s
    )
    return [u.job for u in updates]
