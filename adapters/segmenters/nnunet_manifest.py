"""The model manifest: which nnU-Net checkpoints are trusted, and what they were trained on.

nnU-Net checkpoints are pickles, so loading one runs code. A checkpoint is loaded only if its
sha256 is listed in a manifest (``checkpoints/manifest.json`` plus the optional file named by
``MARROWSCOPE_MODEL_MANIFEST``), or if ``MARROWSCOPE_TRUST_MODELS=1`` is set, which logs a warning.
The manifest also carries what the checkpoint itself does not: the µm/px of the training images,
the licence and the source.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from service.domain.errors import ModelUnavailable

MANIFEST_ENV = "MARROWSCOPE_MODEL_MANIFEST"
TRUST_ENV = "MARROWSCOPE_TRUST_MODELS"
CHECKPOINTS_ENV = "MARROWSCOPE_CHECKPOINTS"
MANIFEST_NAME = "manifest.json"

Channels = Literal["rgb", "grey"]


@dataclass(frozen=True)
class ModelEntry:
    """One trusted model: a checkpoint file (zip, .pth) or a results folder's checkpoints.

    ``sha256`` is the hash of the file at ``path``; ``member_sha256`` lists the hashes of the
    ``.pth`` files of a results folder (each one is checked before it is unpickled).
    ``mpp`` is the µm/px of the training images; ``labels`` maps label names to values.
    """

    name: str
    path: Path
    sha256: str
    mpp: float
    channels: Channels
    labels: tuple[tuple[str, int], ...]
    licence: str
    source: str
    default: bool = False
    member_sha256: tuple[str, ...] = ()
    description: str = ""

    def trusts(self, sha256: str) -> bool:
        return sha256 == self.sha256 or sha256 in self.member_sha256

    def to_json(self, base: Path) -> dict[str, Any]:
        try:
            rel = str(self.path.resolve().relative_to(base.resolve()))
        except ValueError:
            rel = str(self.path.resolve())
        out: dict[str, Any] = {
            "name": self.name,
            "path": rel,
            "sha256": self.sha256,
            "mpp": self.mpp,
            "channels": self.channels,
            "labels": dict(self.labels),
            "licence": self.licence,
            "source": self.source,
            "default": self.default,
        }
        if self.member_sha256:
            out["member_sha256"] = list(self.member_sha256)
        if self.description:
            out["description"] = self.description
        return out


@dataclass(frozen=True)
class Manifest:
    """All trusted models from one or more manifest files."""

    entries: tuple[ModelEntry, ...] = ()
    sources: tuple[Path, ...] = field(default=())

    def find_sha256(self, sha256: str) -> ModelEntry | None:
        return next((e for e in self.entries if e.trusts(sha256)), None)

    def find_name(self, name: str) -> ModelEntry | None:
        return next((e for e in self.entries if e.name == name), None)

    def default(self) -> ModelEntry:
        for entry in self.entries:
            if entry.default:
                return entry
        listed = ", ".join(str(s) for s in self.sources) or "no manifest found"
        raise ModelUnavailable(
            f"no default nnU-Net model in the manifest ({listed}); pass --model PATH"
        )


def checkpoints_dir() -> Path:
    """The folder of shipped checkpoints (``$MARROWSCOPE_CHECKPOINTS`` or the repo's)."""
    env = os.environ.get(CHECKPOINTS_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "checkpoints"


def manifest_paths() -> tuple[Path, ...]:
    paths = [checkpoints_dir() / MANIFEST_NAME]
    extra = os.environ.get(MANIFEST_ENV)
    if extra:
        paths.append(Path(extra))
    return tuple(paths)


def trust_all_from_env() -> bool:
    return os.environ.get(TRUST_ENV, "").strip().lower() in ("1", "true", "yes")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _entry(raw: dict[str, Any], base: Path, source: Path) -> ModelEntry:
    try:
        channels = raw["channels"]
        if channels not in ("rgb", "grey"):
            raise ValueError(f"channels must be rgb or grey, not {channels!r}")
        return ModelEntry(
            name=str(raw["name"]),
            path=(base / str(raw["path"])).resolve(),
            sha256=str(raw["sha256"]).lower(),
            mpp=float(raw["mpp"]),
            channels=channels,
            labels=tuple((str(k), int(v)) for k, v in dict(raw["labels"]).items()),
            licence=str(raw.get("licence", "unknown")),
            source=str(raw.get("source", "unknown")),
            default=bool(raw.get("default", False)),
            member_sha256=tuple(str(s).lower() for s in raw.get("member_sha256", ())),
            description=str(raw.get("description", "")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelUnavailable(f"malformed model manifest {source}: {exc}") from exc


def read_manifest_file(path: Path) -> list[ModelEntry]:
    if not path.is_file():
        return []
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelUnavailable(f"cannot read model manifest {path}: {exc}") from exc
    return [_entry(item, path.parent, path) for item in raw.get("models", [])]


def load_manifest(paths: tuple[Path, ...] | None = None) -> Manifest:
    """Entries of every manifest file that exists (shipped one first)."""
    paths = manifest_paths() if paths is None else paths
    entries: list[ModelEntry] = []
    for path in paths:
        entries.extend(read_manifest_file(path))
    return Manifest(tuple(entries), tuple(p for p in paths if p.is_file()))


def register_model(manifest_path: Path, entry: ModelEntry) -> None:
    """Adds or replaces (by name) ``entry`` in ``manifest_path``; keeps one default."""
    entries = [e for e in read_manifest_file(manifest_path) if e.name != entry.name]
    if entry.default:
        entries = [_without_default(e) for e in entries]
    entries.append(entry)
    base = manifest_path.parent
    doc = {"models": [e.to_json(base) for e in entries]}
    manifest_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = manifest_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(manifest_path)


def _without_default(entry: ModelEntry) -> ModelEntry:
    from dataclasses import replace

    return replace(entry, default=False)
