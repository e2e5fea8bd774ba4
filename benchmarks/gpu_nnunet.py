"""GPU checks of the nnU-Net segmenter (called by benchmarks/gpu.sh; works on CPU for smoke tests).

    python benchmarks/gpu_nnunet.py throughput [--tiles 128] [--device cuda]
    python benchmarks/gpu_nnunet.py slide [--width 9464 --height 2232] [--device cuda]

throughput: a random-weight nnU-Net of the default 2D size (PlainConvUNet, 8 stages, features
32-512, 2 convs per stage, patch 1280²) through NnUNetSegmenter (bf16 autocast, channels_last,
batch size from free memory); prints GFLOP per tile (counted), tiles/s end to end (uint8 tiles
in, float32 marrow probabilities out) and network-only, and the share of the ≈660 tiles/s bound.
slide: the same model registered at 2 µm/px in a temporary manifest; a 9464×2232 synthetic
slide PNG at 2 µm/px; seconds per slide with the segmenter already loaded (warm,
analyze_to_dir) and for a cold ``marrowscope analyze`` process.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BOUND_TILES_PER_S = 660.0
TILE = 1280
MPP = 2.0


def default_model(root: Path, patch: int = TILE):  # type: ignore[no-untyped-def]
    from service.training.tiny_model import DEFAULT_2D_FEATURES, write_tiny_model

    return write_tiny_model(root, features=DEFAULT_2D_FEATURES, n_conv=2, patch=patch)


def synthetic_tiles(n: int, size: int) -> np.ndarray:
    from adapters.synthetic.scene import SyntheticScene
    from service.domain.geometry import Box

    scene = SyntheticScene(size * 4, size * 2, mpp=MPP, seed=5, cellularity_target=50)
    base = np.concatenate([scene.render(Box(0, 0, size * 4, size), 1.0)[0],
                           scene.render(Box(0, size, size * 4, size), 1.0)[0]])
    crops = [base[(i % 2) * size : (i % 2 + 1) * size, (i % 4) * size : (i % 4 + 1) * size]
             for i in range(8)]
    return np.stack([crops[i % 8] for i in range(n)])


def gflop_per_tile(net, device: str, size: int) -> float:  # type: ignore[no-untyped-def]
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros((1, 3, size, size), device=device)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        net(x)
    return counter.get_total_flops() / 1e9


def throughput(args: argparse.Namespace) -> None:
    import torch

    from adapters.segmenters.nnunet import NnUNetSegmenter

    with tempfile.TemporaryDirectory() as tmp:
        model = default_model(Path(tmp), args.size)
        seg = NnUNetSegmenter(model.zip, device=args.device, trust_unlisted=True)
        t0 = time.perf_counter()
        seg.load()
        print(f"model load: {time.perf_counter() - t0:.2f} s on {seg.device}", flush=True)
    engine = seg._engine
    assert engine is not None
    net = engine._networks[0]
    gflop = gflop_per_tile(net, str(engine.device), args.size)
    print(f"network: {sum(p.numel() for p in net.parameters()) / 1e6:.1f} M parameters, "
          f"{gflop:.0f} GFLOP per {args.size}² tile (counted)", flush=True)
    window_batch = engine.batch_size()
    print(f"window batch from free memory: {window_batch}", flush=True)
    tiles = synthetic_tiles(args.tiles, args.size)
    per_call = max(window_batch, 1) * 2
    seg.predict(tiles[:per_call])  # warm-up: cudnn autotuning, allocator
    seg.predict(tiles[:per_call])
    sync = torch.cuda.synchronize if engine.on_gpu else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for start in range(0, len(tiles), per_call):
        seg.predict(tiles[start : start + per_call])
    sync()
    end_to_end = len(tiles) / (time.perf_counter() - t0)
    x = torch.randn((window_batch, 3, args.size, args.size), device=engine.device)
    for _ in range(2):
        engine._mirrored(net, x)
    sync()
    t0 = time.perf_counter()
    reps = max(1, args.tiles // window_batch)
    for _ in range(reps):
        engine._mirrored(net, x)
    sync()
    network_only = reps * window_batch / (time.perf_counter() - t0)
    for name, rate in (("end to end", end_to_end), ("network only", network_only)):
        print(f"{name}: {rate:.1f} tiles/s = {100 * rate / BOUND_TILES_PER_S:.1f} % of "
              f"{BOUND_TILES_PER_S:.0f} tiles/s; {rate * gflop / 1e3:.0f} TFLOP/s", flush=True)


def slide(args: argparse.Namespace) -> None:
    from adapters.segmenters.nnunet import NnUNetSegmenter
    from adapters.segmenters.nnunet_manifest import (
        MANIFEST_ENV,
        ModelEntry,
        load_manifest,
        register_model,
        sha256_file,
    )
    from adapters.synthetic.scene import SyntheticScene
    from adapters.synthetic.writers import write_png
    from service.bootstrap import analyze_to_dir
    from service.pipeline.params import AnalysisParams, OutputRequest

    work = Path(tempfile.mkdtemp(prefix="gpu-slide-"))
    model = default_model(work / "model")
    manifest = work / "manifest.json"
    register_model(manifest, ModelEntry(
        name="default-2d-random", path=model.zip, sha256=sha256_file(model.zip), mpp=MPP,
        channels="rgb", labels=(("background", 0), ("marrow", 1)), licence="none",
        source="benchmarks/gpu_nnunet.py (random weights)"))
    os.environ[MANIFEST_ENV] = str(manifest)
    scene = SyntheticScene(args.width, args.height, mpp=MPP, seed=3, cellularity_target=45)
    t0 = time.perf_counter()
    png = write_png(work / "slide.png", args.width, args.height, scene.render_rgb)
    print(f"slide {args.width}x{args.height} px at {MPP} µm/px written in "
          f"{time.perf_counter() - t0:.1f} s", flush=True)
    params = AnalysisParams(segmenter="nnunet", model=str(model.zip), device=args.device,
                            mpp_override=MPP)
    outputs = OutputRequest(outputs=tuple(n for n in args.outputs.split(",") if n))
    seg = NnUNetSegmenter(model.zip, device=args.device, manifest=load_manifest())
    t0 = time.perf_counter()
    seg.load()
    print(f"model load: {time.perf_counter() - t0:.2f} s", flush=True)
    times = []
    for i in range(3):
        t0 = time.perf_counter()
        result = analyze_to_dir(str(png), params, work / f"warm{i}", outputs, segmenter=seg)
        times.append(time.perf_counter() - t0)
    print(f"warm (model loaded): {' / '.join(f'{t:.2f}' for t in times)} s per slide "
          f"(first includes autotuning); cellularity {getattr(result, 'cellularity_pct', '?')}",
          flush=True)
    cmd = [sys.executable, "-m", "service.transports.cli", "analyze", str(png), "--out",
           str(work / "cold"), "--segmenter", "nnunet", "--model", str(model.zip), "--mpp",
           str(MPP), "--device", args.device, "--outputs", args.outputs, "--no-progress"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=os.environ, capture_output=True, text=True)
    cold = time.perf_counter() - t0
    print(f"cold CLI (new process: imports, model load, analysis, outputs): {cold:.2f} s, "
          f"exit {proc.returncode}", flush=True)
    if proc.returncode != 0:
        print(proc.stderr[-2000:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--tiles", type=int, default=128)
    t.add_argument("--size", type=int, default=TILE)
    t.add_argument("--device", default="cuda")
    t.set_defaults(func=throughput)
    s = sub.add_parser("slide")
    s.add_argument("--width", type=int, default=9464)
    s.add_argument("--height", type=int, default=2232)
    s.add_argument("--device", default="cuda")
    s.add_argument("--outputs", default="",
                   help="artifacts to write too (default none: result.json only; random "
                   "weights give noisy masks whose polygons are not representative)")
    s.set_defaults(func=slide)
    args = parser.parse_args()
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
