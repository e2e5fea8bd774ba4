"""Reads an nnU-Net v2 model from a results folder, an exported zip or a bare checkpoint .pth.

Every path through here checks trust (a callable given by the caller) *before* unpickling, and
turns every failure into a one-line :class:`ModelUnavailable` naming the problem.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from service.domain.errors import ModelUnavailable

CHECKPOINT_NAMES = ("checkpoint_final.pth", "checkpoint_latest.pth", "checkpoint_best.pth")
REQUIRED_KEYS = ("network_weights", "init_args", "trainer_name")

# Called with (what, sha256) before anything is unpickled; raises ModelUnavailable if untrusted.
TrustCheck = Callable[[str, str], None]


@dataclass(frozen=True)
class NnUNetBundle:
    """Everything needed to rebuild and run a trained nnU-Net v2 model (weights on CPU)."""

    plans: dict[str, Any]
    dataset_json: dict[str, Any]
    configuration: str
    trainer_name: str
    mirror_axes: tuple[int, ...] | None
    folds: tuple[str, ...]
    fold_weights: tuple[dict[str, Any], ...]
    origin: str


def read_bundle(path: Path, folds: tuple[str, ...] | None, trust: TrustCheck) -> NnUNetBundle:
    """The model at ``path`` (folder, ``.zip`` or ``.pth``), restricted to ``folds`` if given."""
    if not path.exists():
        raise ModelUnavailable(f"model not found: {path}")
    if path.is_dir():
        return _read_folder(path, folds, trust)
    if zipfile.is_zipfile(path) and path.suffix.lower() == ".zip":
        return _read_zip(path, folds, trust)
    return _read_pth(path, trust)


def _sha256_bytes(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _unpickle(data: bytes, what: str) -> dict[str, Any]:
    import torch

    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for a damaged file
        raise ModelUnavailable(
            f"{what}: corrupt or unreadable checkpoint ({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(obj, dict) or any(k not in obj for k in REQUIRED_KEYS):
        keys = sorted(obj)[:8] if isinstance(obj, dict) else type(obj).__name__
        raise ModelUnavailable(
            f"{what}: not an nnU-Net v2 checkpoint (needs {', '.join(REQUIRED_KEYS)}; has {keys})"
        )
    return obj


def _load_checkpoint(data: bytes, what: str, trust: TrustCheck) -> dict[str, Any]:
    trust(what, _sha256_bytes(data))
    return _unpickle(data, what)


def _read_pth(path: Path, trust: TrustCheck) -> NnUNetBundle:
    what = str(path)
    ckpt = _load_checkpoint(_read_bytes(path), what, trust)
    init = ckpt["init_args"]
    if not isinstance(init, dict) or not all(
        k in init for k in ("plans", "configuration", "dataset_json")
    ):
        raise ModelUnavailable(
            f"{what}: nnU-Net checkpoint without plans/configuration/dataset_json in init_args "
            "(use the results folder or exported zip instead)"
        )
    return NnUNetBundle(
        plans=init["plans"],
        dataset_json=init["dataset_json"],
        configuration=str(init["configuration"]),
        trainer_name=str(ckpt["trainer_name"]),
        mirror_axes=_axes(ckpt),
        folds=(str(init.get("fold", "0")),),
        fold_weights=(ckpt["network_weights"],),
        origin=what,
    )


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ModelUnavailable(f"cannot read {path}: {exc}") from exc


def _axes(ckpt: dict[str, Any]) -> tuple[int, ...] | None:
    axes = ckpt.get("inference_allowed_mirroring_axes")
    return None if axes is None else tuple(int(a) for a in axes)


def _json(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelUnavailable(f"{what}: invalid JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise ModelUnavailable(f"{what}: expected a JSON object")
    return value


def _pick_folds(
    available: dict[str, str], folds: tuple[str, ...] | None, where: str
) -> tuple[str, ...]:
    """``available`` maps fold name ('0', 'all') to its checkpoint path."""
    if not available:
        raise ModelUnavailable(
            f"{where}: no fold_N/checkpoint_final.pth (or checkpoint_latest.pth) found"
        )
    if folds is None:
        return tuple(sorted(available, key=lambda f: (f == "all", f)))
    missing = [f for f in folds if f not in available]
    if missing:
        raise ModelUnavailable(
            f"{where}: missing fold {', '.join(missing)} "
            f"(available: {', '.join(sorted(available))})"
        )
    return folds


def _assemble(
    plans: dict[str, Any],
    dataset_json: dict[str, Any],
    checkpoints: list[tuple[str, dict[str, Any]]],
    origin: str,
) -> NnUNetBundle:
    first = checkpoints[0][1]
    return NnUNetBundle(
        plans=plans,
        dataset_json=dataset_json,
        configuration=str(first["init_args"].get("configuration", "2d")),
        trainer_name=str(first["trainer_name"]),
        mirror_axes=_axes(first),
        folds=tuple(f for f, _ in checkpoints),
        fold_weights=tuple(c["network_weights"] for _, c in checkpoints),
        origin=origin,
    )


def _fold_checkpoints(names: list[PurePosixPath], root: PurePosixPath) -> dict[str, str]:
    found: dict[str, str] = {}
    for preferred in reversed(CHECKPOINT_NAMES):  # final wins over latest over best
        for name in names:
            if name.name == preferred and name.parent.parent == root:
                fold_dir = name.parent.name
                if fold_dir.startswith("fold_"):
                    found[fold_dir.removeprefix("fold_")] = str(name)
    return found


def _read_folder(path: Path, folds: tuple[str, ...] | None, trust: TrustCheck) -> NnUNetBundle:
    root = _find_model_root([p.relative_to(path) for p in path.rglob("plans.json")], str(path))
    model_dir = path / root
    if not (model_dir / "dataset.json").is_file():
        raise ModelUnavailable(f"{model_dir}: dataset.json missing next to plans.json")
    files = [PurePosixPath(p.relative_to(path).as_posix()) for p in model_dir.rglob("*.pth")]
    available = _fold_checkpoints(files, PurePosixPath(root.as_posix()))
    chosen = _pick_folds(available, folds, str(model_dir))
    checkpoints = []
    for fold in chosen:
        file = path / available[fold]
        checkpoints.append((fold, _load_checkpoint(_read_bytes(file), str(file), trust)))
    plans = _json(_read_bytes(model_dir / "plans.json"), str(model_dir / "plans.json"))
    dataset_json = _json(_read_bytes(model_dir / "dataset.json"), str(model_dir / "dataset.json"))
    return _assemble(plans, dataset_json, checkpoints, str(model_dir))


def _find_model_root(plans_files: list[Any], where: str) -> PurePosixPath:
    """The folder holding plans.json; with several configurations, the 2d one."""
    roots = [PurePosixPath(str(p)).parent for p in plans_files]
    if not roots:
        raise ModelUnavailable(f"{where}: not an nnU-Net results folder (no plans.json)")
    if len(roots) == 1:
        return roots[0]
    two_d = [r for r in roots if r.name.endswith("__2d")]
    if len(two_d) == 1:
        return two_d[0]
    raise ModelUnavailable(
        f"{where}: several models inside ({', '.join(map(str, roots))}); point to one folder"
    )


def _read_zip(path: Path, folds: tuple[str, ...] | None, trust: TrustCheck) -> NnUNetBundle:
    data = _read_bytes(path)
    trust(str(path), _sha256_bytes(data))
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = [PurePosixPath(n) for n in zf.namelist()]
            root = _find_model_root([n for n in names if n.name == "plans.json"], str(path))
            available = _fold_checkpoints(names, root)
            chosen = _pick_folds(available, folds, f"{path}:{root}")
            plans = _json(zf.read(str(root / "plans.json")), f"{path}:plans.json")
            ds_name = str(root / "dataset.json")
            if ds_name not in zf.namelist():
                raise ModelUnavailable(f"{path}: dataset.json missing next to plans.json")
            dataset_json = _json(zf.read(ds_name), f"{path}:dataset.json")
            checkpoints = [
                (f, _unpickle(zf.read(available[f]), f"{path}:{available[f]}")) for f in chosen
            ]
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise ModelUnavailable(f"{path}: corrupt model zip ({exc})") from exc
    return _assemble(plans, dataset_json, checkpoints, str(path))
