"""The routing state machine without a PACS: retries with backoff, giving up, re-routing."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from service.domain.errors import OutputError
from service.pacs.ledger import RouteState, RoutingLedger
from service.pacs.ports import JobPhase, JobStatus, SeriesToAnalyse
from service.pacs.router import PacsRouter, RouterPolicy


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FailingSubmitter:
    def __init__(self, phase: JobPhase) -> None:
        self.phase = phase
        self.submits = 0

    def submit(self, series: SeriesToAnalyse) -> str:
        self.submits += 1
        return f"job-{self.submits}"

    def poll(self, job_id: str) -> JobStatus:
        return JobStatus(self.phase, error="segmenter exploded")

    def fetch(self, job_id: str, name: str) -> bytes:
        raise OutputError("no artifacts")


class NoStore:
    name = "none"

    def exists(self, study_uid: str, series_uid: str, sop_instance_uid: str) -> bool:
        return False

    def store(self, datasets: Sequence[Dataset]) -> object:
        raise AssertionError("nothing should be stored")


SERIES = SeriesToAnalyse("key1", "1.2.3", "1.2.4", Path("/spool/series/key1"), "digest1")


@pytest.fixture
def ledger(tmp_path: Path) -> RoutingLedger:
    return RoutingLedger(tmp_path / "routing.sqlite")


def test_failed_jobs_are_retried_with_growing_backoff_then_given_up(
    ledger: RoutingLedger,
) -> None:
    clock = Clock()
    submitter = FailingSubmitter(JobPhase.FAILED)
    policy = RouterPolicy(max_attempts=3, backoff_s=10, poll_interval_s=0)
    router = PacsRouter(ledger, submitter, NoStore(), policy, clock=clock)
    router.on_stable(SERIES)
    router.process_due()  # submit
    router.process_due()  # poll: failed → retry later
    (route,) = ledger.due(clock.now + 10_000)
    assert route.state is RouteState.PENDING
    assert route.attempts == 1
    assert not ledger.due(clock.now + policy.retry_delay(0) - 1)  # backing off
    for _ in range(10):
        clock.now += 10_000
        router.process_due()
    assert ledger.counts() == {"FAILED": 1}
    assert submitter.submits == 3
    assert policy.retry_delay(0) < policy.retry_delay(1) < policy.retry_delay(2)


def test_a_failed_series_routed_again_is_retried_afresh(ledger: RoutingLedger) -> None:
    clock = Clock()
    router = PacsRouter(ledger, FailingSubmitter(JobPhase.FAILED), NoStore(),
                        RouterPolicy(max_attempts=1), clock=clock)
    router.on_stable(SERIES)
    router.process_due()
    router.process_due()
    assert ledger.counts() == {"FAILED": 1}
    assert ledger.enqueue(SERIES, clock.now) is RouteState.PENDING


def test_same_series_content_is_one_route(ledger: RoutingLedger) -> None:
    ledger.enqueue(SERIES)
    ledger.enqueue(SERIES)
    assert ledger.counts() == {"PENDING": 1}
    changed = SeriesToAnalyse(SERIES.series_key, SERIES.study_uid, SERIES.series_uid,
                              SERIES.directory, "digest2")
    ledger.enqueue(changed)  # an instance was added: analysed again
    assert ledger.counts() == {"PENDING": 2}


def test_router_policy_rejects_non_dicom_outputs() -> None:
    with pytest.raises(OutputError):
        RouterPolicy(outputs=("geojson",))
