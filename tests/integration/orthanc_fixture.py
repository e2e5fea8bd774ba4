"""A throw-away Orthanc for integration tests: loopback only, free ports, temp storage, stop by PID.

Usage in a test module::

    from tests.integration.orthanc_fixture import orthanc_server, requires_orthanc

    pytestmark = [pytest.mark.orthanc, requires_orthanc]

    def test_something(orthanc_server):  # function-scoped fixture
        orthanc_server.dicomweb_url       # http://127.0.0.1:<port>/dicom-web
        orthanc_server.dicom_port, orthanc_server.aet

or start one with custom settings (modalities, Lua scripts, StableAge)::

    with start_orthanc(tmp_path, modalities={"MARROW": ("MARROWSCOPE", "127.0.0.1", 11112)},
                       lua_script=Path("deploy/orthanc/route_sm_series.lua")) as server:
        ...
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ORTHANC_BINARY = shutil.which("Orthanc") or (
    "/usr/sbin/Orthanc" if os.path.exists("/usr/sbin/Orthanc") else None
)
DICOMWEB_PLUGIN_CANDIDATES = (
    "/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
    "/usr/lib/orthanc/libOrthancDicomWeb.so",
)


def dicomweb_plugin_path() -> str | None:
    """The DICOMweb plugin shipped by Debian's ``orthanc-dicomweb``, or None."""
    for candidate in DICOMWEB_PLUGIN_CANDIDATES:
        if os.path.exists(candidate):
            return candidate
    plugin_dir = Path("/usr/lib/orthanc")
    if plugin_dir.is_dir():
        found = sorted(plugin_dir.glob("libOrthancDicomWeb.so*"))
        if found:
            return str(found[0])
    return None


requires_orthanc = pytest.mark.skipif(
    ORTHANC_BINARY is None or dicomweb_plugin_path() is None,
    reason="Orthanc and the orthanc-dicomweb plugin are not installed",
)


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class OrthancServer:
    """A running Orthanc started by :func:`start_orthanc`."""

    pid: int
    http_port: int
    dicom_port: int
    aet: str
    storage_dir: Path
    log_path: Path
    credentials: tuple[str, str] | None = None

    def _open(self, path: str, data: bytes | None = None, method: str = "GET",
              content_type: str = "application/json", timeout: float = 30) -> bytes:
        headers = {"Content-Type": content_type} if data is not None else {}
        if self.credentials:
            pair = f"{self.credentials[0]}:{self.credentials[1]}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        req = urllib.request.Request(  # noqa: S310
            self.url + path, data=data, method=method, headers=headers
        )
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            body: bytes = resp.read()
            return body

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web"

    def get_json(self, path: str) -> Any:
        """GET ``path`` of the Orthanc REST API as JSON."""
        return json.loads(self._open(path, timeout=10))

    def post_json(self, path: str, body: Any) -> Any:
        raw = self._open(path, json.dumps(body).encode(), "POST")
        return json.loads(raw) if raw else None

    def delete(self, path: str) -> None:
        self._open(path, method="DELETE", timeout=10)

    def upload(self, dicom_bytes: bytes) -> Any:
        """Stores one DICOM instance through the REST API (``POST /instances``)."""
        return json.loads(self._open("/instances", dicom_bytes, "POST", "application/dicom"))

    def instances_of_modality(self, modality: str) -> list[dict[str, Any]]:
        """Instance-level tags of every instance whose series has the given Modality."""
        found = self.post_json(
            "/tools/find",
            {"Level": "Instance", "Query": {"Modality": modality}, "Expand": True},
        )
        return list(found)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def _wait_until_ready(
    server: OrthancServer, proc: subprocess.Popen[bytes], timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Orthanc exited with {proc.returncode}:\n{server.log()[-3000:]}")
        try:
            server.get_json("/system")
            return
        except urllib.error.HTTPError:
            return  # it answers (e.g. 401 without credentials)
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.1)
    raise RuntimeError(f"Orthanc did not answer within {timeout_s} s:\n{server.log()[-3000:]}")


