"""Idempotency keys: the same slide, model and parameters give the same job."""

from __future__ import annotations

import dataclasses
import hashlib
import json

from service.pipeline.params import AnalysisParams


def derive_key(
    slide_identity: str, model_identity: str, params: AnalysisParams, outputs: tuple[str, ...]
) -> str:
    """A stable key from slide identity + model sha256 + parameters + requested outputs."""
    payload = json.dumps(
        {
            "slide": slide_identity,
            "model": model_identity,
            "params": dataclasses.asdict(params),
            "outputs": sorted(outputs),
        },
        sort_keys=True,
    )
    return "derived:" + hashlib.sha256(payload.encode()).hexdigest()


def client_key(key: str) -> str:
    """A client-chosen key, namespaced so it can never collide with a derived one."""
    return "client:" + key
