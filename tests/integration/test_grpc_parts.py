"""The service's parts without a server: configuration layering, token table, ledger rules."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from service.config import load_config
from service.domain.errors import InvalidInput
from service.jobs.executor import ProgressCallback, Task, TaskOutcome
from service.jobs.keys import derive_key
from service.jobs.ledger import SqlLedger
from service.jobs.manager import JobManager, JobSettings
from service.jobs.model import JobRequest, JobState, Progress
from service.jobs.results import SUMMARY_KEYS, ResultStore, publish_dir
from service.pipeline.params import AnalysisParams
from service.transports.grpc.auth import TokenTable, bearer_token


def _request(tile_size: int = 1280) -> JobRequest:
    return JobRequest(reference="/slides/a.svs", reference_label="file:abc",
                      params=AnalysisParams(tile_size=tile_size), outputs=("overlay",))


def test_config_layers_defaults_file_env_flags(tmp_path: Path) -> None:
    file = tmp_path / "server.toml"
    file.write_text('port = 6000\nworkers = 3\nslide_roots = ["/a", "/b"]\n'
                    '[pacs]\nmain = "http://pacs.local/dicom-web"\n')
    config = load_config(file, environ={"MARROWSCOPE_WORKERS": "5", "MARROWSCOPE_REFLECTION": "1"},
                         overrides={"port": 7000, "segmenter": None})
    assert (config.port, config.workers, config.reflection) == (7000, 5, True)
    assert config.slide_roots == (Path("/a"), Path("/b"))
    assert config.segmenter == "classical"
    assert config.pacs_url("") == config.pacs_url("main") == "http://pacs.local/dicom-web"
    with pytest.raises(InvalidInput, match="unknown PACS"):
        config.pacs_url("other")
    assert load_config(environ={}).queue_limit == 64  # embedded defaults need nothing


def test_config_rejects_unknown_settings_and_half_tls(tmp_path: Path) -> None:
    file = tmp_path / "bad.toml"
    file.write_text("prot = 1\n")
    with pytest.raises(InvalidInput, match="unknown setting 'prot'"):
        load_config(file, environ={})
    with pytest.raises(InvalidInput, match="tls_cert and tls_key"):
        load_config(environ={"MARROWSCOPE_TLS_CERT": "/x.pem"})


def test_token_table_roles_and_parsing() -> None:
    table = TokenTable.parse("# comment\nsecret-token-abcdefgh read,submit alice\n", "tokens")
    principal = table.lookup("secret-token-abcdefgh")
    assert principal is not None
    assert principal.name == "alice"
    assert principal.may("read")
    assert not principal.may("admin")
    assert table.lookup("secret-token-abcdefgX") is None
    with pytest.raises(InvalidInput, match="shorter than"):
        TokenTable.parse("short read", "tokens")
    with pytest.raises(InvalidInput, match="roles must be"):
        TokenTable.parse("secret-token-abcdefgh root", "tokens")
    assert bearer_token((("authorization", "Bearer abc"),)) == "abc"
    assert bearer_token((("authorization", "Basic abc"),)) is None


def test_derived_keys_change_with_model_and_parameters() -> None:
    params = AnalysisParams()
    key = derive_key("file:/a:1:2", "sha-1", params, ("overlay", "sr"))
    assert key == derive_key("file:/a:1:2", "sha-1", params, ("sr", "overlay"))
    assert key != derive_key("file:/a:1:2", "sha-2", params, ("overlay", "sr"))
    assert key != derive_key("file:/a:1:2", "sha-1", AnalysisParams(tile_size=512),
                             ("overlay", "sr"))


def test_ledger_state_machine_leases_and_idempotency(tmp_path: Path) -> None:
    ledger = SqlLedger.open_sqlite(tmp_path / "jobs.sqlite3")
    job, created = ledger.insert_or_get("j1", "k1", _request(), max_attempts=2)
    assert created
    assert job.state is JobState.QUEUED
    assert ledger.insert_or_get("j2", "k1", _request(), max_attempts=2) == (job, False)

    claimed = ledger.claim_next("server-a", lease_s=0.05)
    assert claimed is not None
    assert (claimed.state, claimed.attempts, claimed.lease_owner) == (JobState.RUNNING, 1,
                                                                      "server-a")
    assert ledger.claim_next("server-b", lease_s=10) is None
    assert ledger.heartbeat("j1", "server-a", 0.05, Progress("segmenting", 3, 9))
    time.sleep(0.1)
    assert ledger.requeue_expired() == ["j1"]  # server-a died
    assert not ledger.heartbeat("j1", "server-a", 10, Progress())  # its lease is gone
    again = ledger.claim_next("server-b", lease_s=10)
    assert again is not None
    assert again.attempts == 2
    assert not ledger.mark_done("j1", "server-a", {}, [])  # a stale owner cannot finish it
    assert ledger.mark_done("j1", "server-b", {"cellularity_pct": 40.0}, ["result.json"])
    done = ledger.get("j1")
    assert done is not None
    assert done.state is JobState.DONE
    assert done.artifacts == ("result.json",)

    ledger.insert_or_get("j3", "k3", _request(), max_attempts=1)
    cancelled = ledger.request_cancel("j3")
    assert cancelled is not None
    assert cancelled.state is JobState.CANCELLED  # queued jobs cancel at once
    page, token = ledger.list_jobs([JobState.DONE, JobState.CANCELLED], limit=1)
    assert [j.job_id for j in page] == ["j3"]
    rest, end = ledger.list_jobs([JobState.DONE, JobState.CANCELLED], limit=1, page_token=token)
    assert [j.job_id for j in rest] == ["j1"]
    assert end == ""
    ledger.close()


def test_expired_lease_out_of_attempts_fails(tmp_path: Path) -> None:
    ledger = SqlLedger.open_sqlite(tmp_path / "jobs.sqlite3")
    ledger.insert_or_get("j1", "k1", _request(), max_attempts=1)
    ledger.claim_next("server-a", lease_s=0.01)
    time.sleep(0.05)
    ledger.requeue_expired()
    job = ledger.get("j1")
    assert job is not None
    assert job.state is JobState.FAILED
    assert "after 1 attempts" in job.failure_reason
    ledger.close()


class InlineExecutor:
    """A second Executor implementation (no processes): finishes every task at once."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.ready = False

    async def start(self) -> None:
        self.ready = True

    def free_slots(self) -> int:
        return 1 if self.ready else 0

    def start_task(self, task: Task, progress: ProgressCallback) -> asyncio.Future[TaskOutcome]:
        self.started.append(task.job_id)
        task.work_dir.mkdir(parents=True)
        (task.work_dir / "result.json").write_text('{"cellularity_pct": 50.0}')
        publish_dir(task.work_dir, task.out_dir)
        progress(Progress("segmenting", 1, 1))
        future: asyncio.Future[TaskOutcome] = asyncio.get_running_loop().create_future()
        future.set_result(TaskOutcome("done", summary={"cellularity_pct": 50.0},
                                      artifacts=("result.json",)))
        return future

    def cancel(self, job_id: str) -> bool:
        return False

    async def stop(self) -> None:
        self.ready = False