def _stop(proc: subprocess.Popen[bytes], graceful: bool) -> None:
    """SIGTERM and wait (graceful), or SIGKILL at once: a test's storage is thrown away anyway,
    and Orthanc takes ~3 s to shut down cleanly."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM if graceful else signal.SIGKILL)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


@contextlib.contextmanager
def start_orthanc(
    work_dir: Path,
    *,
    aet: str = "ORTHANC",
    modalities: dict[str, tuple[str, str, int]] | None = None,
    lua_script: Path | str | None = None,
    stable_age_s: int = 2,
    extra_config: dict[str, Any] | None = None,
    credentials: tuple[str, str] | None = None,
    startup_timeout_s: float = 30.0,
    graceful_stop: bool = False,
) -> Iterator[OrthancServer]:
    """Starts Orthanc (+ DICOMweb plugin) on 127.0.0.1 with free ports; stops it by PID on exit.

    ``modalities`` maps a name to (AE title, host, port); ``lua_script`` is loaded as a Lua
    script (e.g. the ``OnStableSeries`` router); ``extra_config`` overrides any key;
    ``credentials`` (user, password) turns on HTTP basic authentication; ``graceful_stop``
    stops with SIGTERM (slow) instead of SIGKILL.
    """
    if ORTHANC_BINARY is None:
        raise RuntimeError("Orthanc is not installed")
    plugin = dicomweb_plugin_path()
    work_dir = Path(work_dir)
    storage = work_dir / "orthanc-storage"
    storage.mkdir(parents=True, exist_ok=True)
    http_port, dicom_port = free_port(), free_port()
    while dicom_port == http_port:
        dicom_port = free_port()
    config: dict[str, Any] = {
        "Name": f"marrowscope-test-{http_port}",
        "StorageDirectory": str(storage),
        "IndexDirectory": str(storage),
        "HttpServerEnabled": True,
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomServerEnabled": True,
        "DicomAet": aet,
        "DicomPort": dicom_port,
        "DicomCheckCalledAet": False,
        "DicomAlwaysAllowStore": True,
        "DicomAlwaysAllowEcho": True,
        "UnknownSopClassAccepted": True,
        "StableAge": stable_age_s,
        "HttpTimeout": 60,
        "ConcurrentJobs": 2,
        "Plugins": [plugin] if plugin else [],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True,
                     "StudiesMetadata": "Full", "SeriesMetadata": "Full"},
        "DicomModalities": {
            name: [ae, host, port] for name, (ae, host, port) in (modalities or {}).items()
        },
        "LuaScripts": [str(Path(lua_script).resolve())] if lua_script else [],
        "SaveJobs": False,
        "StorageCompression": False,
    }
    if credentials:
        config["AuthenticationEnabled"] = True
        config["RegisteredUsers"] = {credentials[0]: credentials[1]}
    config.update(extra_config or {})
    config_path = work_dir / "orthanc.json"
    config_path.write_text(json.dumps(config, indent=2))
    log_path = work_dir / "orthanc.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [ORTHANC_BINARY, str(config_path)],
            stdout=log, stderr=subprocess.STDOUT, cwd=str(work_dir),
            start_new_session=True,
        )
    server = OrthancServer(
        pid=proc.pid, http_port=http_port, dicom_port=dicom_port, aet=aet,
        storage_dir=storage, log_path=log_path, credentials=credentials,
    )
    try:
        _wait_until_ready(server, proc, startup_timeout_s)
        yield server
    finally:
        _stop(proc, graceful_stop)


@pytest.fixture
def orthanc_server(tmp_path: Path) -> Iterator[OrthancServer]:
    """A fresh Orthanc with DICOMweb for one test (no routing)."""
    with start_orthanc(tmp_path / "orthanc") as server:
        yield server


def write_small_wsi(
    folder: Path, seed: int = 3, cellularity_target: float = 40.0,
    width_px0: int = 1024, height_px0: int = 768, mpp: float = 2.0,
) -> list[Path]:
    """A small synthetic DICOM-WSI series (JPEG baseline, 2 levels) with known truth; ~0.3 MB."""
    from adapters.synthetic.scene import SyntheticScene
    from adapters.synthetic.writers import write_dicom_wsi

    scene = SyntheticScene(width_px0, height_px0, mpp=mpp, seed=seed,
                           cellularity_target=cellularity_target)
    return write_dicom_wsi(folder, width_px0, height_px0, mpp, scene.render_rgb,
                           levels=(1, 4), tile=256, seed=f"pacs-{seed}")
