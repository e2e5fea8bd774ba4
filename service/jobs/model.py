"""Job values shared by the ledger, the executors and the transports."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from service.pipeline.params import AnalysisParams, OutputRequest


class JobState(StrEnum):
    """QUEUED → RUNNING → DONE | FAILED | CANCELLED (RUNNING → QUEUED on requeue)."""

    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    DONE = "DONE"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in (JobState.DONE, JobState.FAILED, JobState.CANCELLED)


ACTIVE_STATES = (JobState.QUEUED, JobState.RUNNING)


@dataclass(frozen=True)
class JobRequest:
    """What to analyse: a resolved slide reference (realpath or DICOMweb URL) and parameters.

    ``reference_label`` is a PHI-free label for logs (kind and short hash), never the path.
    """

    reference: str
    reference_label: str
    params: AnalysisParams
    outputs: tuple[str, ...]

    def to_json(self) -> str:
        return json.dumps(
            {
                "reference": self.reference,
                "reference_label": self.reference_label,
                "params": dataclasses.asdict(self.params),
                "outputs": list(self.outputs),
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> JobRequest:
        data = json.loads(text)
        return cls(
            reference=data["reference"],
            reference_label=data["reference_label"],
            params=AnalysisParams(**data["params"]),
            outputs=tuple(data["outputs"]),
        )

    @property
    def output_request(self) -> OutputRequest:
        return OutputRequest(outputs=self.outputs)


@dataclass(frozen=True)
class Progress:
    """Where a running job is: pipeline stage and tiles done out of total (0 = unknown)."""

    stage: str = ""
    tiles_done: int = 0
    tiles_total: int = 0
    eta_s: float | None = None


@dataclass(frozen=True)
class Job:
    """One row of the ledger, plus live progress when the job is running here."""

    job_id: str
    idempotency_key: str
    state: JobState
    request: JobRequest
    attempts: int
    max_attempts: int
    created_at: float
    updated_at: float
    progress: Progress = Progress()
    failure_reason: str = ""
    cancel_requested: bool = False
    not_before: float = 0.0
    lease_owner: str | None = None
    lease_expires_at: float | None = None
    summary: dict[str, Any] | None = field(default=None, hash=False, compare=False)
    artifacts: tuple[str, ...] = ()
