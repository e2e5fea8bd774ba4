"""The PACS loop with jobs submitted to a real in-process `marrowscope serve` over gRPC."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from orthanc_fixture import free_port, requires_orthanc, start_orthanc, write_small_wsi
from pydicom import dcmread

from adapters.pacs.config import DicomWebServer
from adapters.pacs.stow import DicomWebStore
from service.pacs.ledger import RouteState
from service.pacs.router import RouterPolicy
from service.pacs.submit_grpc import GrpcJobSubmitter
from service.transports.scp_app import build_pacs_service
from service.transports.scp_config import CallerRule, ScpConfig

pytestmark = [pytest.mark.orthanc, pytest.mark.slow, requires_orthanc]

LUA = Path(__file__).resolve().parents[2] / "deploy" / "orthanc" / "route_sm_series.lua"
TOKEN = "pacs-admin-token-0123456789"


def test_routed_series_analysed_by_the_grpc_service_stores_one_sr(tmp_path: Path) -> None:
    from service.client import AnalysisClient
    from service.config import ServerConfig
    from service.transports.grpc.inprocess import ServerThread

    wsi = write_small_wsi(tmp_path / "wsi")
    spool = tmp_path / "spool"
    spool.mkdir()
    config = ServerConfig(
        host="127.0.0.1", port=0, data_dir=tmp_path / "data", slide_roots=(spool,),
        segmenter="fake", tokens=f"{TOKEN} admin pacs", workers=1, lease_s=2.0, backoff_s=0.2,
        drain_s=5.0,
    )
    scp_port = free_port()
    with ServerThread(config) as grpc_server, start_orthanc(
        tmp_path / "orthanc", lua_script=LUA, stable_age_s=1,
        modalities={"marrowscope": ("MARROWSCOPE", "127.0.0.1", scp_port)},
    ) as orthanc:
        grpc_server.wait_ready()
        client = AnalysisClient(f"127.0.0.1:{grpc_server.port}", TOKEN)
        store = DicomWebStore(DicomWebServer("orthanc", orthanc.dicomweb_url, timeout_s=10))
        service = build_pacs_service(
            ScpConfig(spool_dir=spool, port=scp_port, stable_age_s=0.5, min_free_bytes=0,
                      allowed_callers=(CallerRule.parse("ORTHANC@127.0.0.1"),)),
            GrpcJobSubmitter("unused", client=client, segmenter="fake"),
            store, RouterPolicy(poll_interval_s=0.2, backoff_s=0.2),
        )
        service.start()
        try:
            store.store([dcmread(p) for p in wsi])
            deadline = time.monotonic() + 90
            while service.ledger.counts().get(RouteState.STORED.value) != 1:
                assert time.monotonic() < deadline, (service.ledger.counts(), orthanc.log()[-800:])
                assert not service.ledger.counts().get(RouteState.FAILED.value)
                time.sleep(0.2)
            series = orthanc.post_json("/tools/find", {"Level": "Series",
                                                       "Query": {"Modality": "SM"}})
            orthanc.post_json("/modalities/marrowscope/store",
                              {"Resources": series, "Synchronous": True})
            time.sleep(1.5)
            assert service.router.wait_idle(30)
        finally:
            service.stop()
        assert len(orthanc.instances_of_modality("SR")) == 1
        assert len(orthanc.instances_of_modality("ANN")) == 1
        jobs, _ = AnalysisClient(f"127.0.0.1:{grpc_server.port}", TOKEN).list()
        assert len(jobs) == 1  # the re-route found the same job by its idempotency key


def test_submit_analysis_with_a_dicomweb_reference_reads_the_series_from_orthanc(
    tmp_path: Path,
) -> None:
    from service.client import AnalysisClient
    from service.config import ServerConfig
    from service.transports.grpc.inprocess import ServerThread

    wsi = write_small_wsi(tmp_path / "wsi")
    first = dcmread(wsi[0], stop_before_pixels=True)
    with start_orthanc(tmp_path / "orthanc") as orthanc:
        for path in wsi:
            orthanc.upload(path.read_bytes())
        config = ServerConfig(
            host="127.0.0.1", port=0, data_dir=tmp_path / "data", slide_roots=(tmp_path,),
            pacs=(("orthanc", orthanc.dicomweb_url),), segmenter="fake",
            tokens=f"{TOKEN} admin pacs", workers=1, drain_s=5.0,
        )
        with ServerThread(config) as server:
            server.wait_ready()
            client = AnalysisClient(f"127.0.0.1:{server.port}", TOKEN)
            job = client.submit(study_uid=str(first.StudyInstanceUID),
                                series_uid=str(first.SeriesInstanceUID), pacs="orthanc",
                                outputs=("sr",), segmenter="fake")
            final = list(client.watch(job.job_id, timeout_s=90))[-1]
            assert final.state == "DONE", final.failure_reason
            assert final.summary is not None
            assert final.summary["cellularity_pct"] is not None
            assert "sr.dcm" in final.artifacts