def test_manager_recovers_the_ledger_at_start_up(tmp_path: Path) -> None:
    ledger = SqlLedger.open_sqlite(tmp_path / "jobs.sqlite3")
    store = ResultStore(tmp_path / "results")
    for job_id, max_attempts in (("crashed", 3), ("poison", 1), ("published", 3)):
        ledger.insert_or_get(job_id, job_id, _request(), max_attempts=max_attempts)
        ledger.claim_next("dead-server", lease_s=3600)  # RUNNING under a server that died
    (store.job_dir("published")).mkdir()
    (store.job_dir("published") / "result.json").write_text('{"cellularity_pct": 12.0}')
    (store.tmp / "crashed.1.dead-server").mkdir()  # scratch of the dead attempt
    executor = InlineExecutor()

    async def run() -> None:
        manager = JobManager(ledger, executor, store, JobSettings(poll_s=0.01))
        await manager.start(recover_running=True)
        for _ in range(200):
            if not ledger.count_in([JobState.QUEUED, JobState.RUNNING]):
                break
            await asyncio.sleep(0.01)
        await manager.shutdown(drain_s=0)

    asyncio.run(run())
    states = {j: ledger.get(j).state for j in ("crashed", "poison", "published")}  # type: ignore[union-attr]
    assert states == {"crashed": JobState.DONE, "poison": JobState.FAILED,
                      "published": JobState.DONE}
    assert executor.started == ["crashed"]  # the published job was not run again
    assert ledger.get("published").summary == {  # type: ignore[union-attr]
        **dict.fromkeys(SUMMARY_KEYS), "cellularity_pct": 12.0}
    assert not any(store.tmp.iterdir())
    ledger.close()
