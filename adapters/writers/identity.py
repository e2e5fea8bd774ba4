"""Deterministic identifiers: the same job key always yields the same UIDs and uuids."""

from __future__ import annotations

import uuid

_NAMESPACE = uuid.UUID("5b0f3c1e-8a7d-5d2e-9c41-6d61727277ec")


def job_uuid(job_key: str, purpose: str) -> uuid.UUID:
    """A name-based (v5) uuid for one object of one analysis."""
    return uuid.uuid5(_NAMESPACE, f"{job_key}\x1f{purpose}")


def job_uid(job_key: str, purpose: str) -> str:
    """A DICOM UID ``2.25.<uuid as integer>`` (at most 44 characters, within the 64 limit)."""
    return f"2.25.{job_uuid(job_key, purpose).int}"
