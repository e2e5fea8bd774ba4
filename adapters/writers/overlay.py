"""overlay.png: the slide thumbnail with hematopoietic tissue green, fat yellow and a stats box."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from service.domain.labels import TissueClass
from service.domain.results import AnalysisResult
from service.ports.outputs import AnalysisOutcome, LabelRaster

HEMATOPOIETIC_RGB = (40, 180, 60)
ADIPOSE_RGB = (250, 215, 0)


def sample_class_map(raster: LabelRaster, shape: tuple[int, int],
                     band_rows: int = 1024) -> npt.NDArray[np.uint8]:
    """The class map sampled (nearest) onto a grid of ``shape``, reading it band by band."""
    h, w = shape
    rows = np.minimum(((np.arange(h) + 0.5) * raster.height / h).astype(int), raster.height - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * raster.width / w).astype(int), raster.width - 1)
    out = np.zeros((h, w), dtype=np.uint8)
    for y0 in range(0, raster.height, band_rows):
        y1 = min(y0 + band_rows, raster.height)
        sel = np.nonzero((rows >= y0) & (rows < y1))[0]
        if sel.size:
            band = raster.read_rows(y0, y1)
            out[sel] = band[rows[sel] - y0][:, cols]
    return out


def blend(thumb: npt.NDArray[np.uint8], classes: npt.NDArray[np.uint8],
          alpha: float = 0.45) -> npt.NDArray[np.uint8]:
    """Thumbnail with class colours blended in."""
    out = thumb.astype(np.float32)
    for cls, rgb in ((TissueClass.HEMATOPOIETIC, HEMATOPOIETIC_RGB),
                     (TissueClass.ADIPOSE, ADIPOSE_RGB)):
        m = classes == cls
        out[m] = (1 - alpha) * out[m] + alpha * np.array(rgb, dtype=np.float32)
    return np.clip(out, 0, 255).astype(np.uint8)


def stats_text(r: AnalysisResult) -> str:
    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.1f} %"

    lines = [
        f"Cellularity      {pct(r.cellularity_pct)}",
        f"Adipocyte ratio  {pct(r.adipocyte_ratio_pct)}",
        f"Cell coverage    {pct(r.cell_coverage_pct)}",
        f"Marrow area      {r.marrow_area_mm2:.2f} mm²",
        f"Tiles analysed   {r.tiles_analyzed}/{r.tiles_total}",
        f"Segmenter        {r.segmenter}",
        f"Fat rule         {r.fat_method}"
        + ("" if r.fat_threshold is None else f" (thr {r.fat_threshold:.0f})"),
    ]
    if r.qc_flags:
        lines.append("QC: " + ", ".join(r.qc_flags))
    return "\n".join(lines)


def _rgb01(rgb: tuple[int, int, int]) -> tuple[float, float, float]:
    return rgb[0] / 255, rgb[1] / 255, rgb[2] / 255


class OverlayWriter:
    """Writes overlay.png (thumbnail | overlay, with the numbers)."""

    name = "overlay"

    def write(self, outcome: AnalysisOutcome, out_dir: Path) -> list[Path]:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Patch

        thumb = outcome.thumbnail
        classes = sample_class_map(outcome.class_map, thumb.shape[:2])
        h, w = thumb.shape[:2]
        fig_w = 12.0
        fig_h = max(3.5, fig_w / 2 * h / max(w, 1) + 1.2)
        fig, axes = plt.subplots(1, 2, figsize=(fig_w, fig_h), dpi=120)
        axes[0].imshow(thumb)
        axes[0].set_title(f"{outcome.result.slide}")
        axes[1].imshow(blend(thumb, classes))
        axes[1].set_title("hematopoietic (green) / adipocytes (yellow)")
        for ax in axes:
            ax.set_axis_off()
        axes[1].legend(handles=[Patch(color=_rgb01(HEMATOPOIETIC_RGB), label="hematopoietic"),
                                Patch(color=_rgb01(ADIPOSE_RGB), label="adipocytes")],
                       loc="lower right", fontsize=8)
        axes[0].text(0.01, 0.99, stats_text(outcome.result), transform=axes[0].transAxes,
                     va="top", ha="left", family="monospace", fontsize=8,
                     bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.85})
        fig.tight_layout()
        path = out_dir / "overlay.png"
        fig.savefig(path)
        plt.close(fig)
        return [path]
