"""Storing results into a PACS over DICOMweb: STOW-RS, and a QIDO-RS existence check."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from pydicom.dataset import Dataset

from adapters.pacs.config import DicomWebServer
from adapters.pacs.dicomweb_session import build_dicomweb_client
from service.domain.errors import OutputError

LOG = logging.getLogger(__name__)


class DicomWebStore:
    """STOW-RS into one configured server; implements ``service.pacs.ports.ResultStore``."""

    def __init__(self, server: DicomWebServer, client: Any | None = None) -> None:
        self._server = server
        self._client = client or build_dicomweb_client(server)

    @property
    def name(self) -> str:
        return f"stow:{self._server.name}"

    def exists(self, study_uid: str, series_uid: str, sop_instance_uid: str) -> bool:
        """True when the instance is already in the PACS (QIDO-RS at instance level)."""
        from requests import RequestException

        try:
            found = self._client.search_for_instances(
                study_instance_uid=study_uid,
                search_filters={"SOPInstanceUID": sop_instance_uid},
            )
        except RequestException as exc:
            raise OutputError(f"QIDO-RS on {self._server.name!r} failed: {exc}") from exc
        for item in found or []:
            values = item.get("00080018", {}).get("Value", [])
            if sop_instance_uid in values:
                return True
        return False

    def store(self, datasets: Sequence[Dataset]) -> None:
        """STOW-RS all datasets (they must share one study) in one request."""
        if not datasets:
            return
        from requests import RequestException

        study_uid = str(datasets[0].StudyInstanceUID)
        try:
            response = self._client.store_instances(list(datasets), study_instance_uid=study_uid)
        except RequestException as exc:
            raise OutputError(f"STOW-RS to {self._server.name!r} failed: {exc}") from exc
        failed = response.get("00081198", {}).get("Value", []) if response else []
        if failed:
            raise OutputError(
                f"STOW-RS to {self._server.name!r}: {len(failed)} instance(s) refused"
            )
        LOG.info("stored %d instance(s) via STOW-RS to %s", len(datasets), self._server.name)
