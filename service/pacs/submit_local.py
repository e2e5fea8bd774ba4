"""A JobSubmitter that analyses in this process (worker threads), for a standalone SCP.

Results go to ``results_root/<job_id>/``; a folder is renamed into place only when complete, so
after a crash an unfinished job simply runs again. The job id is derived from the series
content and the parameters, so the same series submitted twice is one job.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from service.domain.errors import MarrowscopeError, OutputError
from service.pacs.ports import JobPhase, JobStatus, SeriesToAnalyse
from service.pipeline.params import AnalysisParams, OutputRequest
from service.ports.segmenters import Segmenter

LOG = logging.getLogger(__name__)


class LocalJobSubmitter:
    def __init__(
        self,
        results_root: Path,
        params: AnalysisParams,
        outputs: tuple[str, ...] = ("sr", "ann"),
        workers: int = 1,
    ) -> None:
        self.results_root = Path(results_root)
        self.results_root.mkdir(parents=True, exist_ok=True)
        self.params = params
        self.outputs = outputs
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pacs-analysis")
        self._futures: dict[str, Future[None]] = {}
        self._series: dict[str, SeriesToAnalyse] = {}
        self._lock = threading.Lock()
        self._segmenter: Segmenter | None = None

    def job_id(self, series: SeriesToAnalyse) -> str:
        key = json.dumps(
            [series.content_digest, dataclasses.asdict(self.params), sorted(self.outputs)],
            sort_keys=True, default=str,
        )
        return hashlib.sha256(key.encode()).hexdigest()[:32]

    def _done_dir(self, job_id: str) -> Path:
        return self.results_root / job_id

    def _loaded_segmenter(self) -> Segmenter:
        with self._lock:
            if self._segmenter is None:
                from service.bootstrap import build_segmenter

                segmenter = build_segmenter(self.params)
                segmenter.load()
                self._segmenter = segmenter
            return self._segmenter

    def _run(self, job_id: str, series: SeriesToAnalyse) -> None:
        from service.bootstrap import analyze_to_dir

        final = self._done_dir(job_id)
        if final.is_dir():
            return
        work = self.results_root / f".{job_id}.partial"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        analyze_to_dir(
            str(series.directory), self.params, work,
            OutputRequest(outputs=self.outputs), segmenter=self._loaded_segmenter(),
        )
        work.rename(final)

    def submit(self, series: SeriesToAnalyse) -> str:
        job_id = self.job_id(series)
        with self._lock:
            self._series[job_id] = series
            running = self._futures.get(job_id)
            if self._done_dir(job_id).is_dir() or (running is not None and not running.done()):
                return job_id
            self._futures[job_id] = self._pool.submit(self._run, job_id, series)
        return job_id

    def poll(self, job_id: str) -> JobStatus:
        if self._done_dir(job_id).is_dir():
            names = tuple(sorted(p.name for p in self._done_dir(job_id).iterdir()))
            return JobStatus(JobPhase.DONE, names)
        with self._lock:
            future = self._futures.get(job_id)
            series = self._series.get(job_id)
        if future is None:
            # Unknown after a restart and not finished: the router resubmits.
            return JobStatus(JobPhase.FAILED, error="job lost (restart); resubmitting")
        if not future.done():
            return JobStatus(JobPhase.RUNNING)
        exc = future.exception()
        if exc is None:
            return self.poll(job_id) if self._done_dir(job_id).is_dir() else JobStatus(
                JobPhase.FAILED, error="no results written"
            )
        message = str(exc) if isinstance(exc, MarrowscopeError) else f"{type(exc).__name__}: {exc}"
        LOG.warning("local job %s (series %s) failed: %s", job_id,
                    series.series_key if series else "?", message)
        with self._lock:
            self._futures.pop(job_id, None)
        return JobStatus(JobPhase.FAILED, error=message)

    def fetch(self, job_id: str, name: str) -> bytes:
        path = self._done_dir(job_id) / name
        if "/" in name or name.startswith(".") or not path.is_file():
            raise OutputError(f"job {job_id} has no artifact {name!r}")
        return path.read_bytes()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
