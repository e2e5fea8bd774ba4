"""Turns an :class:`NnUNetBundle` into torch networks plus the preprocessing its plans prescribe."""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from adapters.segmenters.nnunet_checkpoint import NnUNetBundle
from service.domain.errors import ModelUnavailable

if TYPE_CHECKING:
    from torch import nn

SUPPORTED_NORMALISATION = (
    "ZScoreNormalization",
    "CTNormalization",
    "NoNormalization",
    "RescaleTo01Normalization",
    "RGBTo01Normalization",
)
FAT_NAME = re.compile(r"fat|adipo", re.IGNORECASE)


@dataclass(frozen=True)
class ChannelNorm:
    """nnU-Net normalisation of one input channel (scheme name + what it needs)."""

    scheme: str
    use_mask: bool
    mean: float = 0.0
    std: float = 1.0
    lower: float = 0.0
    upper: float = 0.0


@dataclass(frozen=True)
class ModelLayout:
    """What the plans and dataset.json say about inputs and outputs of a 2D model."""

    channels: Literal["rgb", "grey"]
    norms: tuple[ChannelNorm, ...]
    patch_size: tuple[int, int]
    transpose_hw: bool
    spacing: float
    n_outputs: int
    marrow_channel: int
    fat_channel: int | None
    labels: tuple[tuple[str, int], ...]


def describe(bundle: NnUNetBundle) -> ModelLayout:
    """Validates the bundle for 2D histology use and extracts its input/output layout."""
    where = bundle.origin
    configs = bundle.plans.get("configurations", {})
    if bundle.configuration not in configs:
        raise ModelUnavailable(
            f"{where}: configuration {bundle.configuration!r} not in plans "
            f"(has {', '.join(configs)})"
        )
    cfg = _resolved_config(configs, bundle.configuration)
    patch = tuple(int(p) for p in cfg["patch_size"])
    if len(patch) != 2:
        raise ModelUnavailable(
            f"{where}: configuration {bundle.configuration!r} is {len(patch)}D; only 2D models work"
        )
    channel_names = bundle.dataset_json.get("channel_names") or bundle.dataset_json.get("modality")
    if not isinstance(channel_names, dict) or len(channel_names) not in (1, 3):
        raise ModelUnavailable(
            f"{where}: channel mismatch: dataset.json declares {channel_names!r}; "
            "marrowscope feeds 1 (grey) or 3 (RGB) channels"
        )
    n_channels = len(channel_names)
    schemes = list(cfg.get("normalization_schemes", []))
    if len(schemes) != n_channels:
        raise ModelUnavailable(
            f"{where}: channel mismatch: {n_channels} channels in dataset.json but "
            f"{len(schemes)} normalisation schemes in plans"
        )
    props = bundle.plans.get("foreground_intensity_properties_per_channel", {})
    masks = list(cfg.get("use_mask_for_norm", [False] * n_channels))
    norms = tuple(
        _channel_norm(str(schemes[c]), bool(masks[c]), props.get(str(c), {}), where)
        for c in range(n_channels)
    )
    transpose = [int(t) for t in bundle.plans.get("transpose_forward", [0, 1, 2])]
    if transpose[0] != 0:
        raise ModelUnavailable(f"{where}: transpose_forward {transpose} is not 2D-compatible")
    spacing = [float(s) for s in cfg.get("spacing", [1.0, 1.0])]
    if abs(spacing[0] - spacing[-1]) > 1e-6 * max(spacing):
        raise ModelUnavailable(f"{where}: anisotropic 2D spacing {spacing} is not supported")
    labels, marrow, fat, n_out = _labels(bundle.dataset_json, where)
    return ModelLayout(
        channels="rgb" if n_channels == 3 else "grey",
        norms=norms,
        patch_size=(patch[0], patch[1]),
        transpose_hw=transpose[1:] == [2, 1],
        spacing=spacing[-1],
        n_outputs=n_out,
        marrow_channel=marrow,
        fat_channel=fat,
        labels=labels,
    )


def _resolved_config(configs: dict[str, Any], name: str) -> dict[str, Any]:
    """A configuration with ``inherits_from`` applied (as nnU-Net's PlansManager does)."""
    cfg = dict(configs[name])
    parent = cfg.pop("inherits_from", None)
    if parent is not None:
        base = _resolved_config(configs, str(parent))
        base.update(cfg)
        return base
    return cfg


def _channel_norm(scheme: str, use_mask: bool, props: dict[str, Any], where: str) -> ChannelNorm:
    if scheme not in SUPPORTED_NORMALISATION:
        raise ModelUnavailable(f"{where}: unsupported normalisation scheme {scheme!r}")
    if scheme == "CTNormalization":
        try:
            return ChannelNorm(
                scheme,
                use_mask,
                mean=float(props["mean"]),
                std=float(props["std"]),
                lower=float(props["percentile_00_5"]),
                upper=float(props["percentile_99_5"]),
            )
        except KeyError as exc:
            raise ModelUnavailable(
                f"{where}: CTNormalization needs foreground intensity property {exc}"
            ) from exc
    return ChannelNorm(scheme, use_mask)


