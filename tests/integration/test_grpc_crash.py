"""Crash safety: a job whose worker or whole server is SIGKILLed mid-run completes exactly once
after recovery, with its artifacts published once; SIGTERM drains and exits cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest

from service.transports.grpc.stubs import pb, pb_grpc
from tests.integration.grpc_harness import (
    ADMIN,
    base_config,
    metadata,
    running_server,
    submit_request,
    watch_states,
    write_slide,
)

SLOW_BATCHES = {"MARROWSCOPE_FAKE_BATCH_S": "0.25"}
REPO = Path(__file__).resolve().parents[2]


def _wait_for_tiles(stub: object, job_id: str) -> None:
    for update in stub.WatchAnalysis(pb.WatchAnalysisRequest(job_id=job_id),  # type: ignore[attr-defined]
                                     metadata=metadata(), timeout=60):
        if update.job.progress.tiles_done > 0:
            return
    raise AssertionError("the job ended before any tile was done")


def _assert_published_once(data_dir: Path, job_id: str) -> None:
    results = data_dir / "results"
    assert [p.name for p in results.iterdir() if p.name != ".tmp"] == [job_id]
    assert (results / job_id / "result.json").is_file()
    assert not any((results / ".tmp").iterdir()), "scratch of the killed attempt left behind"


@pytest.mark.slow
def test_worker_killed_mid_job_is_retried_and_completes_once(tmp_path: Path) -> None:
    slide = write_slide(tmp_path / "slides")
    with running_server(base_config(tmp_path), env=SLOW_BATCHES) as (server, stub):
        job_id = stub.SubmitAnalysis(submit_request(slide), metadata=metadata()).job_id
        _wait_for_tiles(stub, job_id)
        pid = server.run_sync(lambda: server.running.manager.executor.pids()[job_id])
        os.kill(pid, signal.SIGKILL)
        final = watch_states(stub, job_id, timeout_s=120)[-1]
        assert final.state == pb.JOB_STATE_DONE, final.failure_reason
        assert final.attempts == 2
        _assert_published_once(tmp_path / "data", job_id)


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


@contextmanager
def _serve_process(
    tmp_path: Path, env: dict[str, str]
) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """`marrowscope serve` in its own process; yields it and its port once it is SERVING."""
    token_file = tmp_path / "tokens.txt"
    token_file.write_text(f"{ADMIN} admin test\n")
    command = [
        sys.executable, "-m", "service.transports.cli", "serve", "--port", "0",
        "--data-dir", str(tmp_path / "data"), "--slide-root", str(tmp_path / "slides"),
        "--token-file", str(token_file), "--segmenter", "fake", "--reflection",
    ]
    environment = {**os.environ, **env, "MARROWSCOPE_LEASE_S": "2", "MARROWSCOPE_BACKOFF_S": "0.2"}
    proc = subprocess.Popen(command, cwd=REPO, env=environment, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        port = 0
        assert proc.stdout is not None
        for line in proc.stdout:
            if "listening on" in line:
                port = int(line.split("listening on ")[1].split()[0].rsplit(":", 1)[1])
            if "ready" in line:
                break
        assert port, "server did not start"
        yield proc, port
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)


@pytest.mark.slow
def test_server_killed_mid_job_completes_once_after_restart(tmp_path: Path) -> None:
    slide = write_slide(tmp_path / "slides")
    with _serve_process(tmp_path, SLOW_BATCHES) as (proc, port):
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.AnalysisServiceStub(channel)
            job_id = stub.SubmitAnalysis(submit_request(slide), metadata=metadata()).job_id
            _wait_for_tiles(stub, job_id)
        workers = _children(proc.pid)
        assert workers, "the server has no worker process"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(pid) for pid in workers), "orphaned workers kept running"
    with _serve_process(tmp_path, {}) as (proc, port):
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.AnalysisServiceStub(channel)
            final = watch_states(stub, job_id, timeout_s=120)[-1]
            again = stub.SubmitAnalysis(submit_request(slide), metadata=metadata())
        assert final.state == pb.JOB_STATE_DONE, final.failure_reason
        assert final.attempts == 2
        assert (again.job_id, again.created) == (job_id, False)
    _assert_published_once(tmp_path / "data", job_id)


@pytest.mark.slow
def test_sigterm_drains_running_jobs_and_exits(tmp_path: Path) -> None:
    slide = write_slide(tmp_path / "slides")
    with _serve_process(tmp_path, {"MARROWSCOPE_FAKE_BATCH_S": "0.05"}) as (proc, port):
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.AnalysisServiceStub(channel)
            job_id = stub.SubmitAnalysis(submit_request(slide), metadata=metadata()).job_id
            _wait_for_tiles(stub, job_id)
            proc.send_signal(signal.SIGTERM)
            started = time.monotonic()
            assert proc.wait(30) == 0
        assert time.monotonic() - started < 30
    _assert_published_once(tmp_path / "data", job_id)
