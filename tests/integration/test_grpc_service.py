"""The gRPC service end to end, with an in-process server on a free port and the real pipeline
(``service.bootstrap.analyze_to_dir``) running the fake segmenter on a small synthetic PNG."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.client import AnalysisClient
from service.transports.grpc.stubs import pb
from tests.integration.grpc_harness import (
    ADMIN,
    READER,
    SUBMITTER,
    base_config,
    metadata,
    running_server,
    submit_request,
    watch_states,
    write_slide,
)

SLOW_BATCHES = {"MARROWSCOPE_FAKE_BATCH_S": "0.25"}


def _code(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()  # type: ignore[operator]
    return info.value.code()  # type: ignore[no-any-return,attr-defined]


def test_submit_watch_done_with_artifacts(tmp_path: Path) -> None:
    slide = write_slide(tmp_path / "slides")
    with running_server(base_config(tmp_path)) as (server, stub):
        reply = stub.SubmitAnalysis(submit_request(slide), metadata=metadata())
        assert reply.created
        assert reply.state == pb.JOB_STATE_QUEUED
        updates = watch_states(stub, reply.job_id)
        states = [u.state for u in updates]
        assert states[-1] == pb.JOB_STATE_DONE, updates[-1].failure_reason
        assert pb.JOB_STATE_RUNNING in states
        assert any(u.progress.tiles_total > 0 and u.progress.tiles_done > 0 for u in updates)
        final = updates[-1]
        assert final.progress.tiles_done == final.progress.tiles_total > 1
        assert {"result.json", "overlay.png"} <= set(final.summary.artifacts)
        assert any(name.endswith((".geojson", ".geojson.gz")) for name in final.summary.artifacts)
        assert final.summary.HasField("cellularity_pct")

        chunks = list(stub.GetArtifact(pb.GetArtifactRequest(job_id=reply.job_id,
                                                             name="result.json"),
                                       metadata=metadata()))
        result = json.loads(b"".join(c.data for c in chunks))
        assert result["cellularity_pct"] == pytest.approx(final.summary.cellularity_pct)
        assert result["segmenter"].startswith("fake")
        job_dir = tmp_path / "data" / "results" / reply.job_id
        assert (job_dir / "result.json").is_file()
        assert not any((tmp_path / "data" / "results" / ".tmp").iterdir())


def test_resubmit_returns_the_same_job(tmp_path: Path) -> None:
    slide = write_slide(tmp_path / "slides", width=384, height=256)
    with running_server(base_config(tmp_path)) as (server, stub):
        first = stub.SubmitAnalysis(submit_request(slide), metadata=metadata())
        again = stub.SubmitAnalysis(submit_request("slide.png"), metadata=metadata())  # relative
        assert (again.job_id, again.created) == (first.job_id, False)
        other = stub.SubmitAnalysis(submit_request(slide, tile_size=128), metadata=metadata())
        assert other.created
        assert other.job_id != first.job_id

        keyed = stub.SubmitAnalysis(submit_request(slide, key="order-17"), metadata=metadata())
        assert stub.SubmitAnalysis(submit_request(slide, key="order-17"),
                                   metadata=metadata()).job_id == keyed.job_id
        assert _code(lambda: stub.SubmitAnalysis(
            submit_request(slide, key="order-17", tile_size=256), metadata=metadata()
        )) == grpc.StatusCode.FAILED_PRECONDITION
        assert watch_states(stub, first.job_id)[-1].state == pb.JOB_STATE_DONE
        assert stub.SubmitAnalysis(submit_request(slide), metadata=metadata()).job_id \
            == first.job_id  # also once it is DONE


def test_cancel_mid_run_stops_the_worker(tmp_path: Path) -> None:
    slide = write_slide(tmp_path / "slides")
    with running_server(base_config(tmp_path), env=SLOW_BATCHES) as (server, stub):
        job_id = stub.SubmitAnalysis(submit_request(slide), metadata=metadata()).job_id
        for update in stub.WatchAnalysis(pb.WatchAnalysisRequest(job_id=job_id),
                                         metadata=metadata(), timeout=60):
            if update.job.progress.tiles_done > 0:
                break
        cancelled = stub.CancelAnalysis(pb.CancelAnalysisRequest(job_id=job_id),
                                        metadata=metadata()).job
        assert cancelled.cancel_requested
        final = watch_states(stub, job_id)[-1]
        assert final.state == pb.JOB_STATE_CANCELLED
        assert final.progress.tiles_done < final.progress.tiles_total
        assert not (tmp_path / "data" / "results" / job_id).exists()
        assert _code(lambda: stub.CancelAnalysis(pb.CancelAnalysisRequest(job_id=job_id),
                                                 metadata=metadata())) \
            == grpc.StatusCode.FAILED_PRECONDITION
        # the worker is free again: the next job runs to the end
        nxt = stub.SubmitAnalysis(submit_request(slide, tile_size=256), metadata=metadata())
        assert watch_states(stub, nxt.job_id)[-1].state == pb.JOB_STATE_DONE


def test_client_disconnect_cancels_when_asked(tmp_path: Path) -> None:
    slide = write_slide(tmp_path / "slides")
    with running_server(base_config(tmp_path), env=SLOW_BATCHES) as (server, stub):
        job_id = stub.SubmitAnalysis(submit_request(slide), metadata=metadata()).job_id
        call = stub.WatchAnalysis(pb.WatchAnalysisRequest(job_id=job_id,
                                                          cancel_on_disconnect=True),
                                  metadata=metadata(), timeout=60)
        for update in call:
            if update.job.progress.tiles_done > 0:
                break
        call.cancel()
        assert watch_states(stub, job_id)[-1].state == pb.JOB_STATE_CANCELLED


def test_tokens_and_roles(tmp_path: Path) -> None:
    slide = write_slide(tmp_path / "slides")
    with running_server(base_config(tmp_path)) as (server, stub):
        request = submit_request(slide)
        assert _code(lambda: stub.SubmitAnalysis(request)) == grpc.StatusCode.UNAUTHENTICATED
        assert _code(lambda: stub.SubmitAnalysis(request, metadata=metadata("not-a-token"))) \
            == grpc.StatusCode.UNAUTHENTICATED
        assert _code(lambda: list(stub.WatchAnalysis(pb.WatchAnalysisRequest(job_id="x")))) \
            == grpc.StatusCode.UNAUTHENTICATED
        assert _code(lambda: stub.SubmitAnalysis(request, metadata=metadata(READER))) \
            == grpc.StatusCode.PERMISSION_DENIED
        job_id = stub.SubmitAnalysis(request, metadata=metadata(SUBMITTER)).job_id
        assert stub.GetAnalysis(pb.GetAnalysisRequest(job_id=job_id),
                                metadata=metadata(READER)).job.job_id == job_id
        health = health_pb2_grpc.HealthStub(grpc.insecure_channel(f"127.0.0.1:{server.port}"))
        assert health.Check(health_pb2.HealthCheckRequest()).status \
            == health_pb2.HealthCheckResponse.SERVING  # no token needed for health


def test_slide_paths_are_confined_to_the_roots(tmp_path: Path) -> None:
    write_slide(tmp_path / "slides")
    outside = write_slide(tmp_path / "elsewhere")
    os.symlink(outside, tmp_path / "slides" / "link.png")
    with running_server(base_config(tmp_path)) as (server, stub):
        def code(path: str, **kw: object) -> grpc.StatusCode:
            return _code(lambda: stub.SubmitAnalysis(submit_request(path, **kw),
                                                     metadata=metadata()))

        assert code(str(outside)) == grpc.StatusCode.PERMISSION_DENIED
        assert code("../elsewhere/slide.png") == grpc.StatusCode.PERMISSION_DENIED
        assert code("link.png") == grpc.StatusCode.PERMISSION_DENIED  # realpath, not the name
        assert code("/etc/passwd") == grpc.StatusCode.PERMISSION_DENIED
        assert code("missing.png") == grpc.StatusCode.NOT_FOUND
        assert code("") == grpc.StatusCode.INVALID_ARGUMENT
        assert code("slide.png", outputs=("pdf",)) == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as info:
            stub.SubmitAnalysis(submit_request("/etc/passwd"), metadata=metadata())
        assert "slide roots" in info.value.details()


def test_health_not_serving_until_the_segmenter_loads(tmp_path: Path) -> None:
    with running_server(base_config(tmp_path), env={"MARROWSCOPE_FAKE_LOAD_S": "2"},
                        wait=False) as (server, stub):
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "marrowscope.v1.AnalysisService"):
            assert health.Check(health_pb2.HealthCheckRequest(service=service)).status \
                == health_pb2.HealthCheckResponse.NOT_SERVING
        server.wait_ready()
        assert health.Check(health_pb2.HealthCheckRequest()).status \
            == health_pb2.HealthCheckResponse.SERVING
        channel.close()


def test_full_queue_answers_resource_exhausted(tmp_path: Path) -> None:
    slide = write_slide(tmp_path / "slides")
    with running_server(base_config(tmp_path, queue_limit=2),
                        env={"MARROWSCOPE_FAKE_LOAD_S": "30"}, wait=False) as (server, stub):
        queued = stub.SubmitAnalysis(submit_request(slide, key="a"), metadata=metadata())
        stub.SubmitAnalysis(submit_request(slide, key="b"), metadata=metadata())
        with pytest.raises(grpc.RpcError) as info:
            stub.SubmitAnalysis(submit_request(slide, key="c"), metadata=metadata())
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "queue is full" in info.value.details()
        # deadlines are honoured: a watch of a job that cannot start ends at the deadline
        with pytest.raises(grpc.RpcError) as info:
            list(stub.WatchAnalysis(pb.WatchAnalysisRequest(job_id=queued.job_id),
                                    metadata=metadata(), timeout=0.5))
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        # resubmitting a queued job is not a new job, so it is still answered
        assert not stub.SubmitAnalysis(submit_request(slide, key="a"),
                                       metadata=metadata()).created


def test_list_get_artifact_and_errors(tmp_path: Path) -> None:
    slide = write_slide(tmp_path / "slides", width=384, height=256)
    config = base_config(tmp_path, artifact_chunk_bytes=4096)
    with running_server(config) as (server, stub):
        ids = [stub.SubmitAnalysis(submit_request(slide, key=f"k{i}"), metadata=metadata()).job_id
               for i in range(3)]
        for job_id in ids:
            watch_states(stub, job_id)
        page = stub.ListAnalyses(pb.ListAnalysesRequest(page_size=2), metadata=metadata())
        assert len(page.jobs) == 2
        assert page.next_page_token
        rest = stub.ListAnalyses(pb.ListAnalysesRequest(page_size=2,
                                                        page_token=page.next_page_token),
                                 metadata=metadata())
        assert [j.job_id for j in [*page.jobs, *rest.jobs]] == ids[::-1]
        assert not rest.next_page_token
        done = stub.ListAnalyses(pb.ListAnalysesRequest(states=[pb.JOB_STATE_CANCELLED]),
                                 metadata=metadata())
        assert not done.jobs

        chunks = list(stub.GetArtifact(pb.GetArtifactRequest(job_id=ids[0], name="overlay.png"),
                                       metadata=metadata()))
        size = (tmp_path / "data" / "results" / ids[0] / "overlay.png").stat().st_size
        assert len(chunks) == -(-size // 4096)
        assert sum(len(c.data) for c in chunks) == size
        assert _code(lambda: list(stub.GetArtifact(
            pb.GetArtifactRequest(job_id=ids[0], name="../../jobs.sqlite3"), metadata=metadata()
        ))) == grpc.StatusCode.NOT_FOUND
        assert _code(lambda: stub.GetAnalysis(pb.GetAnalysisRequest(job_id="nope"),
                                              metadata=metadata())) == grpc.StatusCode.NOT_FOUND
        assert _code(lambda: stub.ListAnalyses(pb.ListAnalysesRequest(page_token="garbage"),
                                               metadata=metadata())) \
            == grpc.StatusCode.INVALID_ARGUMENT


def test_64_concurrent_clients_are_all_served(tmp_path: Path) -> None:
    slide = write_slide(tmp_path / "slides", width=256, height=256)
    config = base_config(tmp_path, queue_limit=100)
    with running_server(config, env={"MARROWSCOPE_FAKE_LOAD_S": "30"}, wait=False) \
            as (server, _stub):
        target = f"127.0.0.1:{server.port}"
        barrier = threading.Barrier(64)
        served: dict[int, str] = {}
        errors: list[BaseException] = []

        def one_client(i: int) -> None:
            try:
                with AnalysisClient(target, token=ADMIN) as client:
                    barrier.wait(30)
                    submitted = client.submit(slide, segmenter="fake", mpp=2.0,
                                              idempotency_key=f"c{i}")
                    served[i] = client.get(submitted.job_id).state
            except BaseException as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)

        threads = [threading.Thread(target=one_client, args=(i,)) for i in range(64)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors[:3]
        assert served == {i: "QUEUED" for i in range(64)}
        with AnalysisClient(target, token=ADMIN) as client:
            jobs, token = client.list(page_size=500)
        assert len(jobs) == 64
        assert token == ""


@pytest.mark.slow
def test_python_client_and_64_concurrent_clients_to_done(tmp_path: Path) -> None:
    slide = write_slide(tmp_path / "slides", width=256, height=256)
    with running_server(base_config(tmp_path, workers=2)) as (server, stub):
        target = f"127.0.0.1:{server.port}"
        results: dict[int, str] = {}
        errors: list[BaseException] = []

        def one_client(i: int) -> None:
            try:
                with AnalysisClient(target, token=ADMIN) as client:
                    submitted = client.submit(slide, segmenter="fake", mpp=2.0,
                                              outputs=("geojson",), idempotency_key=f"c{i}")
                    final = list(client.watch(submitted.job_id, timeout_s=300))[-1]
                    results[i] = final.state
            except BaseException as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)

        threads = [threading.Thread(target=one_client, args=(i,)) for i in range(64)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        assert not errors, errors[:3]
        assert results == {i: "DONE" for i in range(64)}
        with AnalysisClient(target, token=ADMIN) as client:
            jobs, _ = client.list(states=["DONE"], page_size=500)
            assert len(jobs) == 64
            out = client.download(jobs[0].job_id, "result.json", tmp_path / "r.json")
            assert json.loads(out.read_text())["segmenter"].startswith("fake")


def test_dicomweb_references_use_configured_pacs_only(tmp_path: Path) -> None:
    (tmp_path / "slides").mkdir()
    config = base_config(tmp_path, pacs=(("main", "http://127.0.0.1:9/dicom-web"),))
    with running_server(config, env={"MARROWSCOPE_FAKE_LOAD_S": "30"}, wait=False) \
            as (server, stub):
        def submit(pacs: str, study: str = "1.2.3", series: str = "1.2.3.4") -> object:
            slide = pb.SlideReference(dicomweb=pb.DicomWebSlide(
                pacs=pacs, study_instance_uid=study, series_instance_uid=series))
            return stub.SubmitAnalysis(pb.SubmitAnalysisRequest(slide=slide),
                                       metadata=metadata())

        first = submit("")  # the default (first) PACS
        assert first.created
        assert submit("main").job_id == first.job_id  # the same series on the same PACS

        def code(*args: str) -> grpc.StatusCode:
            return _code(lambda: submit(*args))

        assert code("other") == grpc.StatusCode.INVALID_ARGUMENT  # URLs only from config
        assert code("main", "1.2.x") == grpc.StatusCode.INVALID_ARGUMENT
        assert code("main", "1.2.3", "") == grpc.StatusCode.INVALID_ARGUMENT
        job = server.run_sync(server.running.manager.get, first.job_id)
        assert job.request.reference == "http://127.0.0.1:9/dicom-web/studies/1.2.3/series/1.2.3.4"


def test_graceful_shutdown_stops_accepting_and_drains(tmp_path: Path) -> None:
    slide = write_slide(tmp_path / "slides")
    config = base_config(tmp_path, drain_s=30.0)
    with running_server(config, env={"MARROWSCOPE_FAKE_BATCH_S": "0.1"}) as (server, stub):
        job_id = stub.SubmitAnalysis(submit_request(slide), metadata=metadata()).job_id
        for update in stub.WatchAnalysis(pb.WatchAnalysisRequest(job_id=job_id),
                                         metadata=metadata(), timeout=60):
            if update.job.progress.tiles_done > 0:
                break
        stopping = threading.Thread(target=server.stop, kwargs={"drain_s": None})
        stopping.start()
        health = health_pb2_grpc.HealthStub(grpc.insecure_channel(f"127.0.0.1:{server.port}"))
        deadline = time.monotonic() + 10
        while health.Check(health_pb2.HealthCheckRequest()).status \
                != health_pb2.HealthCheckResponse.NOT_SERVING:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert _code(lambda: stub.SubmitAnalysis(submit_request(slide, key="late"),
                                                 metadata=metadata())) \
            == grpc.StatusCode.UNAVAILABLE
        stopping.join(60)
    assert (tmp_path / "data" / "results" / job_id / "result.json").is_file()  # it finished