def _labels(
    dataset_json: dict[str, Any], where: str
) -> tuple[tuple[tuple[str, int], ...], int, int | None, int]:
    raw = dataset_json.get("labels")
    if not isinstance(raw, dict):
        raise ModelUnavailable(f"{where}: dataset.json has no labels")
    if any(isinstance(v, list | tuple) for v in raw.values()):
        raise ModelUnavailable(f"{where}: region-based models are not supported")
    labels = tuple((str(k), int(v)) for k, v in raw.items())
    values = {v for k, v in labels if k != "ignore"}
    if 1 not in values:
        raise ModelUnavailable(f"{where}: no label 1 (marrow space) in dataset.json")
    fat = next((v for k, v in labels if v > 1 and FAT_NAME.search(k)), None)
    return labels, 1, fat, max(values) + 1


# Stock nnU-Net trainers that keep nnUNetTrainer.build_network_architecture (schedule, loss,
# augmentation or optimiser variants): built directly from the plans, without importing the
# training stack (seconds of imports on a cold CLI start).
DEFAULT_BUILD_TRAINERS = re.compile(
    r"^nnUNetTrainer(_\d+epochs?(_NoMirroring)?|NoMirroring|_onlyMirror01|DA5|DAOrd0|NoDA"
    r"|_noDummy2DDA|CELoss|DiceLoss|TopkLoss|CosAnneal|_warmup|Adam|Adan"
    r"|_probabilisticOversampling(_\d+)?)?$"
)


def find_trainer(name: str, where: str) -> type[Any]:
    """The trainer class named in the checkpoint (its ``build_network_architecture`` is used)."""
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    try:
        cls = recursive_find_trainer_class_by_name(name)
    except Exception as exc:  # nnU-Net raises RuntimeError, or an ImportError on the way
        detail = "" if isinstance(exc, RuntimeError) else f" ({type(exc).__name__}: {exc})"
        raise ModelUnavailable(f"{where}: unknown trainer class {name!r}{detail}") from exc
    if cls is None:
        raise ModelUnavailable(f"{where}: unknown trainer class {name!r}")
    return cls  # type: ignore[no-any-return]


def build_networks(bundle: NnUNetBundle, layout: ModelLayout) -> list[nn.Module]:
    """One eval-mode network per fold, weights loaded, on CPU."""
    where = bundle.origin
    n_in = 3 if layout.channels == "rgb" else 1
    arch = _resolved_config(bundle.plans["configurations"], bundle.configuration).get(
        "architecture"
    )
    if DEFAULT_BUILD_TRAINERS.match(bundle.trainer_name) and isinstance(arch, dict):
        return [_default_network(arch, n_in, layout, weights, f"{where} fold {fold}")
                for fold, weights in zip(bundle.folds, bundle.fold_weights, strict=True)]
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    trainer = find_trainer(bundle.trainer_name, where)
    plans_manager = PlansManager(bundle.plans)
    config_manager = plans_manager.get_configuration(bundle.configuration)
    build = trainer.build_network_architecture
    networks = []
    for fold, weights in zip(bundle.folds, bundle.fold_weights, strict=True):
        try:
            if "plans_manager" in inspect.signature(build).parameters:
                net = build(plans_manager, config_manager, n_in, layout.n_outputs, False)
            else:
                net = build(
                    config_manager.network_arch_class_name,
                    config_manager.network_arch_init_kwargs,
                    config_manager.network_arch_init_kwargs_req_import,
                    n_in,
                    layout.n_outputs,
                    False,
                )
        except Exception as exc:
            raise ModelUnavailable(f"{where}: cannot build the network from plans ({exc})") from exc
        _load_weights(net, weights, n_in, f"{where} fold {fold}")
        net.eval()
        networks.append(net)
    return networks


def _default_network(
    arch: dict[str, Any], n_in: int, layout: ModelLayout, weights: dict[str, Any], where: str
) -> nn.Module:
    """What nnUNetTrainer.build_network_architecture builds, from the plans' architecture."""
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    try:
        net = get_network_from_plans(
            arch["network_class_name"], arch["arch_kwargs"], arch["_kw_requires_import"],
            n_in, layout.n_outputs, allow_init=False, deep_supervision=False,
        )
    except Exception as exc:
        raise ModelUnavailable(f"{where}: cannot build the network from plans ({exc})") from exc
    _load_weights(net, weights, n_in, where)
    net.eval()
    return net  # type: ignore[no-any-return]


def _load_weights(net: nn.Module, weights: dict[str, Any], n_in: int, where: str) -> None:
    # checkpoints saved from torch.compile'd or DDP networks carry prefixes
    clean = {
        k.removeprefix("_orig_mod.").removeprefix("module."): v for k, v in weights.items()
    }
    first_conv = next((v for k, v in clean.items() if k.endswith("weight") and v.ndim == 4), None)
    if first_conv is not None and int(first_conv.shape[1]) != n_in:
        raise ModelUnavailable(
            f"{where}: channel mismatch: weights expect {int(first_conv.shape[1])} input "
            f"channels, dataset.json declares {n_in}"
        )
    try:
        net.load_state_dict(clean)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelUnavailable(
            f"{where}: weights do not match the plans' network ({first})"
        ) from exc
