"""The code of one worker process (started with ``spawn``): load the segmenter once, then run
tasks sent over a pipe until told to stop. Messages to the parent are tuples:
``("ready", spec)``, ``("load_failed", message)``, ``("progress", stage, done, total)``,
``("done", summary, artifacts)``, ``("failed", code, message, retryable)``, ``("cancelled",)``.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import multiprocessing
import os
import shutil
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from typing import Any

from service.domain.errors import Cancelled, MarrowscopeError
from service.jobs.executor import Task
from service.jobs.results import list_artifacts, publish_dir, published_result, summary_from_result
from service.pipeline.params import AnalysisParams, ProgressEvent
from service.ports.segmenters import Segmenter

log = logging.getLogger("marrowscope.worker")

DEFAULT_RUNNER = "service.bootstrap:analyze_to_dir"
PROGRESS_INTERVAL_S = 0.2


def _die_with_parent() -> None:
    """Exits at once when the server process dies, so no orphan keeps writing artifacts."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        wait([parent.sentinel])
        os._exit(3)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _load_runner(path: str) -> Callable[..., Any]:
    module, _, name = path.partition(":")
    runner: Callable[..., Any] = getattr(importlib.import_module(module), name)
    return runner


class _Segmenters:
    """Loaded segmenters of this worker, keyed by what selects the model."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str | None, str], Segmenter] = {}

    def get(self, params: AnalysisParams) -> Segmenter:
        key = (params.segmenter, params.model, params.device)
        if key not in self._cache:
            from service.bootstrap import build_segmenter

            seg = build_segmenter(params)
            seg.load()
            self._cache[key] = seg
        return self._cache[key]


def worker_main(
    conn: Connection, cancel: Any, default_params: AnalysisParams, runner_path: str,
    visible_device: str | None = None,
) -> None:
    """Entry point of a worker process; ``visible_device`` pins it to one GPU."""
    if visible_device is not None:  # before anything imports torch
        os.environ["CUDA_VISIBLE_DEVICES"] = visible_device
    _die_with_parent()
    send_lock = threading.Lock()

    def send(*msg: Any) -> None:
        with send_lock:
            conn.send(msg)

    segmenters = _Segmenters()
    try:
        spec = segmenters.get(default_params).spec
        runner = _load_runner(runner_path)
    except Exception as exc:  # noqa: BLE001 - reported to the parent as one line
        send("load_failed", f"{type(exc).__name__}: {exc}")
        return
    send("ready", dataclasses.asdict(spec))
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        send(*_run_task(task, segmenters, runner, cancel, send))


def _run_task(
    task: Task,
    segmenters: _Segmenters,
    runner: Callable[..., Any],
    cancel: Any,
    send: Callable[..., None],
) -> tuple[Any, ...]:
    last_time, last_stage = [0.0], [""]

    def progress(event: ProgressEvent) -> None:
        now = time.monotonic()
        done = event.tiles_total > 0 and event.tiles_done >= event.tiles_total
        if event.stage != last_stage[0] or done or now - last_time[0] >= PROGRESS_INTERVAL_S:
            last_time[0], last_stage[0] = now, event.stage
            send("progress", event.stage, event.tiles_done, event.tiles_total)

    params = task.request.params
    shutil.rmtree(task.work_dir, ignore_errors=True)
    task.work_dir.mkdir(parents=True)
    try:
        segmenter = segmenters.get(params)
        runner(
            task.request.reference, params, task.work_dir,
            outputs=task.request.output_request, progress=progress, cancel=cancel,
            segmenter=segmenter,
        )
        if cancel.is_set():
            raise Cancelled("cancelled after the last tile")
        publish_dir(task.work_dir, task.out_dir)
        result = published_result(task.out_dir)
        if result is None:
            return ("failed", "output_error", "the analysis wrote no result.json", False)
        return ("done", summary_from_result(result), list_artifacts(task.out_dir))
    except Cancelled:
        return ("cancelled",)
    except MarrowscopeError as exc:
        return ("failed", exc.code, str(exc), False)
    except Exception as exc:  # noqa: BLE001 - an unexpected error: retried by the manager
        # The type only: messages and tracebacks may carry slide paths (possible PHI).
        log.error("job %s attempt %d failed: %s", task.job_id, task.attempt, type(exc).__name__)
        log.debug("traceback of job %s", task.job_id, exc_info=True)
        return ("failed", "internal", f"{type(exc).__name__}: {exc}", True)
    finally:
        shutil.rmtree(task.work_dir, ignore_errors=True)
