"""What the PACS router needs from the job service and from the PACS it stores results into."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from pydicom.dataset import Dataset


@dataclass(frozen=True)
class SeriesToAnalyse:
    """A received series: its spool folder and the digest of exactly which instances it holds."""

    series_key: str
    study_uid: str
    series_uid: str
    directory: Path
    content_digest: str


class JobPhase(StrEnum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class JobStatus:
    phase: JobPhase
    artifacts: tuple[str, ...] = ()
    error: str = ""


class JobSubmitter(Protocol):
    """Submits analyses and reports on them; submitting the same series twice is idempotent."""

    def submit(self, series: SeriesToAnalyse) -> str:
        """Queues the analysis and returns its job id without waiting for it."""
        ...

    def poll(self, job_id: str) -> JobStatus: ...

    def fetch(self, job_id: str, name: str) -> bytes:
        """The bytes of one artifact of a finished job (e.g. ``sr.dcm``)."""
        ...


class ResultStore(Protocol):
    """A PACS that results are stored into (STOW-RS or C-STORE)."""

    @property
    def name(self) -> str: ...

    def exists(self, study_uid: str, series_uid: str, sop_instance_uid: str) -> bool: ...

    def store(self, datasets: Sequence[Dataset]) -> object: ...
