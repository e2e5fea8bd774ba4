"""Batch summary: summary.csv (one row per slide, failures included)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from service.domain.results import AnalysisResult

CSV_FIELDS = ("slide", "status", "cellularity_pct", "cell_coverage_pct", "adipocyte_ratio_pct",
              "marrow_area_mm2", "hematopoietic_area_mm2", "adipose_area_mm2", "tiles_analyzed",
              "tiles_total", "mpp_analyzed", "segmenter", "fat_method", "fat_threshold",
              "qc_flags", "elapsed_s", "error")


@dataclass(frozen=True)
class SlideOutcome:
    """One slide of a batch: its reference and either a result or an error message."""

    reference: str
    result: AnalysisResult | None
    error: str | None = None


def write_summary_csv(outcomes: Sequence[SlideOutcome], path: Path) -> None:
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        w.writeheader()
        for o in outcomes:
            if o.result is None:
                w.writerow({"slide": o.reference, "status": "failed", "error": o.error})
                continue
            r = o.result
            row = {k: getattr(r, k) for k in CSV_FIELDS if hasattr(r, k)}
            row.update(status="ok", qc_flags=";".join(r.qc_flags), error="")
            w.writerow(row)
