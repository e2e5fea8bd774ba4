"""Builds and runs the gRPC server: ledger, result store, executor, manager, health, reflection.

The server listens at once with health NOT_SERVING; it turns SERVING when every worker has loaded
its segmenter, and NOT_SERVING again at shutdown (stop accepting → drain → requeue → exit).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from service.config import ServerConfig
from service.domain.errors import InvalidInput, MarrowscopeError
from service.jobs.executor import Executor
from service.jobs.ledger import SqlLedger
from service.jobs.local_executor import LocalExecutor
from service.jobs.manager import JobManager, JobSettings
from service.jobs.results import ResultStore
from service.pipeline.params import AnalysisParams
from service.transports.grpc.auth import AuthInterceptor, TokenTable
from service.transports.grpc.errors import ErrorMappingInterceptor
from service.transports.grpc.servicer import AnalysisServicer
from service.transports.grpc.stubs import SERVICE_NAME, pb, pb_grpc

log = logging.getLogger("marrowscope.server")


def job_settings(config: ServerConfig) -> JobSettings:
    return JobSettings(
        queue_limit=config.queue_limit, max_attempts=config.max_attempts, lease_s=config.lease_s,
        backoff_s=config.backoff_s, drain_s=config.drain_s,
    )


def _lock_data_dir(data_dir: Path) -> IO[str]:
    """One server per SQLite ledger: an exclusive lock on ``data_dir/server.lock``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = (data_dir / "server.lock").open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        handle.close()
        raise InvalidInput(f"another marrowscope server is using the data directory {data_dir}")\
            from exc
    return handle


def _credentials(config: ServerConfig) -> grpc.ServerCredentials | None:
    if config.tls_cert is None or config.tls_key is None:
        return None
    ca = config.tls_client_ca.read_bytes() if config.tls_client_ca else None
    return grpc.ssl_server_credentials(
        [(config.tls_key.read_bytes(), config.tls_cert.read_bytes())],
        root_certificates=ca,
        require_client_auth=ca is not None,
    )


class ModelIdentity:
    """The model part of derived idempotency keys: the segmenter's sha256 (or name/version)."""

    def __init__(self, executor: Executor) -> None:
        self._executor = executor
        self._cache: dict[tuple[str, str | None], str] = {}

    def __call__(self, params: AnalysisParams) -> str:
        key = (params.segmenter, params.model)
        if key not in self._cache:
            spec: dict[str, Any] = getattr(self._executor, "spec", {}) or {}
            if spec.get("name") != params.segmenter or params.model is not None:
                from service.bootstrap import build_segmenter

                built = build_segmenter(params).spec  # cheap: built, not loaded
                spec = {"name": built.name, "version": built.version, "sha256": built.sha256}
            self._cache[key] = str(
                spec.get("sha256") or f"{spec.get('name')}:{spec.get('version')}:{params.model}"
            )
        return self._cache[key]


@dataclass
class RunningServer:
    """A started server; ``stop()`` shuts it down gracefully."""

    server: grpc.aio.Server
    manager: JobManager
    health: Any
    port: int
    config: ServerConfig
    ledger: SqlLedger
    ready: asyncio.Task[None]
    lock: IO[str] | None = None
    _stopped: bool = field(default=False)

    async def _set_health(self, status: Any) -> None:
        for name in ("", SERVICE_NAME):
            await self.health.set(name, status)

    async def stop(self, drain_s: float | None = None, grace_s: float = 5.0) -> None:
        if self._stopped:
            return
        self._stopped = True
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        if not self.ready.done():
            self.ready.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.ready
        await self.manager.shutdown(drain_s)
        await self.server.stop(grace_s)
        self.ledger.close()
        if self.lock is not None:
            self.lock.close()
        log.info("server stopped")


async def start_server(
    config: ServerConfig,
    executor: Executor | None = None,
    tokens: TokenTable | None = None,
) -> RunningServer:
    """Starts listening now; the segmenter loads in the background (health says when ready)."""
    if tokens is None and not config.allow_unauthenticated:
        tokens = TokenTable.load(config.token_file, config.tokens)
        if not len(tokens):
            raise InvalidInput(
                "no tokens configured: pass --token-file (lines '<token> <roles> [name]') or set "
                "MARROWSCOPE_TOKENS, or allow_unauthenticated for local development"
            )
    lock = _lock_data_dir(config.data_dir)
    ledger = SqlLedger.open_sqlite(config.ledger_path)
    store = ResultStore(config.results_root)
    executor = executor or LocalExecutor(
        AnalysisParams(segmenter=config.segmenter), workers=config.workers, gpus=config.gpus
    )
    manager = JobManager(ledger, executor, store, job_settings(config))
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    options = [
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
        ("grpc.so_reuseport", 0),
    ]
    server = grpc.aio.server(
        interceptors=[AuthInterceptor(tokens), ErrorMappingInterceptor()], options=options
    )
    pb_grpc.add_AnalysisServiceServicer_to_server(
        AnalysisServicer(manager, config, ModelIdentity(executor)), server
    )
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if config.reflection:
        from grpc_reflection.v1alpha import reflection

        names = (
            pb.DESCRIPTOR.services_by_name["AnalysisService"].full_name,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        )
        reflection.enable_server_reflection(names, server)
    address = f"{config.host}:{config.port}"
    creds = _credentials(config)
    port = server.add_secure_port(address, creds) if creds else server.add_insecure_port(address)
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    await server.start()

    async def become_ready() -> None:
        await manager.start(recover_running=True)  # the lock makes this server the only one
        for name in ("", SERVICE_NAME):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("serving on port %d", port)

    running = RunningServer(server, manager, health_servicer, port, config, ledger,
                            asyncio.create_task(become_ready(), name="become-ready"), lock)
    return running


async def serve(config: ServerConfig) -> int:
    """Runs until SIGTERM/SIGINT; returns the exit code."""
    running = await start_server(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    scheme = "TLS" if config.tls_cert else "plaintext"
    print(f"marrowscope: listening on {config.host}:{running.port} ({scheme}); "
          f"data in {config.data_dir}", flush=True)
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({stopper, running.ready}, return_when=asyncio.FIRST_COMPLETED)
    if running.ready.done() and running.ready.exception() is not None:
        exc = running.ready.exception()
        await running.stop(drain_s=0)
        if isinstance(exc, MarrowscopeError):
            raise exc
        raise RuntimeError(f"server failed to start: {exc}")
    if not stop.is_set():
        print("marrowscope: ready (health SERVING)", flush=True)
        await stop.wait()
    print("marrowscope: shutting down (draining running jobs)", flush=True)
    await running.stop()
    return 0
