"""Peak memory of a whole analysis for a >= 1.6 Gpx slide and for one with 1/4 of its area.

Each analysis runs in its own process (classical segmenter) and reports its peak RSS, first
with the overlay only (the pipeline), then with the GeoJSON too (vectorisation holds every
polygon of the slide). The last line is ``ratio <big/quarter>`` of the pipeline runs (goal
<= 1.3, big <= 2 GB).

    python benchmarks/memory.py [--side 40000] [--outputs overlay]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.big_slides import big_svs  # noqa: E402

CHILD = """
import json, sys, time
from pathlib import Path
from benchmarks.common import peak_rss_mb
from service import bootstrap
from service.pipeline.params import AnalysisParams, OutputRequest
t = time.monotonic()
outs = tuple(o for o in sys.argv[3].split(",") if o)
r = bootstrap.analyze_to_dir(sys.argv[1], AnalysisParams(), Path(sys.argv[2]),
                             OutputRequest(outputs=outs))
print(json.dumps({"peak_rss_mb": peak_rss_mb(), "seconds": time.monotonic() - t,
                  "tiles": r.tiles_analyzed, "analysis_size": r.analysis_size}))
"""


def measure(slide: Path, outputs: str) -> dict[str, float]:
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as out:
        p = subprocess.run([sys.executable, "-c", CHILD, str(slide), out, outputs], cwd=root,
                           capture_output=True, text=True, check=True)
    return dict(json.loads(p.stdout.strip().splitlines()[-1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--side", type=int, default=40000, help="level-0 side of the big slide")
    ap.add_argument("--with-geojson", action="store_true", help="also measure with GeoJSON")
    args = ap.parse_args()
    big, quarter = big_svs(args.side), big_svs(args.side // 2)
    modes = ["overlay", "overlay,geojson"] if args.with_geojson else ["overlay"]
    ratios = {}
    for outputs in modes:
        rows = []
        for name, path, side in (("quarter", quarter, args.side // 2), ("big", big, args.side)):
            m = measure(path, outputs)
            rows.append(m)
            print(f"[{outputs}] {name:<8} {side}x{side} px0 ({side * side / 1e9:.2f} Gpx): peak "
                  f"RSS {m['peak_rss_mb']:.0f} MiB, {m['seconds']:.1f} s, {m['tiles']} tiles, "
                  f"analysis {m['analysis_size']}", flush=True)
        ratios[outputs] = rows[1]["peak_rss_mb"] / rows[0]["peak_rss_mb"]
        print(f"[{outputs}] ratio {ratios[outputs]:.2f}", flush=True)
    print(f"ratio {ratios['overlay']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
