"""Transport security and discovery: TLS, mutual TLS, server reflection."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from service.client import AnalysisClient
from service.jobs.errors import ServiceUnavailable
from tests.integration.grpc_harness import ADMIN, base_config, running_server


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _make_pki(folder: Path) -> None:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate."""
    folder.mkdir()
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
             "ca.pem", "-days", "2", "-subj", "/CN=test-ca", cwd=folder)
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
                 f"{name}.csr", "-subj", f"/CN={name}", cwd=folder)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", "san.ext",
                 cwd=folder)


def test_reflection_lists_the_services(tmp_path: Path) -> None:
    (tmp_path / "slides").mkdir()
    with running_server(base_config(tmp_path, reflection=True)) as (server, _stub), \
            grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(
            list_services="")]))
        names = {s.name for r in replies for s in r.list_services_response.service}
    assert {"marrowscope.v1.AnalysisService", "grpc.health.v1.Health"} <= names


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")
def test_tls_and_mutual_tls(tmp_path: Path) -> None:
    (tmp_path / "slides").mkdir()
    pki = tmp_path / "pki"
    _make_pki(pki)
    config = base_config(tmp_path, tls_cert=pki / "server.pem", tls_key=pki / "server.key",
                         tls_client_ca=pki / "ca.pem")
    with running_server(config) as (server, _stub):
        target = f"localhost:{server.port}"
        with AnalysisClient(target, ADMIN, tls_ca=pki / "ca.pem", tls_cert=pki / "client.pem",
                            tls_key=pki / "client.key", timeout_s=10) as client:
            assert client.list()[0] == []
        with AnalysisClient(target, ADMIN, tls_ca=pki / "ca.pem", timeout_s=5) as client, \
                pytest.raises(ServiceUnavailable):
            client.list()  # no client certificate: the handshake is refused
        with AnalysisClient(target, ADMIN, timeout_s=5) as client, \
                pytest.raises(ServiceUnavailable):
            client.list()  # plaintext against a TLS port
