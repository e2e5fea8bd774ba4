"""Accuracy of cellularity against exact synthetic truth, default pipeline vs the seed rule.

Generates N synthetic marrow slides (SVS files, cached) spanning cellularity 10-90 % with
stain, glass-brightness (215-250) and vignetting variation, analyses each through the real
file adapter with the default (robust) fat rule and with the seed's P75 rule, and prints a
table and a last line ``MAE <x> pp, max <y> pp`` for the default pipeline.

    python benchmarks/accuracy.py [--n 12] [--segmenter classical|nnunet] [--model PATH]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.synthetic.scene import SCENE_VERSION, SyntheticScene  # noqa: E402
from adapters.synthetic.writers import write_svs  # noqa: E402
from benchmarks.common import CACHE, cached  # noqa: E402
from service import bootstrap  # noqa: E402
from service.pipeline.analyze import analyze  # noqa: E402
from service.pipeline.params import AnalysisParams  # noqa: E402

GLASS = (215, 250, 230, 242, 222, 247, 218, 236, 226, 244, 233, 220)


def scenes(n: int, seed0: int = 100,
           size: tuple[int, int] = (4800, 3600)) -> list[SyntheticScene]:
    targets = np.linspace(10, 90, n)
    return [
        SyntheticScene(*size, mpp=0.5, seed=seed0 + i, cellularity_target=float(t),
                       glass_level=float(GLASS[i % len(GLASS)]), vignetting=0.03 + 0.01 * (i % 7),
                       stain_jitter=0.08)
        for i, t in enumerate(targets)
    ]


def slide_file(scene: SyntheticScene) -> Path:
    name = (f"acc-v{SCENE_VERSION}-{scene.seed}-{scene.cellularity_target:.0f}-"
            f"{scene.glass_level:.0f}-{scene.width_px0}x{scene.height_px0}.svs")
    return cached(CACHE / name, lambda p: write_svs(p, scene.width_px0, scene.height_px0,
                                                    scene.mpp, scene.render_rgb))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=12)
    ap.add_argument("--segmenter", default="classical")
    ap.add_argument("--model", default=None)
    ap.add_argument("--seed0", type=int, default=100, help="first scene seed (held-out sets)")
    args = ap.parse_args()
    rows = []
    seg = bootstrap.build_segmenter(AnalysisParams(segmenter=args.segmenter, model=args.model))
    print(f"{'slide':<34} {'glass':>5} {'truth':>6} {'ours':>6} {'err':>6} {'seed':>6} "
          f"{'seed err':>8}")
    for scene in scenes(args.n, args.seed0):
        path = slide_file(scene)
        truth = scene.truth_cellularity_pct
        values = {}
        for method in ("robust", "seed"):
            params = AnalysisParams(segmenter=args.segmenter, model=args.model,
                                    fat_method=method)  # type: ignore[arg-type]
            slide = bootstrap.open_slide(str(path))
            try:
                out = analyze(slide, seg, params)
            finally:
                slide.close()
            out.class_map.close()
            values[method] = out.result.cellularity_pct
        ours, seed_rule = values["robust"], values["seed"]
        assert truth is not None and ours is not None and seed_rule is not None
        rows.append((truth, ours, seed_rule))
        print(f"{path.name:<34} {scene.glass_level:>5.0f} {truth:>6.1f} {ours:>6.1f} "
              f"{ours - truth:>+6.1f} {seed_rule:>6.1f} {seed_rule - truth:>+8.1f}", flush=True)
    arr = np.array(rows)
    err = np.abs(arr[:, 1] - arr[:, 0])
    serr = np.abs(arr[:, 2] - arr[:, 0])
    print(f"seed rule: MAE {serr.mean():.2f} pp, max {serr.max():.2f} pp")
    print(f"segmenter {args.segmenter}, fat rule robust (default):")
    print(f"MAE {err.mean():.2f} pp, max {err.max():.2f} pp")
    return 0


if __name__ == "__main__":
    sys.exit(main())
