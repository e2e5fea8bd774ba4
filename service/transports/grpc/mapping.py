"""Protobuf ⇄ domain: requests become validated ``JobRequest`` values, jobs become messages.

Slide paths are resolved with ``realpath`` and must lie under a configured root; DICOMweb base URLs
come only from the server configuration, never from the request.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from service.config import ServerConfig
from service.domain.errors import InvalidInput, PermissionDenied, SlideNotFound
from service.jobs.keys import client_key, derive_key
from service.jobs.model import Job, JobRequest, JobState
from service.pipeline.params import ALL_OUTPUTS, AnalysisParams
from service.transports.grpc.stubs import pb

UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")
MAX_KEY_CHARS = 256
FAT_METHODS = {pb.FAT_METHOD_ROBUST: "robust", pb.FAT_METHOD_SEED: "seed"}


def _label(kind: str, text: str) -> str:
    """A PHI-free log label: the kind and a short hash of the reference."""
    return f"{kind}:{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def resolve_file(path: str, roots: tuple[Path, ...]) -> tuple[str, str, str]:
    """(realpath, identity, label) of a slide file under one of ``roots``."""
    if not path:
        raise InvalidInput("slide.file.path is empty")
    if "\x00" in path:
        raise InvalidInput("slide.file.path contains a NUL character")
    candidate = path if os.path.isabs(path) else os.path.join(roots[0], path)
    real = os.path.realpath(candidate)
    if not any(os.path.commonpath([real, str(root)]) == str(root) for root in roots):
        raise PermissionDenied("slide path is outside the server's configured slide roots")
    try:
        stat = os.stat(real)
    except FileNotFoundError as exc:
        raise SlideNotFound(f"slide {path!r} does not exist") from exc
    identity = f"file:{real}:{stat.st_size}:{stat.st_mtime_ns}"
    return real, identity, _label("file", real)


def resolve_dicomweb(ref: Any, config: ServerConfig) -> tuple[str, str, str]:
    """(URL, identity, label) of a series on a configured PACS."""
    for name, uid in (("study_instance_uid", ref.study_instance_uid),
                      ("series_instance_uid", ref.series_instance_uid)):
        if not uid or len(uid) > 64 or not UID_RE.match(uid):
            raise InvalidInput(f"slide.dicomweb.{name} is not a DICOM UID")
    if not config.pacs and ref.pacs:
        # no [pacs] table: the name must be a server of the DICOMweb adapter's own configuration
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", ref.pacs):
            raise InvalidInput("slide.dicomweb.pacs is not a valid PACS name")
        url = f"dicomweb:{ref.pacs}/{ref.study_instance_uid}/{ref.series_instance_uid}"
    else:
        base = config.pacs_url(ref.pacs).rstrip("/")
        url = f"{base}/studies/{ref.study_instance_uid}/series/{ref.series_instance_uid}"
    name = ref.pacs or (config.pacs[0][0] if config.pacs else "")
    identity = f"dicomweb:{name}:{ref.study_instance_uid}:{ref.series_instance_uid}"
    return url, identity, _label("dicomweb", identity)


def params_from_proto(msg: Any, config: ServerConfig) -> AnalysisParams:
    segmenter = msg.segmenter or config.segmenter
    if segmenter not in config.allowed_segmenters and segmenter != config.segmenter:
        raise InvalidInput(
            f"segmenter {segmenter!r} is not offered here; choose one of "
            f"{', '.join(config.allowed_segmenters)}"
        )
    kwargs: dict[str, Any] = {"segmenter": segmenter, "tta": msg.tta}
    if msg.model:
        # checkpoints unpickle code: remote callers name models of the server's manifest,
        # never a path on the server
        if any(c in msg.model for c in "/\\") or msg.model.startswith(".") or msg.model.endswith(
                (".pth", ".zip")):
            raise PermissionDenied(
                f"model {msg.model!r}: over gRPC a model is named from the server's model "
                "manifest, not given as a path")
        kwargs["model"] = msg.model
    if msg.fat_method != pb.FAT_METHOD_UNSPECIFIED:
        if msg.fat_method not in FAT_METHODS:
            raise InvalidInput(f"unknown fat_method {msg.fat_method}")
        kwargs["fat_method"] = FAT_METHODS[msg.fat_method]
    for name in ("mpp_override", "tile_size", "overlap", "min_marrow_area_mm2"):
        if msg.HasField(name):
            kwargs[name] = getattr(msg, name)
    return AnalysisParams(**kwargs)


def outputs_from_proto(names: Any, config: ServerConfig) -> tuple[str, ...]:
    outputs = tuple(dict.fromkeys(names)) or config.default_outputs
    unknown = [n for n in outputs if n not in ALL_OUTPUTS]
    if unknown:
        raise InvalidInput(
            f"unknown output(s) {', '.join(unknown)}; choose from {', '.join(ALL_OUTPUTS)}"
        )
    return outputs


def job_request_from_proto(
    req: Any, config: ServerConfig, model_identity: Callable[[AnalysisParams], str]
) -> tuple[JobRequest, str]:
    """The validated job request and its idempotency key."""
    source = req.slide.WhichOneof("source") if req.HasField("slide") else None
    if source == "file":
        reference, identity, label = resolve_file(req.slide.file.path,
                                                  config.effective_slide_roots)
    elif source == "dicomweb":
        reference, identity, label = resolve_dicomweb(req.slide.dicomweb, config)
    else:
        raise InvalidInput("slide is required (a file path or a DICOMweb study/series)")
    params = params_from_proto(req.parameters, config)
    outputs = outputs_from_proto(req.outputs, config)
    request = JobRequest(reference=reference, reference_label=label, params=params,
                         outputs=outputs)
    if req.idempotency_key:
        if len(req.idempotency_key) > MAX_KEY_CHARS:
            raise InvalidInput(f"idempotency_key longer than {MAX_KEY_CHARS} characters")
        key = client_key(req.idempotency_key)
    else:
        key = derive_key(identity, model_identity(params), params, outputs)
    return request, key


def state_to_proto(state: JobState) -> int:
    value: int = pb.JobState.Value(f"JOB_STATE_{state.value}")
    return value


def state_from_proto(value: int) -> JobState:
    if value == pb.JOB_STATE_UNSPECIFIED:
        raise InvalidInput("JOB_STATE_UNSPECIFIED is not a state to filter by")
    try:
        return JobState(pb.JobState.Name(value).removeprefix("JOB_STATE_"))
    except ValueError as exc:
        raise InvalidInput(f"unknown job state {value}") from exc


def _summary_to_proto(summary: dict[str, Any], artifacts: tuple[str, ...]) -> Any:
    msg = pb.Summary(
        cell_coverage_pct=float(summary.get("cell_coverage_pct") or 0.0),
        marrow_area_mm2=float(summary.get("marrow_area_mm2") or 0.0),
        qc_flags=[str(f) for f in summary.get("qc_flags") or ()],
        warnings=[str(w) for w in summary.get("warnings") or ()],
        artifacts=list(artifacts),
        elapsed_seconds=float(summary.get("elapsed_s") or 0.0),
        segmenter=str(summary.get("segmenter") or ""),
    )
    for name in ("cellularity_pct", "adipocyte_ratio_pct"):
        if summary.get(name) is not None:
            setattr(msg, name, float(summary[name]))
    return msg


def job_to_proto(job: Job) -> Any:
    progress = pb.Progress(
        stage=job.progress.stage,
        tiles_done=job.progress.tiles_done,
        tiles_total=job.progress.tiles_total,
    )
    if job.progress.eta_s is not None:
        progress.eta_seconds = job.progress.eta_s
    msg = pb.Job(
        job_id=job.job_id,
        state=state_to_proto(job.state),
        progress=progress,
        attempts=job.attempts,
        failure_reason=job.failure_reason if job.state is JobState.FAILED else "",
        idempotency_key=job.idempotency_key,
        created_unix=job.created_at,
        updated_unix=job.updated_at,
        cancel_requested=job.cancel_requested,
    )
    if job.state is JobState.DONE and job.summary is not None:
        msg.summary.CopyFrom(_summary_to_proto(job.summary, job.artifacts))
    return msg
