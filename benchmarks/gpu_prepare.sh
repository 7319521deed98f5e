#!/usr/bin/env bash
# Prepares .gpu/ for benchmarks/gpu_check.sh, on a machine where pip reaches the package index, so that
# the GPU machine (torch, numpy, scipy, matplotlib, tqdm; no zarr, no webdataset, no network) spends its
# time measuring. Fills:
#   .gpu/wheels/  zarr, numcodecs, donfig, google-crc32c, webdataset, braceexpand: the versions this
#                 checkout's Python has installed (else the newest), built for CPython $PY_VERSION on x86-64
#   .gpu/data/    CNN_test_leaf.tsv of Jores et al. 2021 (1.5 MB), from ../shared/data/jores2021
# Then carry .gpu with the checkout (keep it out of git: echo /.gpu/ >> .git/info/exclude).
#
#   PY_VERSION=3.12 bash benchmarks/gpu_prepare.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY_VERSION="${PY_VERSION:-3.12}"
PYTHON="${PYTHON:-$([[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3)}"
mkdir -p .gpu/wheels .gpu/data
for name in zarr numcodecs donfig google-crc32c webdataset braceexpand; do
    version=$("$PYTHON" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name" 2>/dev/null || true)
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PY_VERSION" --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .gpu/wheels "$name${version:+==$version}"
done
cp "${JORES_DIR:-../shared/data/jores2021}/CNN_test_leaf.tsv" .gpu/data/
ls -l .gpu/wheels .gpu/data
