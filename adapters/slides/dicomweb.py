"""DICOM-WSI slides read over DICOMweb (WADO-RS frames) through wsidicom's web source.

References:

- ``dicomweb:<server>/<StudyInstanceUID>/<SeriesInstanceUID>``: ``<server>`` is a name from the
  DICOMweb configuration (``MARROWSCOPE_DICOMWEB_CONFIG``, see ``adapters.pacs.config``), which
  supplies the base URL, auth headers, timeout and retries;
- ``http(s)://<base>/studies/<study>/series/<series>``: for callers that already resolved a
  configured base URL (the gRPC service); the settings of the configured server whose URL is a
  prefix apply, else plain defaults without credentials.

Everything after opening (levels, µm/px, DICOM context, level-0 ``read_region``) is the file
adapter's ``DicomSlide``; only where the instances come from differs.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from adapters.pacs.config import DicomWebServer, DicomWebServers, load_dicomweb_servers
from adapters.pacs.dicomweb_session import build_dicomweb_client
from adapters.slides.dicom_slide import DicomSlide
from service.domain.errors import InvalidInput, MarrowscopeError, SlideNotFound, SlideUnreadable

UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")
URL_RE = re.compile(r"^(?P<base>https?://.+?)/studies/(?P<study>[0-9.]+)/series/(?P<series>[0-9.]+)/?$")


@dataclasses.dataclass(frozen=True)
class DicomWebReference:
    server: DicomWebServer
    study_uid: str
    series_uid: str

    @property
    def label(self) -> str:
        """A log-safe name (no UIDs: they may identify a patient)."""
        return f"dicomweb:{self.server.name}/<study>/<series>"


def _check_uid(uid: str, what: str) -> str:
    if not uid or len(uid) > 64 or not UID_RE.match(uid):
        raise InvalidInput(f"DICOMweb reference: {what} is not a DICOM UID")
    return uid


def parse_reference(reference: str, servers: DicomWebServers | None = None) -> DicomWebReference:
    """Resolves a reference to a configured server and the study/series UIDs."""
    servers = servers if servers is not None else load_dicomweb_servers()
    if reference.startswith("dicomweb:"):
        parts = reference[len("dicomweb:"):].split("/")
        if len(parts) != 3:
            raise InvalidInput(
                "DICOMweb reference must be "
                "dicomweb:<server>/<StudyInstanceUID>/<SeriesInstanceUID>"
            )
        name, study, series = parts
        return DicomWebReference(
            servers.get(name), _check_uid(study, "study"), _check_uid(series, "series")
        )
    match = URL_RE.match(reference)
    if not match:
        raise InvalidInput(
            "DICOMweb URL must end in /studies/<StudyInstanceUID>/series/<SeriesInstanceUID>"
        )
    base = match["base"].rstrip("/")
    server = next(
        (s for s in servers.servers.values() if base == s.url or base.startswith(s.url + "/")),
        DicomWebServer(name="url", url=base),
    )
    if server.url != base:
        server = dataclasses.replace(server, url=base)
    return DicomWebReference(
        server, _check_uid(match["study"], "study"), _check_uid(match["series"], "series")
    )


class DicomWebSlide(DicomSlide):
    """A ``SlideSource`` whose instances and frames come from a DICOMweb server."""

    def __init__(
        self, reference: str, mpp_override: float | None = None,
        servers: DicomWebServers | None = None,
    ) -> None:
        ref = parse_reference(reference, servers)
        self._adopt(_open_web(ref), reference, ref.label, mpp_override)
        self._info = dataclasses.replace(self._info, format="dicomweb")


def _open_web(ref: DicomWebReference) -> Any:
    import requests
    from wsidicom import WsiDicom, WsiDicomWebClient

    web = build_dicomweb_client(ref.server)
    try:
        found = web.search_for_series(
            study_instance_uid=ref.study_uid,
            search_filters={"SeriesInstanceUID": ref.series_uid},
        )
        if not found:
            raise SlideNotFound(f"{ref.label}: series not found on the server")
        return WsiDicom.open_web(WsiDicomWebClient(web), ref.study_uid, ref.series_uid)
    except MarrowscopeError:
        raise
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else 0
        if status == 404:
            raise SlideNotFound(f"{ref.label}: series not found on the server") from exc
        raise SlideUnreadable(f"{ref.label}: server answered HTTP {status}") from exc
    except requests.RequestException as exc:
        raise SlideUnreadable(f"{ref.label}: cannot reach DICOMweb server ({exc})") from exc
    except Exception as exc:  # wsidicom raises many types for missing or invalid series
        raise SlideUnreadable(f"{ref.label}: cannot open DICOM-WSI series ({exc})") from exc


def open_dicomweb_slide(reference: str, mpp_override: float | None = None) -> DicomWebSlide:
    """Opens ``reference`` (see the module docstring) as a level-0 ``SlideSource``."""
    return DicomWebSlide(reference, mpp_override)
