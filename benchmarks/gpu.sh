#!/usr/bin/env bash
# One prepared H200 check of the nnU-Net segmenter (run on the lent device machine).
#
# From the repo root, with the wheels the device image lacks carried in .whl/ (prepare them
# here once with `bash benchmarks/gpu_wheels.sh`):
#   device run: carry [".whl"], timeout_s 540,
#     command "bash benchmarks/gpu.sh"
# Measures (log also written to $OUT/gpu_nnunet.log when $OUT is set):
#   1. default-size 2D nnU-Net (features 32-512, 1280² tile) in bf16: tiles/s end to end and
#      network only, and their share of the ≈660 tiles/s compute bound;
#   2. a 9464×2232 synthetic slide: seconds with the model loaded (warm) and from a cold CLI.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
LOG=${OUT:-/tmp}/gpu_nnunet.log
export PYTHONUNBUFFERED=1

if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || { echo "wheel install failed"; exit 1; }
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi

{
  date -u
  nvidia-smi --query-gpu=name,memory.total,memory.used,clocks.max.sm --format=csv || true
  "$PY" - <<'PY' || { echo "missing packages: run benchmarks/gpu_wheels.sh here and carry .whl"; exit 1; }
import torch, nnunetv2, dynamic_network_architectures, acvl_utils, batchgenerators
print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0))
PY
  echo "== 1. throughput (default 2D nnU-Net, bf16, channels_last) =="
  timeout 240 "$PY" benchmarks/gpu_nnunet.py throughput --tiles 192 --device cuda
  echo "== 2. per-slide time, 9464x2232 synthetic slide =="
  timeout 240 "$PY" benchmarks/gpu_nnunet.py slide --device cuda
  echo "== 3. unit tests marked gpu =="
  timeout 60 "$PY" -m pytest -q -m gpu tests/unit/test_nnunet_segmenter.py -p no:cacheprovider --noconftest \
    -o addopts="" 2>&1 | tail -3
  date -u
} 2>&1 | tee "$LOG"
