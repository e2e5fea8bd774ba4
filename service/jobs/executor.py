"""The executor interface: runs one analysis task somewhere and reports its outcome.

``LocalExecutor`` (worker processes on this machine) is the default; a Ray executor is a second
implementation of the same protocol. The manager owns the ledger; executors never touch it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from service.jobs.model import JobRequest, Progress

OutcomeStatus = Literal["done", "failed", "cancelled", "lost"]


@dataclass(frozen=True)
class Task:
    """One attempt of a job: write into ``work_dir``, then publish by renaming to ``out_dir``."""

    job_id: str
    attempt: int
    request: JobRequest
    out_dir: Path
    work_dir: Path


@dataclass(frozen=True)
class TaskOutcome:
    """How an attempt ended. ``lost`` (worker died) and retryable failures may be retried."""

    status: OutcomeStatus
    summary: dict[str, Any] | None = field(default=None, hash=False, compare=False)
    artifacts: tuple[str, ...] = ()
    error_code: str = ""
    message: str = ""
    retryable: bool = False


ProgressCallback = Callable[[Progress], None]


class Executor(Protocol):
    """Runs tasks with a fixed number of slots, each with the segmenter loaded once."""

    async def start(self) -> None:
        """Starts the workers and returns once every slot has loaded its segmenter."""

    @property
    def ready(self) -> bool: ...

    def free_slots(self) -> int:
        """Slots that can take a task now; ``start_task`` may be called that many times."""

    def start_task(self, task: Task, progress: ProgressCallback) -> asyncio.Future[TaskOutcome]:
        """Starts ``task`` on a free slot now and returns its outcome as a future; progress is
        reported on the event-loop thread."""

    def cancel(self, job_id: str) -> bool:
        """Asks the running task of ``job_id`` to stop between tiles; False if not running."""

    async def stop(self) -> None:
        """Stops every worker (running tasks end as ``lost``)."""
