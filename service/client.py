"""A small synchronous Python client of ``marrowscope.v1.AnalysisService``.

    with AnalysisClient("127.0.0.1:50051", token="...") as client:
        job = client.submit(path="/slides/a.svs", segmenter="classical")
        for update in client.watch(job.job_id):
            print(update.state, update.tiles_done, update.tiles_total)
        client.download(job.job_id, "result.json", Path("result.json"))

gRPC errors become the domain errors the CLI already maps to exit codes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from service.domain.errors import (
    InvalidInput,
    MarrowscopeError,
    PermissionDenied,
    ResourceExhausted,
)
from service.jobs.errors import JobNotFound, JobStateConflict, ServiceUnavailable, Unauthenticated
from service.transports.grpc.stubs import pb, pb_grpc

ERROR_FOR_STATUS: dict[grpc.StatusCode, type[MarrowscopeError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidInput,
    grpc.StatusCode.NOT_FOUND: JobNotFound,
    grpc.StatusCode.FAILED_PRECONDITION: JobStateConflict,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAVAILABLE: ServiceUnavailable,
}
TERMINAL = frozenset({"DONE", "FAILED", "CANCELLED"})
FAT_METHODS = {"robust": pb.FAT_METHOD_ROBUST, "seed": pb.FAT_METHOD_SEED}


class ServerError(MarrowscopeError):
    """A gRPC status without a domain equivalent (INTERNAL, DEADLINE_EXCEEDED, …)."""

    code = "server_error"


def _domain_error(exc: grpc.RpcError) -> MarrowscopeError:
    code: grpc.StatusCode = exc.code()
    details: str = exc.details() or code.name
    cls = ERROR_FOR_STATUS.get(code, ServerError)
    error = cls(details if cls is not ServerError else f"{code.name}: {details}")
    error.status = code  # type: ignore[attr-defined]
    return error


@dataclass(frozen=True)
class JobInfo:
    """A job as the client sees it; ``state`` is QUEUED/RUNNING/DONE/FAILED/CANCELLED."""

    job_id: str
    state: str
    stage: str = ""
    tiles_done: int = 0
    tiles_total: int = 0
    eta_s: float | None = None
    attempts: int = 0
    failure_reason: str = ""
    cancel_requested: bool = False
    summary: dict[str, Any] | None = field(default=None, hash=False, compare=False)
    artifacts: tuple[str, ...] = ()

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    @classmethod
    def from_proto(cls, job: Any) -> JobInfo:
        summary = None
        if job.HasField("summary"):
            s = job.summary
            summary = {
                "cellularity_pct": s.cellularity_pct if s.HasField("cellularity_pct") else None,
                "cell_coverage_pct": s.cell_coverage_pct,
                "adipocyte_ratio_pct":
                    s.adipocyte_ratio_pct if s.HasField("adipocyte_ratio_pct") else None,
                "marrow_area_mm2": s.marrow_area_mm2,
                "qc_flags": list(s.qc_flags),
                "warnings": list(s.warnings),
                "elapsed_s": s.elapsed_seconds,
                "segmenter": s.segmenter,
            }
        progress = job.progress
        return cls(
            job_id=job.job_id,
            state=pb.JobState.Name(job.state).removeprefix("JOB_STATE_"),
            stage=progress.stage,
            tiles_done=progress.tiles_done,
            tiles_total=progress.tiles_total,
            eta_s=progress.eta_seconds if progress.HasField("eta_seconds") else None,
            attempts=job.attempts,
            failure_reason=job.failure_reason,
            cancel_requested=job.cancel_requested,
            summary=summary,
            artifacts=tuple(job.summary.artifacts) if summary is not None else (),
        )


@dataclass(frozen=True)
class Submitted:
    job_id: str
    state: str
    created: bool


def _read(path: Path | None) -> bytes | None:
    return None if path is None else Path(path).read_bytes()


class AnalysisClient:
    """Blocking client; one channel, bearer token on every call, per-call deadline."""

    def __init__(
        self,
        target: str,
        token: str | None = None,
        *,
        tls_ca: Path | None = None,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
        timeout_s: float = 30.0,
        channel: grpc.Channel | None = None,
    ) -> None:
        options = [("grpc.max_receive_message_length", 8 * 1024 * 1024)]
        if channel is not None:
            self._channel = channel
        elif tls_ca is not None or tls_cert is not None:
            creds = grpc.ssl_channel_credentials(_read(tls_ca), _read(tls_key), _read(tls_cert))
            self._channel = grpc.secure_channel(target, creds, options=options)
        else:
            self._channel = grpc.insecure_channel(target, options=options)
        self._stub = pb_grpc.AnalysisServiceStub(self._channel)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._timeout_s = timeout_s

    def __enter__(self) -> AnalysisClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(self, method: Any, request: Any) -> Any:
        try:
            return method(request, timeout=self._timeout_s, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise _domain_error(exc) from None

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Blocks until the server's health check says SERVING (the segmenter is loaded)."""
        import time

        from grpc_health.v1 import health_pb2, health_pb2_grpc

        stub = health_pb2_grpc.HealthStub(self._channel)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise ServiceUnavailable(f"server not SERVING after {timeout_s:.0f} s")
            time.sleep(0.1)

    def submit(
        self,
        path: str | None = None,
        *,
        study_uid: str = "",
        series_uid: str = "",
        pacs: str = "",
        outputs: Sequence[str] = (),
        segmenter: str = "",
        model: str = "",
        fat_method: str = "",
        mpp: float | None = None,
        tile_size: int | None = None,
        overlap: int | None = None,
        tta: bool = False,
        idempotency_key: str = "",
    ) -> Submitted:
        """Submits a file slide (``path``) or a DICOMweb series (``study_uid``/``series_uid``)."""
        if path is not None:
            slide = pb.SlideReference(file=pb.FileSlide(path=str(path)))
        else:
            slide = pb.SlideReference(dicomweb=pb.DicomWebSlide(
                pacs=pacs, study_instance_uid=study_uid, series_instance_uid=series_uid))
        params = pb.AnalysisParameters(segmenter=segmenter, model=model, tta=tta)
        if fat_method:
            if fat_method not in FAT_METHODS:
                raise InvalidInput(f"unknown fat method {fat_method!r} (use robust or seed)")
            params.fat_method = FAT_METHODS[fat_method]
        if mpp is not None:
            params.mpp_override = mpp
        if tile_size is not None:
            params.tile_size = tile_size
        if overlap is not None:
            params.overlap = overlap
        reply = self._call(self._stub.SubmitAnalysis, pb.SubmitAnalysisRequest(
            slide=slide, outputs=list(outputs), parameters=params,
            idempotency_key=idempotency_key,
        ))
        return Submitted(reply.job_id, pb.JobState.Name(reply.state).removeprefix("JOB_STATE_"),
                         reply.created)

    def get(self, job_id: str) -> JobInfo:
        reply = self._call(self._stub.GetAnalysis, pb.GetAnalysisRequest(job_id=job_id))
        return JobInfo.from_proto(reply.job)

    def watch(
        self, job_id: str, cancel_on_disconnect: bool = False, timeout_s: float | None = None
    ) -> Iterator[JobInfo]:
        """Yields the job on every change until it ends (no deadline unless ``timeout_s``)."""
        call = self._stub.WatchAnalysis(
            pb.WatchAnalysisRequest(job_id=job_id, cancel_on_disconnect=cancel_on_disconnect),
            timeout=timeout_s, metadata=self._metadata,
        )
        try:
            for reply in call:
                yield JobInfo.from_proto(reply.job)
        except grpc.RpcError as exc:
            raise _domain_error(exc) from None
        finally:
            call.cancel()

    def cancel(self, job_id: str) -> JobInfo:
        reply = self._call(self._stub.CancelAnalysis, pb.CancelAnalysisRequest(job_id=job_id))
        return JobInfo.from_proto(reply.job)

    def list(
        self, states: Sequence[str] = (), page_size: int = 50, page_token: str = ""
    ) -> tuple[list[JobInfo], str]:
        request = pb.ListAnalysesRequest(
            page_size=page_size, page_token=page_token,
            states=[pb.JobState.Value(f"JOB_STATE_{s.upper()}") for s in states],
        )
        reply = self._call(self._stub.ListAnalyses, request)
        return [JobInfo.from_proto(j) for j in reply.jobs], reply.next_page_token

    def download(self, job_id: str, name: str, dest: Path) -> Path:
        """Streams artifact ``name`` into ``dest`` (written to a temp file, then renamed)."""
        dest = Path(dest)
        tmp = dest.with_name(dest.name + ".part")
        try:
            with tmp.open("wb") as handle:
                for chunk in self._stub.GetArtifact(
                    pb.GetArtifactRequest(job_id=job_id, name=name),
                    timeout=self._timeout_s * 10, metadata=self._metadata,
                ):
                    handle.write(chunk.data)
        except grpc.RpcError as exc:
            tmp.unlink(missing_ok=True)
            raise _domain_error(exc) from None
        tmp.replace(dest)
        return dest
