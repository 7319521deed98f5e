#!/usr/bin/env bash
# The whole story on CPU in a few minutes: synthetic npz shards -> Zarr store -> DDP training
# with torchrun on 2 CPU processes -> test metrics and plots in demo/run.
set -euo pipefail
OUT=${DEMO_DIR:-demo}
NPROC=${NPROC:-2}
mkdir -p "$OUT"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1  # restarts reconnect cleanly (docs/cluster.md)

echo "== 1/3 synthetic dataset (seed npz layout) -> $OUT/npz"
python -m convert.synth "$OUT/npz" --train 12000 --val 1000 --test 1000 --seq-len 300 --shard-size 2000 --overwrite

echo "== 2/3 convert npz -> $OUT/data.zarr"
python -m convert.npz_to_zarr "$OUT/npz" "$OUT/data.zarr" --overwrite --workers 2

echo "== 3/3 train on $NPROC processes -> $OUT/run"
rm -rf "$OUT/run"
# 300 bp leave 2 positions after the default pools (8 x 4 x 4): of the six dilated blocks only
# dilations 1 and 2 can use them (the trainer warns about the rest), so the demo keeps two.
torchrun --standalone --nproc-per-node "$NPROC" -m maize_ddp.train \
    --data "$OUT/data.zarr" --out "$OUT/run" --epochs 10 --batch-size 32 --convdc 2

python - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
m = json.load(open(f"{out}/run/test_metrics.json"))
ceiling = json.load(open(f"{out}/npz/truth.json"))["ceiling_pearson"][0]
print(f"test Pearson {m['pearson']:.3f} (noise ceiling {ceiling:.3f}), R2 {m['r2']:.3f}, n {m['n']}")
print(f"report: {out}/run/test_metrics.json, scatter.png, curves.png, test_predictions.tsv")
PY
