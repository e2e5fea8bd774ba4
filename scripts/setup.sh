#!/usr/bin/env bash
# Idempotent set-up on a fresh Debian machine: system packages, a venv in .venv, the project.
# Usage: scripts/setup.sh [--system]   (--system also installs the Debian packages tests need)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
stamp=.setup-stamp
want_system=0
[ "${1:-}" = "--system" ] && want_system=1

if [ "$want_system" = 1 ] && [ ! -f "$stamp.system" ]; then
  if command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends dcmtk dicom3tools orthanc orthanc-dicomweb \
      libturbojpeg0 libpixelmed-java default-jre-headless chromium >/dev/null
    # Node.js: keep an existing installation (e.g. NodeSource's, which bundles npm and
    # conflicts with Debian's npm package)
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
      apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
    fi
    touch "$stamp.system"
  else
    echo "setup: no apt-get: install dcmtk, dicom3tools, orthanc, orthanc-dicomweb," \
      "libturbojpeg0, libpixelmed-java, a JRE, chromium and Node.js yourself" >&2
  fi
fi

if [ ! -f "$stamp.python" ] || [ pyproject.toml -nt "$stamp.python" ]; then
  [ -d .venv ] || "$PY" -m venv .venv
  # shellcheck disable=SC1091
  . .venv/bin/activate
  python -m pip install -q --upgrade pip
  # The CPU wheel of torch first: an unpinned torch would pull a multi-GB CUDA build.
  python -m pip install -q "torch==${TORCH_VERSION:-2.13.0}"
  # nnU-Net without timm/torchvision (only its Primus architecture uses them).
  python -m pip install -q --no-deps "nnunetv2>=2.5,<3" "dynamic-network-architectures>=0.4,<0.5"
  python -m pip install -q acvl-utils batchgenerators batchgeneratorsv2 blosc2 einops graphviz \
    nibabel pandas requests scikit-learn seaborn SimpleITK yacs
  python -m pip install -q -e ".[dev]"
  touch "$stamp.python"
fi

# Node packages for the real non-Python clients the tests drive (gRPC client, viewer page).
if command -v npm >/dev/null; then
  for dir in tests/node tests/viewer; do
    if [ -f "$dir/package-lock.json" ] && { [ ! -d "$dir/node_modules" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules" ]; }; then
      npm ci --silent --no-audit --no-fund --prefix "$dir" >/dev/null
      touch "$dir/node_modules"
    fi
  done
fi
