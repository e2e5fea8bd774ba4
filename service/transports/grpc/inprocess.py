"""Runs a server in a background thread with its own event loop (tests, benchmarks, notebooks)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from service.config import ServerConfig
from service.jobs.executor import Executor
from service.transports.grpc.auth import TokenTable
from service.transports.grpc.server import RunningServer, start_server

T = TypeVar("T")


class ServerThread:
    """``with ServerThread(config) as server: ... server.port ...``; stops gracefully on exit."""

    def __init__(
        self,
        config: ServerConfig,
        executor: Executor | None = None,
        tokens: TokenTable | None = None,
    ) -> None:
        self.config = config
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="grpc-server",
                                        daemon=True)
        self._thread.start()
        self.running: RunningServer = self.call(start_server(config, executor, tokens))
        self.port = self.running.port

    def call(self, coro: Coroutine[Any, Any, T], timeout_s: float | None = 60.0) -> T:
        """Runs ``coro`` on the server's loop and returns its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout_s)

    def run_sync(self, fn: Any, *args: Any) -> Any:
        """Calls a plain function on the server's loop (the ledger is loop-thread only)."""

        async def call() -> Any:
            return fn(*args)

        return self.call(call())

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        async def ready() -> None:
            await asyncio.wait_for(asyncio.shield(self.running.ready), timeout_s)

        self.call(ready(), timeout_s + 5)

    def stop(self, drain_s: float | None = 0.0) -> None:
        if self._loop.is_closed():
            return
        try:
            self.call(self.running.stop(drain_s=drain_s), timeout_s=120)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()

    def __enter__(self) -> ServerThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
