"""``LocalExecutor``: a fixed pool of worker processes on this machine (``spawn`` start method).

Each worker loads the segmenter once. A reader thread per worker forwards its messages to the
event loop; a worker that dies (crash, OOM, SIGKILL) ends its task as ``lost`` and is replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import threading
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from service.domain.errors import ModelUnavailable
from service.jobs.executor import ProgressCallback, Task, TaskOutcome
from service.jobs.model import Progress
from service.jobs.worker import DEFAULT_RUNNER, worker_main
from service.pipeline.params import AnalysisParams

log = logging.getLogger("marrowscope.executor")


class _Worker:
    """Parent-side handle of one worker process."""

    def __init__(self, index: int, process: BaseProcess, conn: Connection, cancel: Any) -> None:
        self.index = index
        self.process = process
        self.conn = conn
        self.cancel = cancel
        self.ready: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.job_id: str | None = None
        self.outcome: asyncio.Future[TaskOutcome] | None = None
        self.progress: ProgressCallback | None = None
        self.alive = True
        self.loaded = False


def worker_device(index: int, gpus: tuple[str, ...]) -> str | None:
    """The GPU a worker is pinned to (round robin), or None without configured GPUs."""
    return gpus[index % len(gpus)] if gpus else None


class LocalExecutor:
    """Runs tasks in ``workers`` spawned processes, one task per process at a time."""

    def __init__(
        self,
        default_params: AnalysisParams,
        workers: int = 1,
        runner: str = DEFAULT_RUNNER,
        start_timeout_s: float = 600.0,
        gpus: tuple[str, ...] = (),
    ) -> None:
        """``gpus``: device ids (as CUDA_VISIBLE_DEVICES takes them); worker i is pinned to
        ``gpus[i % len(gpus)]`` and there is at least one worker per GPU."""
        if workers < 1:
            raise ValueError("a LocalExecutor needs at least one worker")
        self._gpus = gpus
        workers = max(workers, len(gpus))
        self._params = default_params
        self._n = workers
        self._runner = runner
        self._start_timeout_s = start_timeout_s
        self._ctx = multiprocessing.get_context("spawn")
        self._workers: dict[int, _Worker] = {}
        self._idle: list[_Worker] = []
        self._stopping = False
        self._ready = False
        self.spec: dict[str, Any] = {}

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        for index in range(self._n):
            self._spawn(index)
        for worker in list(self._workers.values()):
            try:
                self.spec = await asyncio.wait_for(asyncio.shield(worker.ready),
                                                   self._start_timeout_s)
            except TimeoutError as exc:
                raise ModelUnavailable("a worker did not load the segmenter in time") from exc
        self._ready = True

    @property
    def ready(self) -> bool:
        return self._ready and not self._stopping

    async def stop(self) -> None:
        self._stopping = True
        self._ready = False
        for worker in self._workers.values():
            if not worker.alive:
                continue
            if worker.job_id is None and worker.loaded:
                with contextlib.suppress(OSError):
                    worker.conn.send(None)
            else:  # busy (its job is requeued already) or still loading the segmenter
                worker.process.kill()
        loop = asyncio.get_running_loop()
        for worker in list(self._workers.values()):
            await loop.run_in_executor(None, worker.process.join, 5.0)
            if worker.process.is_alive():
                worker.process.kill()
                await loop.run_in_executor(None, worker.process.join, 5.0)

    # -- tasks ---------------------------------------------------------------------------------
    def free_slots(self) -> int:
        return len(self._idle) if self.ready else 0

    def start_task(self, task: Task, progress: ProgressCallback) -> asyncio.Future[TaskOutcome]:
        if not self._idle:
            raise RuntimeError("start_task() called without a free slot")
        worker = self._idle.pop()
        worker.cancel.clear()
        worker.job_id = task.job_id
        worker.progress = progress
        outcome: asyncio.Future[TaskOutcome] = asyncio.get_running_loop().create_future()
        worker.outcome = outcome
        try:
            worker.conn.send(task)
        except OSError:
            self._on_exit(worker)
        return outcome

    def _release(self, worker: _Worker) -> None:
        """The worker answered its task (even one whose future was cancelled): idle again."""
        worker.job_id = None
        worker.progress = None
        worker.outcome = None
        if worker.alive and not self._stopping and worker not in self._idle:
            self._idle.append(worker)

    def cancel(self, job_id: str) -> bool:
        for worker in self._workers.values():
            if worker.job_id == job_id and worker.alive:
                worker.cancel.set()
                return True
        return False

    def pids(self) -> dict[str, int]:
        """Job id → worker pid for running tasks (tests kill workers by pid)."""
        return {
            w.job_id: w.process.pid
            for w in self._workers.values()
            if w.job_id is not None and w.process.pid is not None
        }

    # -- worker plumbing -------------------------------------------------------------------------
    def _spawn(self, index: int) -> None:
        parent_conn, child_conn = self._ctx.Pipe()
        cancel = self._ctx.Event()
        process = self._ctx.Process(
            target=worker_main,
            args=(child_conn, cancel, self._params, self._runner, worker_device(index, self._gpus)),
            name=f"marrowscope-worker-{index}",
            daemon=True,
        )
        process.start()
        child_conn.close()
        worker = _Worker(index, process, parent_conn, cancel)
        self._workers[index] = worker
        loop = asyncio.get_running_loop()
        threading.Thread(
            target=self._read, args=(worker, loop), name=f"worker-{index}-reader", daemon=True
        ).start()

    def _read(self, worker: _Worker, loop: asyncio.AbstractEventLoop) -> None:
        """Reader thread: forwards every message, then the worker's exit, to the loop."""
        while True:
            try:
                msg = worker.conn.recv()
            except (EOFError, OSError):
                break
            try:
                loop.call_soon_threadsafe(self._on_message, worker, msg)
            except RuntimeError:  # loop closed
                return
        try:
            loop.call_soon_threadsafe(self._on_exit, worker)
        except RuntimeError:
            return

    def _on_message(self, worker: _Worker, msg: tuple[Any, ...]) -> None:
        kind = msg[0]
        if kind == "ready":
            worker.loaded = True
            if not worker.ready.done():
                worker.ready.set_result(msg[1])
            if worker.alive and worker.job_id is None and worker not in self._idle:
                self._idle.append(worker)  # also how a replacement worker joins the pool
            return
        if kind == "load_failed":
            if worker.ready.done():
                return
            if self._ready:  # a replacement worker: nobody awaits it, the pool shrinks
                log.error("replacement worker %d could not load the segmenter", worker.index)
                worker.ready.cancel()
            else:
                worker.ready.set_exception(ModelUnavailable(f"segmenter failed to load: {msg[1]}"))
            return
        if kind == "progress":
            if worker.progress is not None:
                worker.progress(Progress(stage=msg[1], tiles_done=msg[2], tiles_total=msg[3]))
            return
        outcome = {
            "done": lambda: TaskOutcome("done", summary=msg[1], artifacts=tuple(msg[2])),
            "cancelled": lambda: TaskOutcome("cancelled"),
            "failed": lambda: TaskOutcome(
                "failed", error_code=msg[1], message=msg[2], retryable=bool(msg[3])
            ),
        }[kind]()
        if worker.outcome is not None and not worker.outcome.done():
            worker.outcome.set_result(outcome)
        self._release(worker)

    def _on_exit(self, worker: _Worker) -> None:
        if not worker.alive:
            return
        worker.alive = False
        if worker in self._idle:
            self._idle.remove(worker)
        if not worker.ready.done():
            if self._stopping or self._ready:
                worker.ready.cancel()
            else:
                worker.ready.set_exception(ModelUnavailable(
                    f"worker exited with code {worker.process.exitcode} while loading"
                ))
        if worker.outcome is not None and not worker.outcome.done():
            log.warning("worker %d died running job %s", worker.index, worker.job_id)
            worker.outcome.set_result(
                TaskOutcome("lost", message="worker process died", retryable=True)
            )
        if not self._stopping and worker.loaded:  # one that never loaded is not retried
            self._spawn(worker.index)
