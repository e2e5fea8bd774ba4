"""Routing use case: stable series → analysis job → SR/ANN(/SEG) stored back into its study.

Each pass over the ledger moves every due route one step, so many jobs run concurrently in the
job service while one thread drives them:

    PENDING --submit--> SUBMITTED --done--> fetch artifacts --QIDO check, store--> STORED
    failed job, timeout or store error --> retry with exponential backoff, or FAILED

A route is STORED only after the PACS accepted every result. Result UIDs derive from the job key,
and each instance is looked up in the PACS before it is sent, so a restart or a re-routed series
never produces a second copy.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pydicom import dcmread
from pydicom.dataset import Dataset

from service.domain.errors import MarrowscopeError, OutputError
from service.pacs.ledger import Route, RouteState, RoutingLedger
from service.pacs.ports import JobPhase, JobSubmitter, ResultStore, SeriesToAnalyse

LOG = logging.getLogger(__name__)

DICOM_OUTPUTS = ("sr", "ann", "seg")


class StableSeries(Protocol):
    """What the SCP announces (``service.transports.scp_spool.SpooledSeries`` fits)."""

    @property
    def series_key(self) -> str: ...
    @property
    def study_uid(self) -> str: ...
    @property
    def series_uid(self) -> str: ...
    @property
    def directory(self) -> Path: ...
    @property
    def content_digest(self) -> str: ...


@dataclass(frozen=True)
class RouterPolicy:
    """``outputs``: which DICOM results to store back (a subset of sr, ann, seg)."""

    outputs: tuple[str, ...] = ("sr", "ann")
    max_attempts: int = 5
    backoff_s: float = 2.0
    max_backoff_s: float = 300.0
    poll_interval_s: float = 0.5
    job_timeout_s: float = 3600.0

    def __post_init__(self) -> None:
        unknown = set(self.outputs) - set(DICOM_OUTPUTS)
        if unknown or not self.outputs:
            raise OutputError(f"PACS outputs must be among {DICOM_OUTPUTS}, got {self.outputs}")

    def retry_delay(self, attempts: int) -> float:
        return float(min(self.max_backoff_s, self.backoff_s * 2 ** max(attempts, 0)))


class PacsRouter:
    """Drives routes from the ledger; ``on_stable`` is the SCP's stable-series handler."""

    def __init__(
        self,
        ledger: RoutingLedger,
        submitter: JobSubmitter,
        store: ResultStore,
        policy: RouterPolicy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ledger = ledger
        self.submitter = submitter
        self.store = store
        self.policy = policy or RouterPolicy()
        self._clock = clock
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- SCP hook ---------------------------------------------------------------------------
    def on_stable(self, series: StableSeries) -> None:
        """Records a stable series announced by the SCP."""
        item = SeriesToAnalyse(
            series.series_key, series.study_uid, series.series_uid, series.directory,
            series.content_digest,
        )
        state = self.ledger.enqueue(item, self._clock())
        if state is RouteState.STORED:
            LOG.info("series %s: results already stored; nothing to do", item.series_key)
        self._wake.set()

    # -- one step per route -----------------------------------------------------------------
    def process_due(self) -> int:
        """Advances every due route by one step; returns how many routes were touched."""
        routes = self.ledger.due(self._clock())
        for route in routes:
            try:
                self._step(route)
            except Exception as exc:  # one bad route must not stop the others
                LOG.exception("route %d failed unexpectedly", route.route_id)
                self._fail(route, f"unexpected: {exc}", resubmit=True)
        return len(routes)

    def _step(self, route: Route) -> None:
        now = self._clock()
        if route.state is RouteState.PENDING or route.job_id is None:
            try:
                job_id = self.submitter.submit(route.series)
            except MarrowscopeError as exc:
                self._fail(route, f"submit: {exc}", resubmit=True)
                return
            self.ledger.mark_submitted(route.route_id, job_id, now, now)
            LOG.info("series %s submitted as job %s", route.series.series_key, job_id)
            return
        status = self.submitter.poll(route.job_id)
        if status.phase is JobPhase.RUNNING:
            started = route.submitted_at if route.submitted_at is not None else now
            if now - started > self.policy.job_timeout_s:
                self._fail(route, "job timed out", resubmit=True)
            else:
                self.ledger.poll_later(route.route_id, now + self.policy.poll_interval_s)
            return
        if status.phase is JobPhase.FAILED:
            self._fail(route, f"job {route.job_id} failed: {status.error}", resubmit=True)
            return
        try:
            self._store_results(route, route.job_id)
        except MarrowscopeError as exc:
            self._fail(route, f"store: {exc}", resubmit=False)
            return
        self.ledger.mark_stored(route.route_id)
        LOG.info("series %s: results stored via %s", route.series.series_key, self.store.name)

    def _fail(self, route: Route, error: str, resubmit: bool) -> None:
        attempts = route.attempts + 1
        if attempts >= self.policy.max_attempts:
            LOG.error("series %s: giving up after %d attempts: %s",
                      route.series.series_key, attempts, error)
            self.ledger.mark_attempt_failed(route.route_id, error, None, resubmit)
            return
        retry_at = self._clock() + self.policy.retry_delay(route.attempts)
        LOG.warning("series %s: attempt %d failed (%s); retrying", route.series.series_key,
                    attempts, error)
        self.ledger.mark_attempt_failed(route.route_id, error, retry_at, resubmit)

    def _store_results(self, route: Route, job_id: str) -> None:
        datasets = [self._load(job_id, name) for name in self.policy.outputs]
        for ds in datasets:
            if str(ds.StudyInstanceUID) != route.series.study_uid:
                raise OutputError(
                    f"job {job_id}: a result belongs to another study than the slide; "
                    "refusing to store it"
                )
        missing = [
            ds for ds in datasets
            if not self.store.exists(
                str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)
            )
        ]
        if missing:
            self.store.store(missing)

    def _load(self, job_id: str, output: str) -> Dataset:
        data = self.submitter.fetch(job_id, f"{output}.dcm")
        try:
            return dcmread(io.BytesIO(data))
        except Exception as exc:
            raise OutputError(f"artifact {output}.dcm of job {job_id} is not DICOM: {exc}") from exc

    # -- background loop ----------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="pacs-router", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.process_due()
            self._wake.wait(self.policy.poll_interval_s)
            self._wake.clear()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def wait_idle(self, timeout_s: float) -> bool:
        """True once no route is PENDING or SUBMITTED (tests, benchmarks)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            counts = self.ledger.counts()
            if not counts.get(RouteState.PENDING.value) and not counts.get(
                RouteState.SUBMITTED.value
            ):
                return True
            time.sleep(0.2)
        return False
