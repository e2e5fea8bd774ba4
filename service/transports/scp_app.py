"""Wires the SCP, the routing ledger, a job submitter and a result store into one PACS service."""

from __future__ import annotations

import logging
from dataclasses import dataclass
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
    """The running PACS loop; ``stop()`` shuts the SCP and the router down."""

    scp: StorageScp
    router: PacsRouter
    ledger: RoutingLedger

    def start(self) -> None:
        self.router.start()
        self.scp.start()

    def stop(self) -> None:
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
) -> PacsService:
    """The ledger lives beside the spool index (``<spool>/routing.sqlite``)."""
    Path(scp_config.spool_dir).mkdir(parents=True, exist_ok=True)
    ledger = RoutingLedger(Path(scp_config.spool_dir) / "routing.sqlite")
    router = PacsRouter(ledger, submitter, store, policy)
    scp = StorageScp(scp_config, router.on_stable)
    return PacsService(scp, router, ledger)
