"""One worker per configured GPU, pinned round robin (checked without a GPU)."""

from __future__ import annotations

from service.config import ServerConfig, _apply
from service.jobs.local_executor import LocalExecutor, worker_device
from service.pipeline.params import AnalysisParams


def test_workers_are_pinned_round_robin() -> None:
    assert [worker_device(i, ("0", "1")) for i in range(4)] == ["0", "1", "0", "1"]
    assert worker_device(3, ()) is None


def test_at_least_one_worker_per_gpu() -> None:
    ex = LocalExecutor(AnalysisParams(segmenter="fake"), workers=1, gpus=("0", "1", "2"))
    assert ex._n == 3


def test_gpus_come_from_configuration() -> None:
    cfg = _apply(ServerConfig(), {"gpus": "0,1"}, "env")
    assert cfg.gpus == ("0", "1")
