"""The ``nnunet`` segmenter: any trained nnU-Net v2 2D model, in-process and batched.

``--model`` may be a results folder, an exported model zip, a bare checkpoint ``.pth`` or the
name of a manifest entry; without it the manifest's default (the demo model) is used. torch and
nnunetv2 are imported only when a model is actually loaded.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from adapters.segmenters.nnunet_checkpoint import CHECKPOINT_NAMES, NnUNetBundle, read_bundle
from adapters.segmenters.nnunet_manifest import (
    TRUST_ENV,
    Manifest,
    ModelEntry,
    load_manifest,
    sha256_file,
    trust_all_from_env,
)
from service.domain.errors import InvalidInput, ModelUnavailable
from service.pipeline.params import AnalysisParams
from service.ports.segmenters import SegmenterSpec, TileProbabilities

if TYPE_CHECKING:
    from adapters.segmenters.nnunet_engine import SlidingWindowEngine
    from adapters.segmenters.nnunet_network import ModelLayout

log = logging.getLogger(__name__)

PRECISION_ENV = "MARROWSCOPE_PRECISION"
DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
GPU_TILES_PER_CALL = 16
CPU_TILES_PER_CALL = 2


class NnUNetSegmenter:
    """Marrow (label 1, plus a fat label if the model has one) probabilities from nnU-Net v2."""

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        device: str = "auto",
        tta: bool = False,
        folds: tuple[str, ...] | None = None,
        manifest: Manifest | None = None,
        trust_unlisted: bool | None = None,
        window_batch: int | None = None,
        precision: str | None = None,
    ) -> None:
        precision = precision or os.environ.get(PRECISION_ENV, "auto")
        if precision not in ("auto", "bf16", "fp32"):
            raise InvalidInput(f"{PRECISION_ENV}={precision!r}: use auto, bf16 or fp32")
        self._precision = precision
        if DEVICE.match(device) is None:
            raise InvalidInput(f"unknown device {device!r} (use auto, cpu, cuda, cuda:N or mps)")
        self._manifest = manifest if manifest is not None else load_manifest()
        self._trust_unlisted = trust_all_from_env() if trust_unlisted is None else trust_unlisted
        self.path, self._entry = _resolve(model, self._manifest)
        self._device = device
        self._tta = tta
        self._folds = folds
        self._window_batch = window_batch
        self._bundle: NnUNetBundle | None = None
        self._layout: ModelLayout | None = None
        self._engine: SlidingWindowEngine | None = None
        self._spec: SegmenterSpec | None = None
        self._warned = False

    @classmethod
    def from_params(cls, params: AnalysisParams) -> NnUNetSegmenter:
        return cls(params.model, device=params.device, tta=params.tta)

    # --- metadata -----------------------------------------------------------------------

    @property
    def spec(self) -> SegmenterSpec:
        if self._spec is None:
            self._spec = self._build_spec()
        return self._spec

    def _build_spec(self) -> SegmenterSpec:
        entry = self._entry or self._lookup_entry()
        if entry is not None:
            name, mpp, sha = entry.name, entry.mpp, entry.sha256
            channels = entry.channels
            fat = any(v > 1 and _is_fat(k) for k, v in entry.labels)
        else:  # trusted via the environment: everything must come from the model itself
            layout = self._read_layout()
            assert self._bundle is not None
            name, sha = self.path.name, None
            mpp = _mpp_from_dataset(self._bundle, self.path) * layout.spacing
            channels, fat = layout.channels, layout.fat_channel is not None
        return SegmenterSpec(
            name="nnunet",
            version=name,
            mpp=mpp,
            channels=channels,
            provides_fat=fat,
            batch_size=GPU_TILES_PER_CALL if self._cuda_expected() else CPU_TILES_PER_CALL,
            sha256=sha,
            parameters=(
                ("model", name),
                ("folds", ",".join(self._folds) if self._folds else "all"),
                ("tta", "mirror" if self._tta else "none"),
                ("precision", self._resolved_precision()),
            ),
        )

    def _resolved_precision(self) -> str:
        from adapters.segmenters.nnunet_engine import use_bf16

        device = "cuda" if self._cuda_expected() else self._device.split(":")[0]
        device = "cpu" if device == "auto" else device
        return "bf16" if use_bf16(device, self._precision) else "fp32"

    def _cuda_expected(self) -> bool:
        if self._device == "cpu":
            return False
        if self._device.startswith("cuda"):
            return True
        import torch

        return bool(torch.cuda.is_available())

    def _lookup_entry(self) -> ModelEntry | None:
        """The manifest entry trusting this file (folders: any of its checkpoints)."""
        for sha in _hashes(self.path):
            entry = self._manifest.find_sha256(sha)
            if entry is not None:
                self._entry = entry
                return entry
        return None

    # --- loading -------------------------------------------------------------------------

    def _trust(self, what: str, sha256: str) -> None:
        if self._manifest.find_sha256(sha256) is not None:
            return
        if self._trust_unlisted:
            if not self._warned:
                log.warning(
                    "loading %s although its sha256 %s is not in the model manifest (%s=1): "
                    "nnU-Net checkpoints run code when unpickled",
                    what,
                    sha256,
                    TRUST_ENV,
                )
                self._warned = True
            return
        listed = ", ".join(str(s) for s in self._manifest.sources) or "no manifest file"
        raise ModelUnavailable(
            f"{what}: untrusted checkpoint (sha256 {sha256} is not in {listed}); checkpoints run "
            f"code when loaded: add it with `marrowscope register-model` or set {TRUST_ENV}=1"
        )

    def _read_layout(self) -> ModelLayout:
        if self._layout is None:
            from adapters.segmenters.nnunet_network import describe

            self._bundle = read_bundle(self.path, self._folds, self._trust)
            self._layout = describe(self._bundle)
            self._check_against_manifest(self._layout)
        return self._layout

    def _check_against_manifest(self, layout: ModelLayout) -> None:
        entry = self._entry
        if entry is not None and entry.channels != layout.channels:
            raise ModelUnavailable(
                f"{self.path}: channel mismatch: manifest entry {entry.name!r} says "
                f"{entry.channels}, dataset.json declares {layout.channels}"
            )

    def load(self) -> None:
        if self._engine is not None:
            return
        from adapters.segmenters.nnunet_engine import SlidingWindowEngine
        from adapters.segmenters.nnunet_network import build_networks

        _ = self.spec
        layout = self._read_layout()
        assert self._bundle is not None
        networks = build_networks(self._bundle, layout)
        self._engine = SlidingWindowEngine(
            networks,
            layout,
            self._bundle.mirror_axes if self._bundle.mirror_axes is not None else (0, 1),
            device=self._device,
            tta=self._tta,
            batch_size=self._window_batch,
            precision=self._precision,
        )
        self._bundle = _without_weights(self._bundle)  # the networks hold them now

    @property
    def device(self) -> str:
        return "unloaded" if self._engine is None else str(self._engine.device)

    # --- inference -------------------------------------------------------------------------

    def predict(self, tiles: npt.NDArray[np.uint8]) -> TileProbabilities:
        if tiles.dtype != np.uint8 or tiles.ndim != 4 or tiles.shape[-1] != 3:
            raise InvalidInput(
                "nnunet segmenter expects uint8 (N, H, W, 3) tiles, "
                f"got {tiles.dtype} {tiles.shape}"
            )
        self.load()
        assert self._engine is not None
        assert self._layout is not None
        if tiles.shape[0] == 0:
            empty = np.zeros(tiles.shape[:3], dtype=np.float32)
            return TileProbabilities(marrow=empty, fat=None)
        layout = self._layout
        if layout.fat_channel is None:
            probs = self._engine.predict(tiles, (layout.marrow_channel,))
            return TileProbabilities(marrow=np.ascontiguousarray(probs[:, 0]), fat=None)
        probs = self._engine.predict(tiles, (layout.marrow_channel, layout.fat_channel))
        fat = np.ascontiguousarray(probs[:, 1])
        marrow = np.clip(probs[:, 0] + fat, 0.0, 1.0).astype(np.float32)
        return TileProbabilities(marrow=marrow, fat=fat)


def _is_fat(label_name: str) -> bool:
    from adapters.segmenters.nnunet_network import FAT_NAME

    return FAT_NAME.search(label_name) is not None


def _resolve(model: str | Path | None, manifest: Manifest) -> tuple[Path, ModelEntry | None]:
    if model is None or str(model) == "":
        entry = manifest.default()
        if not entry.path.exists():
            raise ModelUnavailable(f"default model {entry.name!r} missing: {entry.path}")
        return entry.path, entry
    path = Path(model).expanduser()
    if path.exists():
        return path, None
    named = manifest.find_name(str(model))
    if named is not None:
        return named.path, named
    raise ModelUnavailable(f"model not found: {model} (neither a path nor a manifest name)")


def _hashes(path: Path) -> list[str]:
    if path.is_dir():
        files = [p for name in CHECKPOINT_NAMES for p in sorted(path.rglob(name))]
        return [sha256_file(p) for p in files]
    return [sha256_file(path)] if path.is_file() else []


def _mpp_from_dataset(bundle: NnUNetBundle, path: Path) -> float:
    """µm/px of the training images, recorded by ``marrowscope export-dataset`` in dataset.json."""
    meta = bundle.dataset_json.get("marrowscope", {})
    mpp = meta.get("mpp") if isinstance(meta, dict) else None
    if mpp is None:
        raise ModelUnavailable(
            f"{path}: training µm/px unknown (not in the manifest nor in dataset.json); "
            "register the model with `marrowscope register-model --mpp`"
        )
    return float(mpp)


def _without_weights(bundle: NnUNetBundle) -> NnUNetBundle:
    from dataclasses import replace

    return replace(bundle, fold_weights=())
