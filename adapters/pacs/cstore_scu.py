"""DICOM C-STORE SCU (pynetdicom): send instances to a PACS, and a C-FIND existence check."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset

from service.domain.errors import OutputError

LOG = logging.getLogger(__name__)

STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"


@dataclass(frozen=True)
class DicomPeer:
    """A remote DICOM node: its AE title, host and port, and the AE title we call it with."""

    ae_title: str
    host: str
    port: int
    calling_ae_title: str = "MARROWSCOPE"
    timeout_s: float = 30.0


def _contexts_for(datasets: Iterable[Dataset]) -> list[tuple[str, str]]:
    """(SOP class, transfer syntax) pairs needed to send the datasets, without duplicates."""
    seen: list[tuple[str, str]] = []
    for ds in datasets:
        pair = (str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID))
        if pair not in seen:
            seen.append(pair)
    return seen


class CStoreSender:
    """Sends datasets over one association per call; raises ``OutputError`` on any failure."""

    def __init__(self, peer: DicomPeer) -> None:
        self._peer = peer

    @property
    def name(self) -> str:
        return f"cstore:{self._peer.ae_title}@{self._peer.host}:{self._peer.port}"

    def _associate(self, contexts: Sequence[tuple[str, str]], find: bool = False):  # type: ignore[no-untyped-def]
        from pynetdicom import AE

        ae = AE(ae_title=self._peer.calling_ae_title)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self._peer.timeout_s
        for sop_class, syntax in contexts:
            ae.add_requested_context(sop_class, syntax)
        if find:
            ae.add_requested_context(STUDY_ROOT_FIND)
        assoc = ae.associate(self._peer.host, self._peer.port, ae_title=self._peer.ae_title)
        if not assoc.is_established:
            raise OutputError(f"{self.name}: association refused or failed")
        return assoc

    def send(self, datasets: Sequence[Dataset]) -> list[int]:
        """C-STORE each dataset over one association; the status of each (-1: no answer)."""
        if not datasets:
            return []
        assoc = self._associate(_contexts_for(datasets))
        statuses: list[int] = []
        try:
            for ds in datasets:
                rsp = assoc.send_c_store(ds)
                status = int(rsp.Status) if rsp and "Status" in rsp else -1
                statuses.append(status)
        finally:
            assoc.release()
        return statuses

    def store(self, datasets: Sequence[Dataset]) -> list[int]:
        """C-STORE each dataset; raises ``OutputError`` unless every status is a success."""
        statuses = self.send(datasets)
        bad = [hex(s) for s in statuses if s not in (0x0000, 0xB000, 0xB007, 0xB006)]
        if bad:
            raise OutputError(f"{self.name}: C-STORE failed with status {', '.join(bad)}")
        return statuses

    def store_files(self, paths: Sequence[Path]) -> list[int]:
        return self.store([dcmread(p) for p in paths])

    def exists(self, study_uid: str, series_uid: str, sop_instance_uid: str) -> bool:
        """C-FIND at IMAGE level for the SOP Instance UID."""
        query = Dataset()
        query.QueryRetrieveLevel = "IMAGE"
        query.StudyInstanceUID = study_uid
        query.SeriesInstanceUID = series_uid
        query.SOPInstanceUID = sop_instance_uid
        assoc = self._associate([], find=True)
        found = False
        try:
            for status, identifier in assoc.send_c_find(query, STUDY_ROOT_FIND):
                if status is not None and int(status.Status) in (0xFF00, 0xFF01) and identifier:
                    found = found or str(identifier.get("SOPInstanceUID", "")) == sop_instance_uid
        finally:
            assoc.release()
        return found
