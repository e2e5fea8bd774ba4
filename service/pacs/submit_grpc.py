"""A JobSubmitter that talks to `marrowscope serve` over gRPC (Submit, Get, GetArtifact).

The spool folder of a series is submitted as a file slide, so the server's slide roots must
include the SCP's spool folder. The idempotency key is derived from the series content and the
parameters: re-routing the same series returns the same job, hence the same result UIDs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from service.domain.errors import InvalidInput, OutputError
from service.pacs.ports import JobPhase, JobStatus, SeriesToAnalyse


class GrpcJobSubmitter:
    def __init__(
        self,
        target: str,
        token_file: Path | None = None,
        outputs: tuple[str, ...] = ("sr", "ann"),
        segmenter: str = "",
        timeout_s: float = 30.0,
        channel: Any | None = None,
    ) -> None:
        import grpc

        from service.transports.grpc.stubs import pb, pb_grpc

        self._pb = pb
        self._grpc = grpc
        token = ""
        if token_file is not None:
            try:
                token = Path(token_file).read_text().strip()
            except OSError as exc:
                raise InvalidInput(f"cannot read token file {token_file}: {exc.strerror}") from exc
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._channel = channel or grpc.insecure_channel(target)
        self._stub = pb_grpc.AnalysisServiceStub(self._channel)
        self._outputs = outputs
        self._segmenter = segmenter
        self._timeout_s = timeout_s

    def _idempotency_key(self, series: SeriesToAnalyse) -> str:
        text = "|".join(
            ["pacs", series.content_digest, self._segmenter, ",".join(sorted(self._outputs))]
        )
        return "pacs-" + hashlib.sha256(text.encode()).hexdigest()[:40]

    def _call(self, method: Any, request: Any) -> Any:
        try:
            return method(request, timeout=self._timeout_s, metadata=self._metadata)
        except self._grpc.RpcError as exc:
            raise OutputError(f"gRPC {exc.code().name}: {exc.details()}") from exc

    def submit(self, series: SeriesToAnalyse) -> str:
        pb = self._pb
        request = pb.SubmitAnalysisRequest(
            slide=pb.SlideReference(file=pb.FileSlide(path=str(series.directory))),
            outputs=list(self._outputs),
            parameters=pb.AnalysisParameters(segmenter=self._segmenter),
            idempotency_key=self._idempotency_key(series),
        )
        return str(self._call(self._stub.SubmitAnalysis, request).job_id)

    def poll(self, job_id: str) -> JobStatus:
        pb = self._pb
        job = self._call(self._stub.GetAnalysis, pb.GetAnalysisRequest(job_id=job_id)).job
        if job.state == pb.JOB_STATE_DONE:
            return JobStatus(JobPhase.DONE, tuple(job.summary.artifacts))
        if job.state in (pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED):
            return JobStatus(JobPhase.FAILED, error=job.failure_reason or "cancelled")
        return JobStatus(JobPhase.RUNNING)

    def fetch(self, job_id: str, name: str) -> bytes:
        pb = self._pb
        chunks: list[bytes] = []
        try:
            for part in self._stub.GetArtifact(
                pb.GetArtifactRequest(job_id=job_id, name=name),
                timeout=self._timeout_s * 4, metadata=self._metadata,
            ):
                chunks.append(bytes(part.data))
        except self._grpc.RpcError as exc:
            raise OutputError(f"gRPC {exc.code().name}: {exc.details()}") from exc
        return b"".join(chunks)

    def close(self) -> None:
        self._channel.close()
