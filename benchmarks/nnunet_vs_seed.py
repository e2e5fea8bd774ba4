"""Ours (in-process, batched) vs the seed's way (PNG tiles + nnUNetv2_predict) on the same tiles.

    python benchmarks/nnunet_vs_seed.py [--model checkpoints/marrowscope_demo_synthetic.zip]
        [--width 9464 --height 2232] [--device cpu]

Both sides get the same model, the same synthetic slide at the model's µm/px and the same
1280-px tiles (overlap 128, last tile shifted back inside, as the seed's code does), and both
end in the seed's merge: mean of overlapping binary predictions > 0.5.
- seed: tiles written as PNG (grey for grey models, RGB otherwise), ``nnUNetv2_predict -f 0
  --disable_tta`` in a subprocess on an unpacked results folder, label PNGs read back, merged.
  nnUNetv2_predict sets torch's threads to all cores; both sides get the same count instead.
- ours: ``NnUNetSegmenter`` (model load included), marrow probability > 0.5, merged.
Prints seconds for both, the agreement (Dice) of the two merged masks, and last ``ratio X``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TILE, OVERLAP = 1280, 128
SEED_ENTRY = (
    "import sys, torch; n = int(sys.argv.pop(1)); _set = torch.set_num_threads; "
    "torch.set_num_threads = lambda k: _set(min(k, n)); _set(n); "
    "from nnunetv2.inference.predict_from_raw_data import predict_entry_point; "
    "sys.argv[0] = 'nnUNetv2_predict'; predict_entry_point()"
)


def tile_starts(length: int) -> list[int]:
    """The seed's tiling: step TILE - OVERLAP, last tile shifted back to end at the border."""
    if length <= TILE:
        return [0]
    step = TILE - OVERLAP
    starts = list(range(0, length - TILE, step))
    starts.append(length - TILE)
    return sorted(set(starts))


def make_slide(path: Path, width: int, height: int, mpp: float) -> np.ndarray:
    """A synthetic marrow slide rendered directly at the model's µm/px (cached as PNG)."""
    if path.is_file():
        return np.asarray(Image.open(path).convert("RGB"))
    from adapters.synthetic.scene import SyntheticScene
    from service.domain.geometry import Box

    scene = SyntheticScene(width * 2, height * 2, mpp=mpp / 2, seed=11, cellularity_target=45)
    rows = []
    for y in range(0, height, 512):
        h = min(512, height - y)
        rows.append(scene.render(Box(0, y * 2, width * 2, h * 2), 2.0)[0][:h, :width])
    rgb = np.concatenate(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path)
    return rgb


def cut_tiles(rgb: np.ndarray) -> tuple[list[tuple[int, int]], np.ndarray]:
    h, w = rgb.shape[:2]
    origins = [(y, x) for y in tile_starts(h) for x in tile_starts(w)]
    th, tw = min(TILE, h), min(TILE, w)
    return origins, np.stack([rgb[y : y + th, x : x + tw] for y, x in origins])


