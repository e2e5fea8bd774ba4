"""The PACS loop against a real Orthanc: routing, exactly-once storing, retries, C-STORE store.

Analysis is replaced by a stand-in submitter whose "results" are small DICOM instances with UIDs
derived from the job, so these tests check the loop itself in a few seconds each; the test with
the real pipeline is in ``test_pacs_loop.py``.
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
from orthanc_fixture import (
    OrthancServer,
    free_port,
    requires_orthanc,
    start_orthanc,
    write_small_wsi,
)
from pydicom import dcmread
from pydicom.dataset import Dataset

from adapters.pacs.config import DicomWebServer
from adapters.pacs.cstore_scu import CStoreSender, DicomPeer
from adapters.pacs.stow import DicomWebStore
from service.domain.errors import OutputError
from service.pacs.ledger import RouteState
from service.pacs.ports import JobPhase, JobStatus, ResultStore, SeriesToAnalyse
from service.pacs.router import RouterPolicy
from service.transports.scp_app import PacsService, build_pacs_service
from service.transports.scp_config import CallerRule, ScpConfig

pytestmark = [pytest.mark.orthanc, requires_orthanc]

LUA = Path(__file__).resolve().parents[2] / "deploy" / "orthanc" / "route_sm_series.lua"


def derived_uid(*parts: str) -> str:
    return "2.25." + str(int(hashlib.sha256("|".join(parts).encode()).hexdigest()[:30], 16))


class StandInSubmitter:
    """Finishes every job at once; its sr.dcm/ann.dcm are relabelled copies of a slide level."""

    def __init__(self) -> None:
        self.submitted: list[str] = []
        self.series: dict[str, SeriesToAnalyse] = {}

    def submit(self, series: SeriesToAnalyse) -> str:
        job_id = series.content_digest[:16]
        self.submitted.append(job_id)
        self.series[job_id] = series
        return job_id

    def poll(self, job_id: str) -> JobStatus:
        return JobStatus(JobPhase.DONE, ("ann.dcm", "sr.dcm"))

    def fetch(self, job_id: str, name: str) -> bytes:
        folder = self.series[job_id].directory
        smallest = min(folder.glob("*.dcm"), key=lambda p: p.stat().st_size)
        ds = dcmread(smallest)
        ds.Modality = name.split(".")[0].upper()  # SR / ANN: never routed again by the Lua
        ds.SeriesInstanceUID = derived_uid(job_id, name, "series")
        ds.SOPInstanceUID = derived_uid(job_id, name, "instance")
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)
        return out.getvalue()


class CountingStore:
    """Wraps a store; optionally 'crashes' right after the PACS accepted the first store."""

    def __init__(self, inner: ResultStore, crash_after_first_store: bool = False) -> None:
        self.inner = inner
        self.stores = 0
        self.crash = crash_after_first_store

    @property
    def name(self) -> str:
        return self.inner.name

    def exists(self, study_uid: str, series_uid: str, sop_instance_uid: str) -> bool:
        return self.inner.exists(study_uid, series_uid, sop_instance_uid)

    def store(self, datasets: Sequence[Dataset]) -> object:
        self.stores += 1
        self.inner.store(datasets)
        if self.crash:
            self.crash = False
            raise OutputError("simulated crash after the PACS accepted the results")
        return None


@pytest.fixture(scope="module")
def wsi_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_small_wsi(tmp_path_factory.mktemp("wsi"))


@contextmanager
def pacs_loop(
    tmp_path: Path, submitter: StandInSubmitter,
    make_store: Callable[[OrthancServer], ResultStore] | None = None,
) -> Iterator[tuple[OrthancServer, PacsService]]:
    port = free_port()
    with start_orthanc(
        tmp_path / "orthanc", lua_script=LUA, stable_age_s=1,
        modalities={"marrowscope": ("MARROWSCOPE", "127.0.0.1", port)},
    ) as orthanc:
        store = (make_store or stow_store)(orthanc)
        service = build_pacs_service(
            ScpConfig(spool_dir=tmp_path / "spool", port=port, stable_age_s=0.5,
                      allowed_callers=(CallerRule.parse("ORTHANC@127.0.0.1"),),
                      min_free_bytes=0),
            submitter, store, RouterPolicy(poll_interval_s=0.1, backoff_s=0.2),
        )
        service.start()
        try:
            yield orthanc, service
        finally:
            service.stop()


def stow_store(orthanc: OrthancServer) -> ResultStore:
    server = DicomWebServer("orthanc", orthanc.dicomweb_url, timeout_s=10, retries=2,
                            backoff_s=0.1)
    return DicomWebStore(server)


def stow_slide(orthanc: OrthancServer, files: list[Path]) -> None:
    stow_store(orthanc).store([dcmread(p) for p in files])


def wait_stored(service: PacsService, count: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if service.ledger.counts().get(RouteState.STORED.value, 0) >= count and \
                service.router.wait_idle(0.1):
            return
        time.sleep(0.1)
    raise AssertionError(f"not stored in time: {service.ledger.counts()}")


def route_again(orthanc: OrthancServer) -> None:
    series = orthanc.post_json("/tools/find", {"Level": "Series", "Query": {"Modality": "SM"}})
    orthanc.post_json("/modalities/marrowscope/store",
                      {"Resources": series, "Synchronous": True})


def test_routed_series_results_land_in_its_study(tmp_path: Path, wsi_files: list[Path]) -> None:
    submitter = StandInSubmitter()
    with pacs_loop(tmp_path, submitter) as (orthanc, service):
        stow_slide(orthanc, wsi_files)
        wait_stored(service, 1)
        study = str(dcmread(wsi_files[0], stop_before_pixels=True).StudyInstanceUID)
        for modality in ("SR", "ANN"):
            found = orthanc.instances_of_modality(modality)
            assert len(found) == 1
            parent_study = orthanc.get_json(f"/instances/{found[0]['ID']}/study")
            assert parent_study["MainDicomTags"]["StudyInstanceUID"] == study


def test_same_series_routed_three_times_stores_results_once(
    tmp_path: Path, wsi_files: list[Path]
) -> None:
    submitter = StandInSubmitter()
    with pacs_loop(tmp_path, submitter) as (orthanc, service):
        stow_slide(orthanc, wsi_files)
        wait_stored(service, 1)
        service.retention_s = 0.0  # prune the spool: the ledger still knows the series
        assert service.prune_spool(time.time() + 1) == 1
        assert not list((tmp_path / "spool" / "series").iterdir())
        route_again(orthanc)
        route_again(orthanc)
        time.sleep(1.5)  # > stable age: both re-routes announced and handled
        assert service.router.wait_idle(10)
        assert len(orthanc.instances_of_modality("SR")) == 1
        assert len(orthanc.instances_of_modality("ANN")) == 1
        assert len(set(submitter.submitted)) == 1


def test_results_accepted_before_a_crash_are_not_stored_again(
    tmp_path: Path, wsi_files: list[Path]
) -> None:
    submitter = StandInSubmitter()
    counting: list[CountingStore] = []

    def make_store(orthanc: OrthancServer) -> ResultStore:
        counting.append(CountingStore(stow_store(orthanc), crash_after_first_store=True))
        return counting[0]

    with pacs_loop(tmp_path, submitter, make_store) as (orthanc, service):
        stow_slide(orthanc, wsi_files)
        wait_stored(service, 1)
        assert counting[0].stores == 1  # the retry found both results via QIDO
        assert len(orthanc.instances_of_modality("SR")) == 1


def test_results_stored_with_c_store_scu(tmp_path: Path, wsi_files: list[Path]) -> None:
    def cstore(orthanc: OrthancServer) -> ResultStore:
        return CStoreSender(DicomPeer(orthanc.aet, "127.0.0.1", orthanc.dicom_port))

    with pacs_loop(tmp_path, StandInSubmitter(), cstore) as (orthanc, service):
        stow_slide(orthanc, wsi_files)
        wait_stored(service, 1)
        route_again(orthanc)
        time.sleep(1.5)
        assert service.router.wait_idle(10)
        assert len(orthanc.instances_of_modality("SR")) == 1
        assert len(orthanc.instances_of_modality("ANN")) == 1


def test_store_failure_is_retried_with_backoff(tmp_path: Path, wsi_files: list[Path]) -> None:
    class DownThenUp:
        def __init__(self, inner: ResultStore) -> None:
            self.inner, self.failures = inner, 2

        @property
        def name(self) -> str:
            return "flaky"

        def exists(self, study_uid: str, series_uid: str, sop_instance_uid: str) -> bool:
            if self.failures > 0:
                self.failures -= 1
                raise OutputError("PACS unreachable")
            return self.inner.exists(study_uid, series_uid, sop_instance_uid)

        def store(self, datasets: Sequence[Dataset]) -> object:
            return self.inner.store(datasets)

    with pacs_loop(tmp_path, StandInSubmitter(),
                   lambda o: DownThenUp(stow_store(o))) as (orthanc, service):
        stow_slide(orthanc, wsi_files)
        wait_stored(service, 1)
        assert len(orthanc.instances_of_modality("SR")) == 1
