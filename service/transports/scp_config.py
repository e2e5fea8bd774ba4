"""Configuration of the C-STORE SCP: who may call, where instances go, when a series is stable."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from service.domain.errors import InvalidInput

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class CallerRule:
    """A calling AE title and the networks it may call from."""

    ae_title: str
    networks: tuple[IPNetwork, ...]

    def allows(self, ae_title: str, host: str) -> bool:
        if ae_title.strip() != self.ae_title:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in net for net in self.networks)

    @classmethod
    def parse(cls, text: str) -> CallerRule:
        """``AE@host[,host|cidr...]``, e.g. ``ORTHANC@127.0.0.1`` or ``PACS@10.1.0.0/16``."""
        ae, sep, hosts = text.partition("@")
        ae = ae.strip()
        if not sep or not ae or not hosts or len(ae) > 16:
            raise InvalidInput(f"caller rule {text!r}: expected AE@host[,host...] (AE ≤ 16 chars)")
        try:
            networks = tuple(
                ipaddress.ip_network(h.strip(), strict=False) for h in hosts.split(",") if h.strip()
            )
        except ValueError as exc:
            raise InvalidInput(f"caller rule {text!r}: {exc}") from exc
        return cls(ae, networks)


@dataclass(frozen=True)
class ScpConfig:
    """An empty ``allowed_callers`` refuses every association (secure default)."""

    spool_dir: Path
    ae_title: str = "MARROWSCOPE"
    bind_host: str = "127.0.0.1"
    port: int = 11112
    allowed_callers: tuple[CallerRule, ...] = ()
    stable_age_s: float = 30.0
    min_free_bytes: int = 2 * 2**30
    max_associations: int = 16
    max_pdu: int = 0  # 0 = unlimited

    def __post_init__(self) -> None:
        if not self.ae_title or len(self.ae_title) > 16:
            raise InvalidInput(f"AE title {self.ae_title!r} must be 1-16 characters")
        if self.stable_age_s <= 0:
            raise InvalidInput("stable series age must be > 0 s")
        if not 0 <= self.port <= 65535:
            raise InvalidInput(f"port {self.port} out of range")

    def caller_allowed(self, ae_title: str, host: str) -> bool:
        return any(rule.allows(ae_title, host) for rule in self.allowed_callers)
