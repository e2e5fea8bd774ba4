"""Server configuration: embedded defaults < TOML file < ``MARROWSCOPE_*`` environment < CLI flags.

The file's top-level keys are the field names of :class:`ServerConfig`; PACS base URLs come from a
``[pacs]`` table (name = URL) and nowhere else. Every environment variable is ``MARROWSCOPE_`` plus
the upper-case field name (lists separated by ``os.pathsep`` for paths, commas otherwise).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.domain.errors import InvalidInput

ENV_PREFIX = "MARROWSCOPE_"
MiB = 1024 * 1024


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/marrowscope`` (``~/.local/share/marrowscope``)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local",
                                                            "share")
    return Path(base) / "marrowscope"


@dataclass(frozen=True)
class ServerConfig:
    """Everything `marrowscope serve` needs; every field has a working default."""

    host: str = "127.0.0.1"
    port: int = 50051
    data_dir: Path = field(default_factory=default_data_dir)
    slide_roots: tuple[Path, ...] = ()  # empty = the working directory at start-up
    pacs: tuple[tuple[str, str], ...] = ()  # (name, DICOMweb base URL); the first is the default
    segmenter: str = "classical"
    # requests may name these, plus the server's own default; the meaningless-but-fast "fake"
    # segmenter is opt-in (a load-test server runs with `--segmenter fake`)
    allowed_segmenters: tuple[str, ...] = ("classical", "nnunet")
    default_outputs: tuple[str, ...] = ("overlay", "geojson", "sr", "ann")
    workers: int = 1
    gpus: tuple[str, ...] = ()  # e.g. ("0", "1"): one worker pinned per GPU (at least)
    queue_limit: int = 64
    max_attempts: int = 3
    lease_s: float = 30.0
    backoff_s: float = 2.0
    drain_s: float = 30.0
    token_file: Path | None = None
    tokens: str = ""  # inline "token roles [name]" entries separated by ';' (env use)
    allow_unauthenticated: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None  # set → mutual TLS (clients must present a certificate)
    reflection: bool = False
    max_message_bytes: int = 4 * MiB
    artifact_chunk_bytes: int = 256 * 1024
    max_watch_s: float = 24 * 3600.0

    @property
    def ledger_path(self) -> Path:
        return self.data_dir / "jobs.sqlite3"

    @property
    def results_root(self) -> Path:
        return self.data_dir / "results"

    @property
    def effective_slide_roots(self) -> tuple[Path, ...]:
        roots = self.slide_roots or (Path.cwd(),)
        return tuple(Path(os.path.realpath(r)) for r in roots)

    def pacs_url(self, name: str) -> str:
        """The configured base URL of PACS ``name`` ('' = the first configured)."""
        if not self.pacs:
            raise InvalidInput("no PACS is configured on this server (config table [pacs])")
        if not name:
            return self.pacs[0][1]
        for key, url in self.pacs:
            if key == name:
                return url
        raise InvalidInput(
            f"unknown PACS {name!r}; configured: {', '.join(k for k, _ in self.pacs)}"
        )

    def validate(self) -> ServerConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise InvalidInput("tls_cert and tls_key must be given together")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise InvalidInput("tls_client_ca (mutual TLS) needs tls_cert and tls_key")
        if self.workers < 1 or self.queue_limit < 1 or self.max_attempts < 1:
            raise InvalidInput("workers, queue_limit and max_attempts must be at least 1")
        if not 0 <= self.port <= 65535:
            raise InvalidInput(f"port {self.port} outside [0, 65535]")
        return self


def _convert(name: str, raw: Any, current: Any) -> Any:
    """Converts a file/env value to the type of the field's default."""
    hint = ServerConfig.__dataclass_fields__[name].type
    try:
        if name == "pacs":
            if isinstance(raw, str):  # env: "name=url,name=url"
                raw = dict(item.split("=", 1) for item in raw.split(",") if item)
            return tuple((str(k), str(v)) for k, v in dict(raw).items())
        if isinstance(current, bool):
            return raw if isinstance(raw, bool) else str(raw).lower() in ("1", "true", "yes", "on")
        if isinstance(current, int):
            return int(raw)
        if isinstance(current, float):
            return float(raw)
        if "tuple[Path" in str(hint):
            items = raw.split(os.pathsep) if isinstance(raw, str) else raw
            return tuple(Path(str(p)).expanduser() for p in items if str(p))
        if "tuple[str" in str(hint):
            items = raw.split(",") if isinstance(raw, str) else raw
            return tuple(str(p).strip() for p in items if str(p).strip())
        if "Path" in str(hint):
            return None if raw in ("", None) else Path(str(raw)).expanduser()
        return str(raw)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"configuration {name}: cannot use {raw!r} ({exc})") from exc


def _apply(config: ServerConfig, values: Mapping[str, Any], origin: str) -> ServerConfig:
    known = {f.name for f in dataclasses.fields(ServerConfig)}
    updates: dict[str, Any] = {}
    for name, raw in values.items():
        if name not in known:
            raise InvalidInput(f"{origin}: unknown setting {name!r}")
        updates[name] = _convert(name, raw, getattr(config, name))
    return dataclasses.replace(config, **updates)


def load_config(
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> ServerConfig:
    """Defaults, then the TOML file (``path`` or ``$MARROWSCOPE_CONFIG``), then the environment,
    then ``overrides`` (CLI flags; ``None`` values are ignored)."""
    env = os.environ if environ is None else environ
    config = ServerConfig()
    file = path or (Path(env[ENV_PREFIX + "CONFIG"]) if env.get(ENV_PREFIX + "CONFIG") else None)
    if file is not None:
        try:
            data = tomllib.loads(file.read_text())
        except FileNotFoundError as exc:
            raise InvalidInput(f"configuration file {file} does not exist") from exc
        except tomllib.TOMLDecodeError as exc:
            raise InvalidInput(f"configuration file {file} is not valid TOML: {exc}") from exc
        config = _apply(config, data, str(file))
    env_values = {
        f.name: env[ENV_PREFIX + f.name.upper()]
        for f in dataclasses.fields(ServerConfig)
        if ENV_PREFIX + f.name.upper() in env
    }
    config = _apply(config, env_values, "environment")
    config = _apply(config, {k: v for k, v in (overrides or {}).items() if v is not None}, "flags")
    return config.validate()
