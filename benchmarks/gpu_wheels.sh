#!/usr/bin/env bash
# Downloads (here, where pip can reach PyPI) the wheels that the H200 image lacks, for its
# Python 3.12, into .whl/ (git-ignored). benchmarks/gpu.sh installs them there with --no-deps.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
PLAT=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64
      --platform manylinux2014_x86_64 --platform any)
for spec in nnunetv2==2.8.1 dynamic-network-architectures acvl-utils batchgenerators \
            shapely pydicom openslide-python openslide-bin; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${PLAT[@]}" -d .whl "$spec" \
  || python3 -m pip download -q --no-deps --no-binary=:none: -d .whl "$spec"
done
# sdists (pure-Python packages without wheels) become wheels so --no-index installs work
for sdist in .whl/*.tar.gz; do
  [ -e "$sdist" ] || continue
  python3 -m pip wheel -q --no-deps -w .whl "$sdist" && rm "$sdist"
done
du -sh .whl && ls .whl
