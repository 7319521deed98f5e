#!/usr/bin/env bash
# Every benchmark, one after the other (each prints a Markdown table). Not part of the tests:
# figures from one run go to the README's performance section.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p benchmarks/results
python benchmarks/bench_convert.py | tee benchmarks/results/convert.md
python benchmarks/bench_loader.py | tee benchmarks/results/loader.md
python benchmarks/bench_integrity.py | tee benchmarks/results/integrity.md
python benchmarks/bench_train.py | tee benchmarks/results/train.md
python benchmarks/bench_epoch_start.py | tee benchmarks/results/epoch_start.md
python benchmarks/bench_exit.py | tee benchmarks/results/exit.md
bash benchmarks/bench_demo.sh
# needs: pip install tangermeme; the results file is replaced only by a finished run
python benchmarks/bench_ism.py > benchmarks/results/ism.md.tmp && mv benchmarks/results/ism.md.tmp benchmarks/results/ism.md
python benchmarks/doc_figures.py  # the docs quote the figures just measured
echo "real data: bash benchmarks/real_arabidopsis.sh [DATA_DIR]  (about 30 minutes)"
