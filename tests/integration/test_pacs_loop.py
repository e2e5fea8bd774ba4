"""The whole PACS loop with the real pipeline and writers against a real Orthanc.

STOW a synthetic DICOM-WSI → Orthanc's Lua routes the SM series to our SCP → analysis (fast fake
segmenter) → SR + ANN stored into the same study → read back over QIDO/WADO-RS.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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
from adapters.pacs.dicomweb_session import build_dicomweb_client
from adapters.pacs.stow import DicomWebStore
from service.pacs.router import RouterPolicy
from service.pacs.submit_local import LocalJobSubmitter
from service.pipeline.params import AnalysisParams
from service.transports.scp_app import PacsService, build_pacs_service
from service.transports.scp_config import CallerRule, ScpConfig

pytestmark = [pytest.mark.orthanc, requires_orthanc]

REPO = Path(__file__).resolve().parents[2]
LUA = REPO / "deploy" / "orthanc" / "route_sm_series.lua"
PARAMS = AnalysisParams(segmenter="fake")


@pytest.fixture(scope="module")
def wsi_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("wsi")
    write_small_wsi(folder)
    return folder


@pytest.fixture(scope="module")
def expected_cellularity(wsi_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> float:
    from service.bootstrap import analyze_to_dir

    result = analyze_to_dir(str(wsi_dir), PARAMS, tmp_path_factory.mktemp("direct"))
    assert result.cellularity_pct is not None
    return result.cellularity_pct


def orthanc_store(orthanc: OrthancServer) -> DicomWebStore:
    return DicomWebStore(DicomWebServer("orthanc", orthanc.dicomweb_url, timeout_s=10))


@contextmanager
def routed_orthanc(tmp_path: Path, scp_port: int) -> Iterator[OrthancServer]:
    with start_orthanc(
        tmp_path / "orthanc", lua_script=LUA, stable_age_s=1,
        modalities={"marrowscope": ("MARROWSCOPE", "127.0.0.1", scp_port)},
    ) as orthanc:
        yield orthanc


def in_process_service(
    tmp_path: Path, port: int, orthanc: OrthancServer, outputs: tuple[str, ...] = ("sr", "ann")
) -> PacsService:
    submitter = LocalJobSubmitter(tmp_path / "results", PARAMS, outputs=outputs)
    return build_pacs_service(
        ScpConfig(spool_dir=tmp_path / "spool", port=port, stable_age_s=0.5, min_free_bytes=0,
                  allowed_callers=(CallerRule.parse("ORTHANC@127.0.0.1"),)),
        submitter, orthanc_store(orthanc),
        RouterPolicy(outputs=outputs, poll_interval_s=0.1, backoff_s=0.2),
    )


def stow(orthanc: OrthancServer, wsi_dir: Path) -> tuple[str, str]:
    datasets = [dcmread(p) for p in sorted(wsi_dir.glob("*.dcm"))]
    orthanc_store(orthanc).store(datasets)
    return str(datasets[0].StudyInstanceUID), str(datasets[0].SeriesInstanceUID)


def results_in_study(orthanc: OrthancServer, study: str, modality: str) -> list[dict[str, Any]]:
    client = build_dicomweb_client(DicomWebServer("orthanc", orthanc.dicomweb_url))
    found = client.search_for_instances(study_instance_uid=study,
                                        search_filters={"Modality": modality})
    return list(found)


def wait_for_results(orthanc: OrthancServer, study: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if results_in_study(orthanc, study, "SR") and results_in_study(orthanc, study, "ANN"):
            return
        time.sleep(0.25)
    raise AssertionError(f"no SR and ANN in the study after {timeout_s} s")


def sr_cellularity(sr: Dataset) -> float:
    from adapters.writers.dicom_common import CELLULARITY

    def walk(items: Any) -> Iterator[Dataset]:
        for item in items or []:
            yield item
            yield from walk(item.get("ContentSequence"))

    for item in walk(sr.ContentSequence):
        if item.get("ValueType") == "NUM" and \
                item.ConceptNameCodeSequence[0].CodeValue == CELLULARITY.value:
            return float(item.MeasuredValueSequence[0].NumericValue)
    raise AssertionError("no cellularity NUM item in the SR")


def test_stowed_slide_comes_back_with_sr_ann_and_seg_in_its_study(
    tmp_path: Path, wsi_dir: Path, expected_cellularity: float
) -> None:
    port = free_port()
    with routed_orthanc(tmp_path, port) as orthanc:
        service = in_process_service(tmp_path, port, orthanc, outputs=("sr", "ann", "seg"))
        service.start()
        try:
            study, series = stow(orthanc, wsi_dir)
            wait_for_results(orthanc, study)
            srs = results_in_study(orthanc, study, "SR")
            assert len(srs) == 1
            assert len(results_in_study(orthanc, study, "ANN")) == 1
            assert len(results_in_study(orthanc, study, "SEG")) == 1  # asked for
            sr_series = srs[0]["0020000E"]["Value"][0]
            sr_uid = srs[0]["00080018"]["Value"][0]
            client = build_dicomweb_client(DicomWebServer("orthanc", orthanc.dicomweb_url))
            sr = client.retrieve_instance(study, sr_series, sr_uid)  # WADO-RS
            assert sr_cellularity(sr) == pytest.approx(expected_cellularity, abs=0.01)
            assert str(sr.StudyInstanceUID) == study
            assert series != sr_series
        finally:
            service.stop()


def scp_command(tmp_path: Path, port: int) -> list[str]:
    return [
        sys.executable, "-m", "service.transports.cli", "scp",
        "--spool", str(tmp_path / "spool"), "--port", str(port), "--stable-s", "0.5",
        "--allow", "ORTHANC@127.0.0.1", "--store-to", "dicomweb:orthanc",
        "--segmenter", "fake", "--min-free-mb", "0",
    ]


def start_scp_process(tmp_path: Path, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    log = open(tmp_path / "scp.log", "ab")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(scp_command(tmp_path, port), cwd=REPO, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if b"listening on" in (tmp_path / "scp.log").read_bytes():
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise AssertionError((tmp_path / "scp.log").read_text())


def route_states(spool: Path) -> list[str]:
    db = spool / "routing.sqlite"
    if not db.exists():
        return []
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return [row[0] for row in conn.execute("SELECT state FROM routes")]


@pytest.mark.slow
def test_scp_killed_mid_job_completes_after_restart_with_one_sr(
    tmp_path: Path, wsi_dir: Path
) -> None:
    port = free_port()
    with routed_orthanc(tmp_path, port) as orthanc:
        config = tmp_path / "dicomweb.json"
        config.write_text(json.dumps({"servers": {"orthanc": {"url": orthanc.dicomweb_url}}}))
        env = {**os.environ, "MARROWSCOPE_DICOMWEB_CONFIG": str(config),
               "PYTHONPATH": str(REPO), "MARROWSCOPE_FAKE_BATCH_S": "30"}
        proc = start_scp_process(tmp_path, port, env)
        try:
            study, _ = stow(orthanc, wsi_dir)
            deadline = time.monotonic() + 30
            while "SUBMITTED" not in route_states(tmp_path / "spool"):
                assert time.monotonic() < deadline, (tmp_path / "scp.log").read_text()
                time.sleep(0.1)
            time.sleep(1.0)  # inside the (slowed) segmenter
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        assert not results_in_study(orthanc, study, "SR")

        env["MARROWSCOPE_FAKE_BATCH_S"] = "0"
        proc = start_scp_process(tmp_path, port, env)
        try:
            wait_for_results(orthanc, study)
            deadline = time.monotonic() + 10
            while route_states(tmp_path / "spool") != ["STORED"]:
                assert time.monotonic() < deadline, route_states(tmp_path / "spool")
                time.sleep(0.1)
        finally:
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(15)
        assert len(results_in_study(orthanc, study, "SR")) == 1
        assert len(results_in_study(orthanc, study, "ANN")) == 1