def merge(origins: list[tuple[int, int]], masks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    total = np.zeros(shape, np.float32)
    count = np.zeros(shape, np.float32)
    th, tw = masks.shape[1:3]
    for (y, x), m in zip(origins, masks, strict=True):
        total[y : y + th, x : x + tw] += m
        count[y : y + th, x : x + tw] += 1
    return (total / np.maximum(count, 1)) > 0.5


def run_ours(model: Path, tiles: np.ndarray, device: str, trust: bool) -> tuple[np.ndarray, float]:
    from adapters.segmenters.nnunet import NnUNetSegmenter

    t0 = time.perf_counter()
    seg = NnUNetSegmenter(model, device=device, trust_unlisted=trust or None)
    seg.load()
    batch = seg.spec.batch_size
    out = [seg.predict(tiles[i : i + batch]).marrow > 0.5 for i in range(0, len(tiles), batch)]
    elapsed = time.perf_counter() - t0
    print(f"ours: precision {dict(seg.spec.parameters)['precision']} "
          "(set MARROWSCOPE_PRECISION=fp32 for nnU-Net's exact CPU arithmetic)", flush=True)
    return np.concatenate(out), elapsed


def unpack_results(model: Path, work: Path) -> tuple[Path, str, str, str, str]:
    """nnUNet_results root + dataset, trainer, plans, configuration from a zip or folder."""
    if model.suffix == ".zip":
        with zipfile.ZipFile(model) as zf:
            zf.extractall(work / "results")
        plans = next((work / "results").rglob("plans.json"))
    else:
        plans = next(model.rglob("plans.json")) if model.is_dir() else None
        if plans is None:
            raise SystemExit("the seed's way needs a results folder or exported zip")
    model_dir = plans.parent
    trainer, plans_id, config = model_dir.name.split("__")
    return model_dir.parent.parent, model_dir.parent.name, trainer, plans_id, config


def run_seed(
    model: Path, tiles: np.ndarray, grey: bool, device: str, work: Path, threads: int
) -> tuple[np.ndarray, float]:
    results, dataset, trainer, plans_id, config = unpack_results(model, work)
    t0 = time.perf_counter()
    inp, out = work / "in", work / "out"
    inp.mkdir()
    for i, tile in enumerate(tiles):
        im = Image.fromarray(tile)
        (im.convert("L") if grey else im).save(inp / f"tile_{i:04d}_0000.png")
    env = {**os.environ, "nnUNet_results": str(results), "nnUNet_raw": str(work / "raw"),
           "nnUNet_preprocessed": str(work / "pre")}
    dataset_id = str(int(dataset[7:10]))
    args = ["-i", str(inp), "-o", str(out), "-d", dataset_id, "-c", config, "-f", "0",
            "-tr", trainer, "-p", plans_id, "--disable_tta", "-device", device]
    # nnUNetv2_predict's own entry point; only torch's thread count is capped to ours
    subprocess.run([sys.executable, "-c", SEED_ENTRY, str(threads), *args], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    masks = np.stack([np.asarray(Image.open(out / f"tile_{i:04d}.png")) == 1
                      for i in range(len(tiles))])
    return masks, time.perf_counter() - t0


def main() -> int:
    from adapters.segmenters.nnunet_manifest import checkpoints_dir, load_manifest

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_model = checkpoints_dir() / "marrowscope_demo_synthetic.zip"
    parser.add_argument("--model", type=Path, default=default_model)
    parser.add_argument("--width", type=int, default=9464)
    parser.add_argument("--height", type=int, default=2232)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--trust", action="store_true", help="model need not be in the manifest")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads for both sides (default: idle cores)")
    args = parser.parse_args()
    from adapters.segmenters.nnunet_engine import CPU_THREADS_ENV, cpu_threads

    threads = args.threads or cpu_threads()
    os.environ[CPU_THREADS_ENV] = str(threads)

    manifest = load_manifest()
    from adapters.segmenters.nnunet_manifest import sha256_file

    entry = manifest.find_sha256(sha256_file(args.model)) if args.model.is_file() else None
    mpp = entry.mpp if entry else 2.0
    grey = entry.channels == "grey" if entry else False
    slide = make_slide(ROOT / "build" / "bench" / f"slide_{args.width}x{args.height}_{mpp}.png",
                       args.width, args.height, mpp)
    origins, tiles = cut_tiles(slide)
    print(f"slide {args.width}x{args.height} px at {mpp} µm/px, {len(tiles)} tiles of {TILE} px; "
          f"model {args.model.name}; device {args.device}; torch threads {threads} (both)",
          flush=True)

    ours_masks, ours_s = run_ours(args.model, tiles, args.device, args.trust)
    ours = merge(origins, ours_masks, slide.shape[:2])
    print(f"ours: {ours_s:.2f} s (in-process, batched, model load included)", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        seed_masks, seed_s = run_seed(args.model, tiles, grey, args.device, Path(tmp), threads)
    seed = merge(origins, seed_masks, slide.shape[:2])
    print(f"seed: {seed_s:.2f} s (PNG tiles + nnUNetv2_predict subprocess + merge)", flush=True)
    dice = 2 * np.logical_and(ours, seed).sum() / max(1, ours.sum() + seed.sum())
    print(f"agreement of merged masks: Dice {dice:.4f}, "
          f"marrow fraction {ours.mean():.3f} vs {seed.mean():.3f}")
    print(f"ratio {seed_s / ours_s:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
