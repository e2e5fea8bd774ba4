"""summary.png: distribution, composition and statistics of a batch (as the seed's figure)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from service.domain.results import AnalysisResult


def write_summary_figure(results: Sequence[AnalysisResult], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in results if r.cellularity_pct is not None]
    names = [r.slide for r in ok]
    cell = np.array([r.cellularity_pct for r in ok], dtype=float)
    fat = np.array([r.adipocyte_ratio_pct for r in ok], dtype=float)
    cov = np.array([r.cell_coverage_pct for r in ok], dtype=float)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8), dpi=110)
    axes[0].hist(cell, bins=np.arange(0, 105, 5), color="#2a9d4b", edgecolor="white")
    axes[0].set_xlabel("cellularity (%)")
    axes[0].set_ylabel("slides")
    axes[0].set_title("Cellularity distribution")
    order = np.argsort(-cell) if len(cell) else np.array([], dtype=int)
    x = np.arange(len(order))
    axes[1].bar(x, cell[order], color="#2a9d4b", label="hematopoietic")
    axes[1].bar(x, fat[order], bottom=cell[order], color="#f2c500", label="adipocytes")
    axes[1].set_xticks(x, [names[i] for i in order], rotation=60, ha="right", fontsize=7)
    axes[1].set_ylabel("% of marrow space")
    axes[1].set_title("Composition")
    axes[1].legend(fontsize=8)
    axes[2].set_axis_off()
    if len(cell):
        text = (f"Slides analysed   {len(cell)} of {len(results)}\n"
                f"Cellularity       {cell.mean():.1f} ± {cell.std():.1f} %\n"
                f"  range           {cell.min():.1f} – {cell.max():.1f} %\n"
                f"Adipocyte ratio   {fat.mean():.1f} ± {fat.std():.1f} %\n"
                f"Cell coverage     {cov.mean():.1f} ± {cov.std():.1f} %\n")
        if len(cell) > 2 and cell.std() > 0 and fat.std() > 0:
            text += f"r(cell, fat)      {np.corrcoef(cell, fat)[0, 1]:.2f}\n"
    else:
        text = "no slide with marrow"
    axes[2].text(0.0, 0.95, text, va="top", family="monospace", fontsize=11)
    axes[2].set_title("Statistics")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
