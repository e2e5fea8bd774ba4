"""HTTP sessions and DICOMweb clients for a configured server: timeouts, retries, auth headers."""

from __future__ import annotations

from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from adapters.pacs.config import DicomWebServer

RETRY_STATUSES = (429, 502, 503, 504)


class _TimeoutSession(requests.Session):
    """A session that applies a default timeout to every request (requests has none)."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__()
        self._timeout_s = timeout_s

    def request(self, method: str, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", self._timeout_s)
        return super().request(method, url, *args, **kwargs)


def build_session(server: DicomWebServer) -> requests.Session:
    """A session with the server's headers, timeout and retries with exponential backoff.

    POST is retried too: everything marrowscope stores has UIDs derived from the job key,
    so storing it twice is harmless.
    """
    session = _TimeoutSession(server.timeout_s)
    retry = Retry(
        total=server.retries,
        connect=server.retries,
        read=server.retries,
        status=server.retries,
        backoff_factor=server.backoff_s,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"GET", "HEAD", "POST"}),
        raise_on_status=False,
        respect_retry_after_header=True,
    )
    adapter = HTTPAdapter(max_retries=retry, pool_connections=4, pool_maxsize=16)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers.update(dict(server.headers))
    return session


def build_dicomweb_client(server: DicomWebServer) -> Any:
    """A ``dicomweb_client.DICOMwebClient`` for the server (lazy import)."""
    from dicomweb_client.api import DICOMwebClient

    return DICOMwebClient(url=server.url, session=build_session(server))
