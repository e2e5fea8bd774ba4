"""``AnalysisService``: a thin layer that maps protobuf to the job manager and back.

Domain errors propagate to :mod:`service.transports.grpc.errors`, which maps them to status codes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from service.config import ServerConfig
from service.domain.errors import InvalidInput
from service.jobs.errors import JobStateConflict, ServiceUnavailable
from service.jobs.manager import JobManager
from service.pipeline.params import AnalysisParams
from service.transports.grpc import mapping
from service.transports.grpc.stubs import pb, pb_grpc

Context = grpc.aio.ServicerContext[Any, Any]
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


class AnalysisServicer(pb_grpc.AnalysisServiceServicer):  # type: ignore[misc]
    def __init__(
        self,
        manager: JobManager,
        config: ServerConfig,
        model_identity: Callable[[AnalysisParams], str],
    ) -> None:
        self._manager = manager
        self._config = config
        self._model_identity = model_identity

    async def SubmitAnalysis(self, request: Any, context: Context) -> Any:  # noqa: N802
        job_request, key = mapping.job_request_from_proto(
            request, self._config, self._model_identity
        )
        job, created = self._manager.submit(job_request, key)
        return pb.SubmitAnalysisResponse(
            job_id=job.job_id, state=mapping.state_to_proto(job.state), created=created
        )

    async def GetAnalysis(self, request: Any, context: Context) -> Any:  # noqa: N802
        return pb.GetAnalysisResponse(job=mapping.job_to_proto(self._manager.get(request.job_id)))

    async def WatchAnalysis(self, request: Any, context: Context) -> AsyncIterator[Any]:  # noqa: N802
        finished = False
        try:
            async with asyncio.timeout(self._config.max_watch_s):
                async for job in self._manager.watch(request.job_id):
                    finished = job.state.terminal
                    yield pb.WatchAnalysisResponse(job=mapping.job_to_proto(job))
        except TimeoutError as exc:
            raise ServiceUnavailable(
                f"watch ended after the server's limit of {self._config.max_watch_s:.0f} s; "
                "watch again"
            ) from exc
        except asyncio.CancelledError:
            if request.cancel_on_disconnect and not finished:
                with contextlib.suppress(JobStateConflict):
                    self._manager.cancel(request.job_id)
            raise

    async def CancelAnalysis(self, request: Any, context: Context) -> Any:  # noqa: N802
        job = self._manager.cancel(request.job_id)
        return pb.CancelAnalysisResponse(job=mapping.job_to_proto(job))

    async def ListAnalyses(self, request: Any, context: Context) -> Any:  # noqa: N802
        if request.page_size < 0:
            raise InvalidInput("page_size must not be negative")
        size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        states = [mapping.state_from_proto(s) for s in request.states]
        jobs, token = self._manager.list(states, size, request.page_token)
        return pb.ListAnalysesResponse(
            jobs=[mapping.job_to_proto(j) for j in jobs], next_page_token=token
        )

    async def GetArtifact(self, request: Any, context: Context) -> AsyncIterator[Any]:  # noqa: N802
        path = self._manager.artifact(request.job_id, request.name)
        chunk = self._config.artifact_chunk_bytes
        total = path.stat().st_size
        with path.open("rb") as handle:
            offset = 0
            while True:
                # file reads off the event loop: a slow disk must not stall other calls
                data = await asyncio.to_thread(handle.read, chunk)
                if not data:
                    break
                yield pb.GetArtifactResponse(data=data, offset=offset, total_size=total)
                offset += len(data)
        if total == 0:
            yield pb.GetArtifactResponse(data=b"", offset=0, total_size=0)
