#!/usr/bin/env bash
# The demo's figures: runs launch/demo.sh (synthetic data -> store -> torchrun, 2 CPU processes) in
# a temporary folder and writes its test metrics and wall time to benchmarks/results/demo.md, from
# which benchmarks/doc_figures.py copies them into the docs.
#   bash benchmarks/bench_demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
start=$(date +%s)
DEMO_DIR="$work/demo" bash launch/demo.sh > "$work/log" 2>&1 || { tail -20 "$work/log"; exit 1; }
seconds=$(( $(date +%s) - start ))
python - "$work/demo" "$seconds" > benchmarks/results/demo.md.tmp <<'PY'
import json, os, platform, sys, time
out, seconds = sys.argv[1], int(sys.argv[2])
m = json.load(open(f"{out}/run/test_metrics.json"))
ceiling = json.load(open(f"{out}/npz/truth.json"))["ceiling_pearson"][0]
print("# The demo (`make demo`: launch/demo.sh)\n")
print(f"Written by `benchmarks/bench_demo.sh` on {time.strftime('%Y-%m-%d %H:%M')} ({platform.machine()}, "
      f"{os.cpu_count()} CPUs): 12,000 / 1,000 / 1,000 synthetic 300-bp promoters, 10 epochs on 2 CPU processes.\n")
print(f"- test Pearson **{m['pearson']:.3f}** against a noise ceiling {ceiling:.3f} "
      f"({m['pearson'] / ceiling:.2f} of it), R² {m['r2']:.2f}, n {m['n']}")
print(f"- whole demo: {seconds / 60:.1f} min (synthesis, conversion, training, test report)")
PY
mv benchmarks/results/demo.md.tmp benchmarks/results/demo.md
cat benchmarks/results/demo.md
