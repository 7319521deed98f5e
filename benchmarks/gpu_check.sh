#!/usr/bin/env bash
# The GPU check: every GPU figure of the project from ONE call on a GPU machine (< 8 min on one H200).
#
#   bash benchmarks/gpu_prepare.sh                 # beforehand, where pip reaches the index: fills .gpu/
#   bash benchmarks/gpu_check.sh OUT               # on the GPU machine (carry .gpu there)
#   bash benchmarks/gpu_check.sh --dry-run OUT     # the same steps on CPU at a tiny size (tests/test_gpu_check.py)
#
# Steps, each under its own time limit so that one slow step never costs the others their figures:
#   0. install   the wheels in .gpu/wheels (zarr, webdataset and their needs, which a bare GPU image
#                lacks) into a temp folder, the project from this checkout (PYTHONPATH); nvidia-smi, torch
#   1. bench     benchmarks/bench_gpu.py: ideal eager / ideal compiled / trainer / trainer --compile,
#                fp32 and bf16, batch 32 and 256, first epoch vs steady, peak GPU memory
#   2. real      Jores et al. 2021 leaf promoters ($JORES_LEAF, else .gpu/data, else ../shared/data/jores2021): table ->
#                npz -> Zarr -> presets/core_promoter.toml on one GPU; test r, R², time
#   3. interpret benchmarks/bench_interpret.py: ISM and saliency sequences/s at 300 and 3020 bp
#   4. ddp       torchrun, 2 processes on the one GPU with --backend gloo (CUDA tensors through DDP's
#                gradient hooks, BatchNorm broadcasts, fused AdamW), eager fp32 and bf16 --compile
# Writes OUT/gpu.md (every figure, in the layout of benchmarks/results/gpu.md) and OUT/check.log.
# Exits non-zero when a step failed; the steps after it still run.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DRY=0
if [[ "${1:-}" == "--dry-run" ]]; then DRY=1; shift; fi
[[ $# -eq 1 ]] || { echo "usage: $0 [--dry-run] OUT" >&2; exit 2; }
OUT="$(mkdir -p "$1" && cd "$1" && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
LOG="$OUT/check.log"
REPORT="$OUT/gpu.md"
PYTHON="${PYTHON:-python3}"
cd "$ROOT"
: > "$LOG"
export PYTHONUNBUFFERED=1 TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 MPLBACKEND=Agg

if [[ $DRY == 1 ]]; then
    DEVICE=cpu; export OMP_NUM_THREADS=1 CUDA_VISIBLE_DEVICES=""
    BENCH=(--tiny --rows 256 --seq-len 64 --batch-sizes 16 --precisions off)
    INTERPRET=(--device cpu --seq-lens 300 --batch-sizes 256)
    REAL_ROWS=400; REAL_FLAGS=(--epochs 1); DDP_ROWS=256; DDP_EVAL_ROWS=64; DDP_LEN=300
    DDP_FLAGS=(--epochs 1 --num-workers 0)  # data-loader workers would only add process start-ups here
    LIMIT_BENCH=600; LIMIT_REAL=300; LIMIT_INTERPRET=300; LIMIT_DDP=600
else
    DEVICE=cuda
    BENCH=(--rows 8192 --seq-len 3020 --batch-sizes 32,256 --precisions off,bf16 --workers 4)
    INTERPRET=(--device cuda --seq-lens 300,3020 --batch-sizes 256,1024,4096)
    REAL_ROWS=0; REAL_FLAGS=(--num-workers 2); DDP_ROWS=8192; DDP_EVAL_ROWS=512; DDP_LEN=1000
    DDP_FLAGS=(--epochs 2 --num-workers 1)  # a worker per rank: pinned memory with several processes
    LIMIT_BENCH=${LIMIT_BENCH:-230}; LIMIT_REAL=${LIMIT_REAL:-100}; LIMIT_INTERPRET=${LIMIT_INTERPRET:-45}
    LIMIT_DDP=${LIMIT_DDP:-80}
fi

failed=()
section() { printf '\n%s\n\n' "$*" >> "$REPORT"; }
# step NAME LIMIT_S CMD...: run CMD with its output in the log, under a time limit; note a failure
step() {
    local name=$1 limit=$2 start rc
    shift 2
    start=$(date +%s)
    echo "== $name: $*" | tee -a "$LOG"
    timeout --kill-after 10 "$limit" "$@" >> "$LOG" 2>&1
    rc=$?
    echo "== $name: exit $rc after $(( $(date +%s) - start )) s" | tee -a "$LOG"
    if [[ $rc != 0 ]]; then
        failed+=("$name (exit $rc$([[ $rc == 124 || $rc == 137 ]] && echo ", over its ${limit} s"))")
        return 1
    fi
}

# 0. install -------------------------------------------------------------------------------------
if [[ $DRY == 0 ]] && compgen -G ".gpu/wheels/*.whl" > /dev/null; then  # a dry run uses this Python's own
    step install 120 "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$WORK/site" .gpu/wheels/*.whl
    export PYTHONPATH="$WORK/site:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
else
    export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
fi
{
    echo "# GPU check ($(date -u '+%Y-%m-%d %H:%M UTC')$([[ $DRY == 1 ]] && echo ', dry run on CPU'))"
    echo
    echo 'Written by `bash benchmarks/gpu_check.sh OUT` in one call; the raw output is in check.log.'
    echo
    "$PYTHON" - <<'EOF'
import platform, os, torch, zarr, webdataset
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
print(f"- {gpu}; torch {torch.__version__} (CUDA {torch.version.cuda}), zarr {zarr.__version__}, "
      f"webdataset {webdataset.__version__}, Python {platform.python_version()}, {os.cpu_count()} CPUs")
EOF
    command -v nvidia-smi > /dev/null && [[ $DRY == 0 ]] && \
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | sed 's/^/- nvidia-smi: /'
} >> "$REPORT" 2>> "$LOG"

# 1. bench_gpu -----------------------------------------------------------------------------------
section "## 1. Trainer vs ideal loops (benchmarks/bench_gpu.py)"
step bench "$LIMIT_BENCH" "$PYTHON" benchmarks/bench_gpu.py "${BENCH[@]}" --work "$WORK/bench" --out "$WORK/bench.md"
[[ -f "$WORK/bench.md" ]] && cat "$WORK/bench.md" >> "$REPORT"

# 2. real data with a preset ---------------------------------------------------------------------
section "## 2. Real data on the GPU: Jores 2021 leaf promoters, presets/core_promoter.toml"
DATA="${JORES_LEAF:-$ROOT/.gpu/data/CNN_test_leaf.tsv}"
[[ -f "$DATA" || -n "${JORES_LEAF:-}" ]] || DATA="$ROOT/../shared/data/jores2021/CNN_test_leaf.tsv"
if [[ ! -f "$DATA" ]]; then
    echo "(skipped: no $DATA; set JORES_LEAF or run benchmarks/gpu_prepare.sh)" >> "$REPORT"
    failed+=("real (no data)")
else
    table="$DATA"
    if [[ $REAL_ROWS -gt 0 ]]; then table="$WORK/leaf.tsv"; head -n $((REAL_ROWS + 1)) "$DATA" > "$table"; fi
    start=$(date +%s)
    step real-convert 120 bash -c '"$0" -m convert.table_to_npz "$1" --seq-col sequence --label-col enrichment \
            --id-col gene --seed 0 --out "$2/leaf_npz" --quiet && "$0" -m convert.npz_to_zarr "$2/leaf_npz" "$2/leaf.zarr" --quiet' \
        "$PYTHON" "$table" "$WORK" \
    && step real-train "$LIMIT_REAL" "$PYTHON" -m maize_ddp.train --data "$WORK/leaf.zarr" --out "$WORK/leaf_run" \
        --config presets/core_promoter.toml --device "$DEVICE" --seed 0 "${REAL_FLAGS[@]}"
    wall=$(( $(date +%s) - start ))
    "$PYTHON" - "$WORK/leaf_run" "$wall" >> "$REPORT" 2>> "$LOG" <<'EOF'
import json, sys
run, wall = sys.argv[1], int(sys.argv[2])
m = json.load(open(f"{run}/test_metrics.json"))
history = [json.loads(line) for line in open(f"{run}/metrics.jsonl")]
train_s = sum(h["seconds"] for h in history)
print(f"Seed-0 split (80/10/10 by a hash of the gene id), one process: {len(history)} epochs, test r "
      f"**{m['pearson']:.3f}**, R² {m['r2']:.3f} (n {m['n']}); best val r {max(h['val_pearson'] for h in history):.3f}; "
      f"{train_s:.0f} s in the epochs, {wall} s from the table to the test report. The same split and preset on "
      "2 CPU processes: benchmarks/results/real_promoters.md.")
EOF
fi

# 3. attribution throughput ----------------------------------------------------------------------
section "## 3. Attribution throughput (benchmarks/bench_interpret.py, default model, fp32)"
step interpret "$LIMIT_INTERPRET" bash -c '"$0" benchmarks/bench_interpret.py "${@:2}" > "$1"' \
    "$PYTHON" "$WORK/interpret.md" "${INTERPRET[@]}"
[[ -f "$WORK/interpret.md" ]] && cat "$WORK/interpret.md" >> "$REPORT"

# 4. DDP on CUDA tensors: two processes share the one GPU through gloo ------------------------------
section "## 4. DDP, 2 processes on one device, --backend gloo"
step ddp-data 120 bash -c '"$0" -m convert.synth "$1/ddp_npz" --train "$2" --val "$3" --test "$3" --seq-len "$4" \
        --shard-size 2048 --dtype uint8 && "$0" -m convert.npz_to_zarr "$1/ddp_npz" "$1/ddp.zarr" --quiet' \
    "$PYTHON" "$WORK" "$DDP_ROWS" "$DDP_EVAL_ROWS" "$DDP_LEN"
ddp_runs=()
for variant in "fp32:--amp off" "bf16-compile:--amp bf16 --compile"; do
    name=${variant%%:*}
    read -r -a flags <<< "${variant#*:}"
    step "ddp-$name" "$LIMIT_DDP" "$PYTHON" -m torch.distributed.run --standalone --nproc-per-node 2 \
        -m maize_ddp.train --data "$WORK/ddp.zarr" --out "$WORK/ddp_$name" --device "$DEVICE" --backend gloo \
        --batch-size 64 --warmup-steps 10 --convdc 2 "${DDP_FLAGS[@]}" "${flags[@]}" \
        && ddp_runs+=("$name=$WORK/ddp_$name")
done
"$PYTHON" - "${ddp_runs[@]}" >> "$REPORT" 2>> "$LOG" <<'EOF'
import json, sys
print("| run | epochs | train samples/s (last epoch, both ranks) | val r (last epoch) | test r | test n |")
print("|---|---:|---:|---:|---:|---:|")
for arg in sys.argv[1:]:
    name, run = arg.split("=", 1)
    history = [json.loads(line) for line in open(f"{run}/metrics.jsonl")]
    m = json.load(open(f"{run}/test_metrics.json"))
    print(f"| {name} | {len(history)} | {history[-1]['samples_per_s']:,.0f} | "
          f"{history[-1]['val_pearson']:.3f} | {m['pearson']:.3f} | {m['n']} |")
EOF

{
    echo
    if [[ ${#failed[@]} -eq 0 ]]; then echo "All steps passed."; else echo "Failed steps: ${failed[*]}."; fi
} >> "$REPORT"
cat "$REPORT"
[[ ${#failed[@]} -eq 0 ]]
