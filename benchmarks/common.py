"""Helpers shared by the benchmarks: cached synthetic slides and peak-memory probes."""

from __future__ import annotations

import os
import resource
import statistics
from collections.abc import Callable
from pathlib import Path

CACHE = Path(os.environ.get("MARROWSCOPE_BENCH_CACHE", "/tmp/marrowscope-bench"))


def cached(path: Path, make: Callable[[Path], object]) -> Path:
    """Builds ``path`` with ``make(tmp)`` once (atomic rename), then reuses it."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    make(tmp)
    tmp.replace(path)
    return path


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (Linux ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def median(values: list[float]) -> float:
    return statistics.median(values)
