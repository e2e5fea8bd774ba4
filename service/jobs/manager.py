"""The job manager: submit/cancel/watch on top of the ledger, and the loop that feeds the executor.

Flow: submit → ledger QUEUED → dispatch loop claims (RUNNING, lease) → executor.run → the outcome
is written to the ledger (DONE / FAILED / CANCELLED, or QUEUED again with backoff). A heartbeat
extends leases, requeues expired ones (crashed servers) and forwards cross-server cancel requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from service.domain.errors import ResourceExhausted
from service.jobs.errors import JobNotFound, JobStateConflict, ServiceUnavailable
from service.jobs.executor import Executor, Task, TaskOutcome
from service.jobs.ledger import SqlLedger
from service.jobs.model import ACTIVE_STATES, Job, JobRequest, JobState, Progress
from service.jobs.results import (
    ResultStore,
    list_artifacts,
    published_result,
    summary_from_result,
)

log = logging.getLogger("marrowscope.jobs")


@dataclass(frozen=True)
class JobSettings:
    """Queue bound, retry policy and lease timing."""

    queue_limit: int = 64
    max_attempts: int = 3
    lease_s: float = 30.0
    backoff_s: float = 2.0
    backoff_max_s: float = 60.0
    poll_s: float = 0.5
    drain_s: float = 30.0


class JobManager:
    """Owns job state transitions; the gRPC servicer and tests call only this."""

    def __init__(
        self, ledger: SqlLedger, executor: Executor, store: ResultStore, settings: JobSettings
    ) -> None:
        self.ledger = ledger
        self.executor = executor
        self.store = store
        self.settings = settings
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._running: dict[str, asyncio.Task[None]] = {}
        self._live: dict[str, Progress] = {}
        self._rate: dict[str, tuple[float, int]] = {}  # job → (time, tiles) when tiles began
        self._signals: dict[str, asyncio.Event] = {}
        self._wake = asyncio.Event()
        self._accepting = False
        self._loops: list[asyncio.Task[None]] = []

    # -- lifecycle
    async def start(self, recover_running: bool) -> None:
        """Recovers the ledger and starts dispatching once the executor is ready.

        ``recover_running``: requeue every RUNNING job now (safe when this server holds the
        ledger exclusively, as with SQLite); otherwise only jobs whose lease expired.
        """
        self.store.clean_scratch()
        if recover_running:
            for job in self.ledger.list_jobs([JobState.RUNNING], limit=1_000_000)[0]:
                if job.attempts >= job.max_attempts:  # it may be what kills the server
                    self.ledger.mark_failed(
                        job.job_id, None,
                        f"the server died during attempt {job.attempts} of {job.max_attempts}",
                    )
                else:
                    self.ledger.requeue(job.job_id, job.lease_owner or "", 0.0,
                                        "requeued at start-up")
        self.ledger.requeue_expired()
        self._accepting = True
        await self.executor.start()
        self._loops = [
            asyncio.create_task(self._dispatch_loop(), name="dispatch"),
            asyncio.create_task(self._heartbeat_loop(), name="heartbeat"),
        ]
        self._wake.set()

    async def shutdown(self, drain_s: float | None = None) -> None:
        """Stops accepting, lets running jobs finish for ``drain_s``, requeues the rest, stops."""
        self._accepting = False
        for loop in self._loops:
            loop.cancel()
        running = list(self._running.values())
        if running:
            await asyncio.wait(running, timeout=self.settings.drain_s if drain_s is None
                               else drain_s)
        for job in self.ledger.owned_by(self.owner):
            self.ledger.requeue(job.job_id, self.owner, 0.0, "requeued: server shut down",
                                refund_attempt=True)
            log.info("job %s requeued at shutdown", job.job_id)
        for task in self._running.values():
            task.cancel()
        await self.executor.stop()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._running.values(), *self._loops, return_exceptions=True)

    @property
    def accepting(self) -> bool:
        return self._accepting

    # -- commands
    def submit(self, request: JobRequest, key: str) -> tuple[Job, bool]:
        """Queues a job, or returns the one with this key (``created`` False)."""
        if not self._accepting:
            raise ServiceUnavailable("the server is not accepting jobs (starting or stopping)")
        existing = self.ledger.get_by_key(key)
        if existing is None:
            active = self.ledger.count_in(ACTIVE_STATES)
            if active >= self.settings.queue_limit:
                raise ResourceExhausted(
                    f"the job queue is full ({active} of {self.settings.queue_limit}); retry later"
                )
        job, created = self.ledger.insert_or_get(
            uuid.uuid4().hex, key, request, self.settings.max_attempts
        )
        if not created and job.request != request:
            raise JobStateConflict(
                f"idempotency key already used by job {job.job_id} for a different request"
            )
        if created:
            log.info("job %s queued (%s)", job.job_id, request.reference_label)
            self._wake.set()
        return self._with_live(job), created

    def get(self, job_id: str) -> Job:
        job = self.ledger.get(job_id)
        if job is None:
            raise JobNotFound(f"no job with id {job_id!r}")
        return self._with_live(job)

    def cancel(self, job_id: str) -> Job:
        job = self.get(job_id)
        if job.state.terminal:
            raise JobStateConflict(f"job {job_id} is already {job.state.value}")
        after = self.ledger.request_cancel(job_id)
        self.executor.cancel(job_id)
        self._changed(job_id)
        assert after is not None
        log.info("job %s cancel requested", job_id)
        return self._with_live(after)

    def list(
        self, states: Sequence[JobState], page_size: int, page_token: str
    ) -> tuple[list[Job], str]:
        jobs, token = self.ledger.list_jobs(states, page_size, page_token)
        return [self._with_live(j) for j in jobs], token

    async def watch(self, job_id: str, poll_s: float = 2.0) -> AsyncIterator[Job]:
        """Yields the job now and after every change, ending after its terminal state."""
        last: Job | None = None
        while True:
            signal = self._signals.setdefault(job_id, asyncio.Event())
            job = self.get(job_id)
            if last is None or _visible(job) != _visible(last):
                yield job
                last = job
            if job.state.terminal:
                if self._signals.get(job_id) is signal and job_id not in self._running:
                    del self._signals[job_id]  # no further change will come
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(signal.wait(), poll_s)

    def artifact(self, job_id: str, name: str) -> Path:
        job = self.get(job_id)
        if job.state is not JobState.DONE:
            raise JobStateConflict(f"job {job_id} is {job.state.value}; artifacts exist once DONE")
        path = self.store.artifact_path(job_id, name) if name in job.artifacts else None
        if path is None:
            raise JobNotFound(
                f"job {job_id} has no artifact {name!r} (has: {', '.join(job.artifacts)})"
            )
        return path

    # -- dispatch
    async def _dispatch_loop(self) -> None:
        while True:
            self._wake.clear()
            while self._accepting and self.executor.free_slots() > 0:
                job = self.ledger.claim_next(self.owner, self.settings.lease_s)
                if job is None:
                    break
                self._start_job(job)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.poll_s)

    def _start_job(self, job: Job) -> None:
        if job.cancel_requested:
            self.ledger.mark_cancelled(job.job_id, self.owner)
            self._changed(job.job_id)
            return
        done = published_result(self.store.job_dir(job.job_id))
        if done is not None:  # an earlier attempt published, then its server or worker died
            self._finish_done(job.job_id, summary_from_result(done),
                              list_artifacts(self.store.job_dir(job.job_id)))
            return
        task = Task(
            job_id=job.job_id,
            attempt=job.attempts,
            request=job.request,
            out_dir=self.store.job_dir(job.job_id),
            work_dir=self.store.work_dir(job.job_id, job.attempts, self.owner),
        )
        self._live[job.job_id] = Progress(stage="starting")
        self._changed(job.job_id)
        log.info("job %s running (attempt %d)", job.job_id, job.attempts)
        outcome = self.executor.start_task(task, lambda p: self._on_progress(job.job_id, p))
        self._running[job.job_id] = asyncio.create_task(self._run(job, task, outcome))

    async def _run(self, job: Job, task: Task, pending: asyncio.Future[TaskOutcome]) -> None:
        try:
            try:
                outcome = await pending
            except Exception as exc:  # noqa: BLE001 - an executor fault is a retryable loss
                log.error("executor failed on job %s: %s", job.job_id, type(exc).__name__)
                outcome = TaskOutcome("lost", message="executor error", retryable=True)
            last = self._live.get(job.job_id)
            if last is not None:  # keep the final stage and tile counts in the ledger
                self.ledger.heartbeat(job.job_id, self.owner, self.settings.lease_s, last)
            self._record(job, outcome)
            if outcome.status == "lost":  # the dead worker could not clean its scratch
                shutil.rmtree(task.work_dir, ignore_errors=True)
        finally:
            self._running.pop(job.job_id, None)
            self._live.pop(job.job_id, None)
            self._rate.pop(job.job_id, None)
            self._changed(job.job_id)
            self._wake.set()

    def _record(self, job: Job, outcome: TaskOutcome) -> None:
        job_id = job.job_id
        if outcome.status == "done":
            self._finish_done(job_id, outcome.summary or {}, outcome.artifacts)
        elif outcome.status == "cancelled":
            self.ledger.mark_cancelled(job_id, self.owner)
            log.info("job %s cancelled", job_id)
        elif not outcome.retryable:
            self.ledger.mark_failed(job_id, self.owner, f"{outcome.error_code}: {outcome.message}")
            log.info("job %s failed (%s)", job_id, outcome.error_code)
        elif job.attempts >= job.max_attempts:
            self.ledger.mark_failed(
                job_id, self.owner,
                f"gave up after {job.attempts} attempts; last: {outcome.message}",
            )
            log.warning("job %s failed after %d attempts", job_id, job.attempts)
        elif self._accepting:
            delay = min(self.settings.backoff_max_s,
                        self.settings.backoff_s * 2 ** (job.attempts - 1))
            self.ledger.requeue(job_id, self.owner, delay, f"retrying: {outcome.message}")
            log.warning("job %s attempt %d %s; retry in %.1f s", job_id, job.attempts,
                        outcome.status, delay)

    def _finish_done(
        self, job_id: str, summary: dict[str, object], artifacts: Sequence[str]
    ) -> None:
        self.ledger.mark_done(job_id, self.owner, dict(summary), list(artifacts))
        self._changed(job_id)
        log.info("job %s done", job_id)

    async def _heartbeat_loop(self) -> None:
        interval = max(0.05, self.settings.lease_s / 3)
        while True:
            await asyncio.sleep(interval)
            for job_id in list(self._running):
                progress = self._live.get(job_id, Progress())
                if not self.ledger.heartbeat(job_id, self.owner, self.settings.lease_s, progress):
                    log.warning("job %s lost its lease; stopping it here", job_id)
                    self.executor.cancel(job_id)
                    continue
                row = self.ledger.get(job_id)
                if row is not None and row.cancel_requested:
                    self.executor.cancel(job_id)
            if self.ledger.requeue_expired():
                self._wake.set()

    # -- progress
    def _on_progress(self, job_id: str, progress: Progress) -> None:
        now = time.monotonic()
        eta = None
        if progress.tiles_total > 0:
            start = self._rate.setdefault(job_id, (now, progress.tiles_done))
            done_since = progress.tiles_done - start[1]
            if done_since > 0:
                per_tile = (now - start[0]) / done_since
                eta = max(0.0, per_tile * (progress.tiles_total - progress.tiles_done))
        self._live[job_id] = replace(progress, eta_s=eta)
        self._changed(job_id)

    def _with_live(self, job: Job) -> Job:
        live = self._live.get(job.job_id)
        return replace(job, progress=live) if live is not None and job.state is JobState.RUNNING \
            else job

    def _changed(self, job_id: str) -> None:
        signal = self._signals.pop(job_id, None)
        if signal is not None:
            signal.set()


def _visible(job: Job) -> tuple[object, ...]:
    """What a watcher sees change (ETA alone does not trigger an update)."""
    p = job.progress
    return (job.state, job.cancel_requested, p.stage, p.tiles_done, p.tiles_total, job.attempts)
