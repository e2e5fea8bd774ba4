"""Wires the SCP, the routing ledger, a job submitter and a result store into one PACS service."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from service.domain.errors import InvalidInput
from service.pacs.ledger import RoutingLedger
from service.pacs.ports import JobSubmitter, ResultStore
from service.pacs.router import PacsRouter, RouterPolicy
from service.transports.scp import StorageScp
from service.transports.scp_config import ScpConfig

LOG = logging.getLogger(__name__)


def parse_store_target(text: str) -> ResultStore:
    """``dicomweb:<configured server>`` (STOW-RS) or ``cstore:AE@host:port`` (C-STORE SCU)."""
    kind, _, rest = text.partition(":")
    if kind == "dicomweb":
        from adapters.pacs.config import load_dicomweb_servers
        from adapters.pacs.stow import DicomWebStore

        return DicomWebStore(load_dicomweb_servers().get(rest))
    if kind == "cstore":
        from adapters.pacs.cstore_scu import CStoreSender, DicomPeer

        ae, sep, address = rest.partition("@")
        host, _, port = address.rpartition(":")
        if not sep or not ae or not host or not port.isdigit():
            raise InvalidInput(f"store target {text!r}: expected cstore:AE@host:port")
        return CStoreSender(DicomPeer(ae, host, int(port)))
    raise InvalidInput(
        f"store target {text!r}: use dicomweb:<server name> or cstore:AE@host:port"
    )


@dataclass
class PacsService:
    """The running PACS loop; ``stop()`` shuts the SCP and the router down.

    With ``retention_s`` set, the spooled instances of a series are deleted that long after its
    results were stored (the ledger keeps the record, so a re-send is still recognised).
    """

    scp: StorageScp
    router: PacsRouter
    ledger: RoutingLedger
    retention_s: float | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _janitor: threading.Thread | None = None

    def start(self) -> None:
        self.router.start()
        self.scp.start()
        if self.retention_s is not None:
            self._janitor = threading.Thread(target=self._prune_loop, name="spool-janitor",
                                             daemon=True)
            self._janitor.start()

    def prune_spool(self, now: float | None = None) -> int:
        """Deletes spooled series stored more than ``retention_s`` ago; returns how many."""
        if self.retention_s is None:
            return 0
        cutoff = (time.time() if now is None else now) - self.retention_s
        pruned = 0
        for key in self.ledger.stored_series(cutoff):
            if self.scp.spool.forget_series(key, arrived_before=cutoff):
                pruned += 1
        if pruned:
            LOG.info("pruned %d stored series from the spool", pruned)
        return pruned

    def _prune_loop(self) -> None:
        interval = min(300.0, max(1.0, (self.retention_s or 0) / 10))
        while not self._stop.wait(interval):
            try:
                self.prune_spool()
            except Exception:
                LOG.exception("spool pruning failed")

    def stop(self) -> None:
        self._stop.set()
        if self._janitor is not None:
            self._janitor.join(timeout=10)
        self.scp.stop()
        self.router.stop()
        self.ledger.close()
        close = getattr(self.router.submitter, "close", None)
        if callable(close):
            close()


def build_pacs_service(
    scp_config: ScpConfig,
    submitter: JobSubmitter,
    store: ResultStore,
    policy: RouterPolicy | None = None,
    retention_s: float | None = None,
) -> PacsService:
    """The ledger lives beside the spool index (``<spool>/routing.sqlite``)."""
    Path(scp_config.spool_dir).mkdir(parents=True, exist_ok=True)
    ledger = RoutingLedger(Path(scp_config.spool_dir) / "routing.sqlite")
    router = PacsRouter(ledger, submitter, store, policy)
    scp = StorageScp(scp_config, router.on_stable)
    return PacsService(scp, router, ledger, retention_s)
