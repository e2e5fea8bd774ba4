"""A JobSubmitter backed by `marrowscope serve` through ``service.client.AnalysisClient``.

The spool folder of a series is submitted as a file slide, so the server's slide roots must
include the SCP's spool folder. The idempotency key is derived from the series content, the
segmenter and the outputs: re-routing the same series returns the same job, hence the same
result UIDs.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Any

from service.domain.errors import InvalidInput
from service.pacs.ports import JobPhase, JobStatus, SeriesToAnalyse


class GrpcJobSubmitter:
    def __init__(
        self,
        target: str,
        token_file: Path | None = None,
        outputs: tuple[str, ...] = ("sr", "ann"),
        segmenter: str = "",
        timeout_s: float = 30.0,
        client: Any | None = None,
    ) -> None:
        from service.client import AnalysisClient

        token = None
        if token_file is not None:
            try:
                token = Path(token_file).read_text().strip()
            except OSError as exc:
                raise InvalidInput(f"cannot read token file {token_file}: {exc.strerror}") from exc
        self._client = client or AnalysisClient(target, token, timeout_s=timeout_s)
        self._outputs = outputs
        self._segmenter = segmenter

    def idempotency_key(self, series: SeriesToAnalyse) -> str:
        text = "|".join(
            ["pacs", series.content_digest, self._segmenter, ",".join(sorted(self._outputs))]
        )
        return "pacs-" + hashlib.sha256(text.encode()).hexdigest()[:40]

    def submit(self, series: SeriesToAnalyse) -> str:
        submitted = self._client.submit(
            str(series.directory), outputs=self._outputs, segmenter=self._segmenter,
            idempotency_key=self.idempotency_key(series),
        )
        return str(submitted.job_id)

    def poll(self, job_id: str) -> JobStatus:
        job = self._client.get(job_id)
        if job.state == "DONE":
            return JobStatus(JobPhase.DONE, tuple(job.artifacts))
        if job.state in ("FAILED", "CANCELLED"):
            return JobStatus(JobPhase.FAILED, error=job.failure_reason or job.state.lower())
        return JobStatus(JobPhase.RUNNING)

    def fetch(self, job_id: str, name: str) -> bytes:
        with tempfile.TemporaryDirectory(prefix="marrowscope-artifact-") as tmp:
            path = self._client.download(job_id, name, Path(tmp) / "artifact")
            return Path(path).read_bytes()

    def close(self) -> None:
        self._client.close()
