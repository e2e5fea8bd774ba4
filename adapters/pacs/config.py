"""Named DICOMweb servers: base URLs and credentials come only from configuration.

The configuration is a JSON file named by ``MARROWSCOPE_DICOMWEB_CONFIG``::

    {"default": "pacs",
     "servers": {"pacs": {"url": "https://pacs.example.org/dicom-web",
                          "token_file": "/run/secrets/pacs-token",
                          "timeout_s": 30, "retries": 3, "backoff_s": 0.5}}}

Per server: ``url`` (required), ``token_file`` (``Authorization: Bearer <token>``) or
``username`` + ``password_file`` (HTTP basic), ``headers`` (extra headers), ``timeout_s`` (per
request), ``retries`` (connection errors and HTTP 429/502/503/504), ``backoff_s`` (first retry
delay, doubling). ``default`` may be omitted when exactly one server is configured.

Secrets are read from files at load time so they never appear in the configuration itself.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.domain.errors import InvalidInput, SlideNotFound

CONFIG_ENV = "MARROWSCOPE_DICOMWEB_CONFIG"


@dataclass(frozen=True)
class DicomWebServer:
    """One configured DICOMweb endpoint; ``headers`` include any Authorization header."""

    name: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict, hash=False)
    timeout_s: float = 30.0
    retries: int = 3
    backoff_s: float = 0.5

    def __repr__(self) -> str:  # never print credentials
        return f"DicomWebServer(name={self.name!r}, url={self.url!r})"


@dataclass(frozen=True)
class DicomWebServers:
    """All configured servers by name, and the default name."""

    servers: Mapping[str, DicomWebServer]
    default: str | None = None

    def get(self, name: str) -> DicomWebServer:
        """The server called ``name`` (empty = default); unknown names are an error."""
        key = name or self.default or ""
        if key not in self.servers:
            known = ", ".join(sorted(self.servers)) or "none"
            raise SlideNotFound(
                f"DICOMweb server {key!r} is not configured (known: {known}; "
                f"configure servers in the file named by {CONFIG_ENV})"
            )
        return self.servers[key]


def _read_secret(path: str, what: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise InvalidInput(f"cannot read {what} file {path}: {exc.strerror}") from exc


def server_from_dict(name: str, raw: Mapping[str, Any]) -> DicomWebServer:
    """One server entry of the configuration file."""
    url = str(raw.get("url", "")).rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise InvalidInput(f"DICOMweb server {name!r}: url must start with http:// or https://")
    headers = {str(k): str(v) for k, v in dict(raw.get("headers", {})).items()}
    if raw.get("token_file"):
        headers["Authorization"] = "Bearer " + _read_secret(str(raw["token_file"]), "token")
    elif raw.get("username"):
        password = _read_secret(str(raw["password_file"]), "password") if raw.get(
            "password_file"
        ) else ""
        pair = f"{raw['username']}:{password}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    timeout_s = float(raw.get("timeout_s", 30.0))
    retries = int(raw.get("retries", 3))
    backoff_s = float(raw.get("backoff_s", 0.5))
    if timeout_s <= 0 or retries < 0 or backoff_s < 0:
        raise InvalidInput(f"DICOMweb server {name!r}: timeout, retries, backoff must be >= 0")
    return DicomWebServer(name, url, headers, timeout_s, retries, backoff_s)


def servers_from_dict(raw: Mapping[str, Any]) -> DicomWebServers:
    entries = raw.get("servers", {})
    if not isinstance(entries, Mapping):
        raise InvalidInput("DICOMweb configuration: 'servers' must be an object")
    servers = {name: server_from_dict(name, entry) for name, entry in entries.items()}
    default = raw.get("default") or (next(iter(servers)) if len(servers) == 1 else None)
    return DicomWebServers(servers, default)


def load_dicomweb_servers(path: str | os.PathLike[str] | None = None) -> DicomWebServers:
    """Servers from ``path``, else from the file named by ``MARROWSCOPE_DICOMWEB_CONFIG``.

    No file configured → no servers (every DICOMweb reference is then refused).
    """
    source = path or os.environ.get(CONFIG_ENV)
    if not source:
        return DicomWebServers({}, None)
    try:
        raw = json.loads(Path(source).read_text())
    except OSError as exc:
        raise InvalidInput(f"cannot read DICOMweb configuration {source}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"DICOMweb configuration {source} is not valid JSON: {exc}") from exc
    if not isinstance(raw, Mapping):
        raise InvalidInput(f"DICOMweb configuration {source} must be a JSON object")
    return servers_from_dict(raw)
