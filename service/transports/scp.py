"""DICOM C-STORE SCP for whole-slide images (pynetdicom).

Accepts VL Whole Slide Microscopy Image Storage in explicit VR little endian, JPEG baseline and
JPEG 2000 (lossless and lossy) from allow-listed callers (AE title + host), writes each instance
durably to the spool before answering success, and announces a series once no instance has
arrived for ``stable_age_s`` (a stable series).
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Callable
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from service.domain.errors import ResourceExhausted
from service.transports.scp_config import ScpConfig
from service.transports.scp_spool import Spool, SpooledSeries

LOG = logging.getLogger(__name__)

VL_WSI_STORAGE = "1.2.840.10008.5.1.4.1.1.77.1.6"
VERIFICATION = "1.2.840.10008.1.1"
ACCEPTED_TRANSFER_SYNTAXES = (
    "1.2.840.10008.1.2.1",  # explicit VR little endian
    "1.2.840.10008.1.2.4.50",  # JPEG baseline (process 1)
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 lossless only
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
)
REQUIRED_ATTRIBUTES = (
    "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID",
    "Rows", "Columns", "TotalPixelMatrixColumns", "TotalPixelMatrixRows",
)

STATUS_SUCCESS = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_DATASET_MISMATCH = 0xA900
STATUS_CANNOT_UNDERSTAND = 0xC000
STATUS_PROCESSING_FAILURE = 0x0110

StableHandler = Callable[[SpooledSeries], None]


class MalformedInstance(Exception):
    """The received instance is not a usable VL WSI instance."""


def validate_instance(data: bytes, affected_sop_instance_uid: str) -> Dataset:
    """Parses the encoded instance and checks what the pipeline needs; raises MalformedInstance."""
    try:
        ds = dcmread(io.BytesIO(data), defer_size="4 KB")
    except (InvalidDicomError, ValueError, EOFError, OSError, KeyError, TypeError) as exc:
        raise MalformedInstance(f"not decodable: {exc}") from exc
    missing = [name for name in REQUIRED_ATTRIBUTES if not str(ds.get(name, "")).strip()]
    if missing:
        raise MalformedInstance(f"missing {', '.join(missing)}")
    if str(ds.SOPClassUID) != VL_WSI_STORAGE:
        raise MalformedInstance(f"SOP class {ds.SOPClassUID} is not VL WSI")
    if str(ds.SOPInstanceUID) != affected_sop_instance_uid:
        raise MalformedInstance("SOP Instance UID differs from the C-STORE request")
    if (0x7FE0, 0x0010) not in ds and (0x7FE0, 0x0008) not in ds:
        raise MalformedInstance("no pixel data")
    return ds


class StorageScp:
    """The running SCP: ``start()`` returns once it listens; ``stop()`` shuts it down."""

    def __init__(self, config: ScpConfig, on_stable: StableHandler) -> None:
        self.config = config
        self.spool = Spool(config.spool_dir, min_free_bytes=config.min_free_bytes)
        self._on_stable = on_stable
        self._server: Any = None
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port actually bound (useful with port 0)."""
        if self._server is None:
            return self.config.port
        return int(self._server.server_address[1])

    def _on_requested(self, event: Any) -> None:
        requestor = event.assoc.requestor
        calling = str(requestor.primitive.calling_ae_title).strip()
        host = str(requestor.address)
        if not self.config.caller_allowed(calling, host):
            LOG.warning("refusing association from %s@%s (not allow-listed)", calling, host)
            event.assoc.acse.send_reject(0x01, 0x01, 0x03)

    def _on_store(self, event: Any) -> int:
        calling = str(event.assoc.requestor.ae_title).strip()
        try:
            data = bytes(event.encoded_dataset(include_meta=True))
            ds = validate_instance(data, str(event.request.AffectedSOPInstanceUID))
            self.spool.store(
                data, str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID),
                str(ds.SOPInstanceUID), calling,
            )
        except MalformedInstance as exc:
            LOG.warning("rejecting instance from %s: %s", calling, exc)
            if "not decodable" in str(exc):
                return STATUS_CANNOT_UNDERSTAND
            return STATUS_DATASET_MISMATCH
        except ResourceExhausted as exc:
            LOG.error("refusing instance from %s: %s", calling, exc)
            return STATUS_OUT_OF_RESOURCES
        except OSError as exc:
            LOG.error("cannot spool instance from %s: %s", calling, exc)
            return STATUS_OUT_OF_RESOURCES
        return STATUS_SUCCESS

    def _build_ae(self) -> Any:
        from pynetdicom import AE

        ae = AE(ae_title=self.config.ae_title)
        ae.maximum_associations = self.config.max_associations
        ae.maximum_pdu_size = self.config.max_pdu
        ae.add_supported_context(VL_WSI_STORAGE, list(ACCEPTED_TRANSFER_SYNTAXES))
        ae.add_supported_context(VERIFICATION)
        return ae

    def start(self) -> None:
        from pynetdicom import evt

        handlers = [
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_C_STORE, self._on_store),
        ]
        self._server = self._build_ae().start_server(
            (self.config.bind_host, self.config.port), block=False, evt_handlers=handlers
        )
        self._watcher = threading.Thread(
            target=self._watch_stable, name="scp-stable-series", daemon=True
        )
        self._watcher.start()
        LOG.info("SCP %s listening on %s:%d", self.config.ae_title, self.config.bind_host,
                 self.port)

    def announce_stable(self) -> int:
        """Hands every stable series to the handler once; returns how many were handed on."""
        count = 0
        for series in self.spool.stable_series(self.config.stable_age_s):
            try:
                self._on_stable(series)
            except Exception:
                LOG.exception("stable-series handler failed for series %s", series.series_key)
                continue
            if self.spool.mark_announced(series):
                count += 1
        return count

    def _watch_stable(self) -> None:
        interval = min(1.0, self.config.stable_age_s / 4)
        while not self._stop.wait(interval):
            self.announce_stable()

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        self.spool.close()
