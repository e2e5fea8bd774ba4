"""Registering a model = pinning its checkpoints' sha256 and recording its µm/px in a manifest."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from service.domain.errors import InvalidInput
from service.training.train import TrainedModel

if TYPE_CHECKING:
    from adapters.segmenters.nnunet_manifest import ModelEntry


def default_manifest() -> Path:
    from adapters.segmenters.nnunet_manifest import MANIFEST_ENV, MANIFEST_NAME, checkpoints_dir

    env = os.environ.get(MANIFEST_ENV)
    return Path(env) if env else checkpoints_dir() / MANIFEST_NAME


def register_path(
    model: Path,
    *,
    name: str,
    mpp: float,
    channels: str | None = None,
    licence: str = "unspecified",
    source: str = "user",
    default: bool = False,
    manifest: Path | None = None,
) -> ModelEntry:
    """Adds ``model`` (folder, zip or .pth) to the manifest; reads channels/labels from it.

    Registering is the explicit act of trusting the file, so it is unpickled here to check it
    really is a loadable nnU-Net v2 model.
    """
    from adapters.segmenters.nnunet_checkpoint import CHECKPOINT_NAMES, read_bundle
    from adapters.segmenters.nnunet_manifest import ModelEntry, register_model, sha256_file
    from adapters.segmenters.nnunet_network import describe

    if not 0.05 <= mpp <= 100:
        raise InvalidInput(f"--mpp {mpp} outside [0.05, 100] µm/px")
    model = model.resolve()
    layout = describe(read_bundle(model, None, lambda what, sha: None))
    if channels is not None and channels != layout.channels:
        raise InvalidInput(f"--channels {channels} but the model takes {layout.channels} input")
    if model.is_dir():
        members = tuple(sha256_file(p) for n in CHECKPOINT_NAMES for p in sorted(model.rglob(n)))
        sha = members[0]
    else:
        members, sha = (), sha256_file(model)
    entry = ModelEntry(
        name=name, path=model, sha256=sha, mpp=mpp, channels=layout.channels,
        labels=layout.labels, licence=licence, source=source, default=default,
        member_sha256=members,
    )
    register_model(manifest or default_manifest(), entry)
    return entry


def register_trained(
    trained: TrainedModel, name: str, licence: str, manifest: Path | None
) -> ModelEntry:
    return register_path(
        trained.folder, name=name, mpp=trained.mpp, channels=trained.channels, licence=licence,
        source=f"marrowscope train ({trained.folder.name}, fold {trained.fold})",
        manifest=manifest,
    )
