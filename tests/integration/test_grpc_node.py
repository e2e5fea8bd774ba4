"""A non-Python client: the Node.js ``@grpc/grpc-js`` script in tests/node submits a slide to the
real server and watches the job to DONE."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.grpc_harness import (
    ADMIN,
    SLIDE_MPP,
    base_config,
    running_server,
    write_slide,
)

NODE_DIR = Path(__file__).resolve().parents[1] / "node"


def _node_ready() -> str | None:
    """None when the Node client can run, else the reason to skip."""
    if shutil.which("node") is None:
        return "node is not installed (scripts/setup.sh --system installs nodejs)"
    if (NODE_DIR / "node_modules" / "@grpc" / "grpc-js").is_dir():
        return None
    if shutil.which("npm") is None:
        return "npm is not installed and tests/node/node_modules is missing"
    done = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--silent"], cwd=NODE_DIR,
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        return f"npm ci in tests/node failed (offline?): {done.stderr.strip()[-200:]}"
    return None


def test_node_client_submits_and_watches_a_job(tmp_path: Path) -> None:
    reason = _node_ready()
    if reason:
        pytest.skip(reason)
    slide = write_slide(tmp_path / "slides")
    with running_server(base_config(tmp_path)) as (server, _stub):
        done = subprocess.run(
            ["node", "submit_and_watch.js", f"127.0.0.1:{server.port}", ADMIN, str(slide),
             str(SLIDE_MPP)],
            cwd=NODE_DIR, capture_output=True, text=True, timeout=120,
        )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines[0]["state"] == "JOB_STATE_QUEUED"
    states = [line.get("state") for line in lines[1:]]
    assert "JOB_STATE_RUNNING" in states
    assert states[-1] == "JOB_STATE_DONE"
    assert "result.json" in lines[-1]["artifacts"]
    assert any(line.get("tiles_done", 0) > 0 for line in lines[1:])
