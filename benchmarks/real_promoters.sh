#!/usr/bin/env bash
# Real-data benchmark: plant core promoter activity (Jores et al. 2021 STARR-seq, 170 bp).
#
#   benchmarks/real_promoters.sh [DATA_DIR] [-- extra trainer flags]
#
# DATA_DIR holds CNN_test_{leaf,proto}.tsv and CNN_test_{leaf,proto}_pred.tsv (default:
# ../shared/data/jores2021 relative to the repository root). For each assay (tobacco leaf, maize
# protoplast) and each seed in SEEDS, the script
#   1. splits the table 80/10/10 by a seeded hash of the gene id (convert.table_to_npz) and
#      writes a Zarr store (convert.npz_to_zarr),
#   2. fits k-mer ridge baselines on the same split (benchmarks/kmer_ridge.py),
#   3. trains BasenjiModel with presets/core_promoter.toml and with the trainer's defaults, and
#      (first seed) the DeepCRE CNN (--model deepcre, its published lr 1e-3, the preset's epochs and
#      shift), each under torchrun --standalone --nproc-per-node $NPROC (2 CPU processes, OMP_NUM_THREADS=1),
#   4. scores the paper's own CNN predictions on the same test rows (benchmarks/promoter_reference.py),
# and writes a Markdown table to benchmarks/results/real_promoters.md. The preset's "pipeline"
# time is the wall time from the TSV to the test report (steps 1 and 3), what a user waits.
#
# Environment: WORK (default ${TMPDIR:-/tmp}/promoters), PYTHON (.venv/bin/python when present),
# NPROC (2), SEEDS ("0 1 2": seed 0 runs every model, other seeds the preset and the ridge),
# ASSAYS ("leaf proto"), RESULTS (benchmarks/results/real_promoters.md).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DATA_DIR="../shared/data/jores2021"
if [[ $# -gt 0 && "$1" != "--" ]]; then DATA_DIR="$1"; shift; fi
[[ $# -gt 0 && "$1" == "--" ]] && shift
EXTRA=("$@")

WORK="${WORK:-${TMPDIR:-/tmp}/promoters}"
NPROC="${NPROC:-2}"
SEEDS="${SEEDS:-0 1 2}"
ASSAYS="${ASSAYS:-leaf proto}"
PRESET=presets/core_promoter.toml
RESULTS="${RESULTS:-benchmarks/results/real_promoters.md}"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

die() { echo "error: $*" >&2; exit 1; }
for assay in $ASSAYS; do
    for f in "CNN_test_$assay.tsv" "CNN_test_${assay}_pred.tsv"; do
        [[ -f "$DATA_DIR/$f" ]] || die "$DATA_DIR/$f: not found (usage: $0 [DATA_DIR] [-- trainer flags])"
    done
done
mkdir -p "$WORK"

train() {  # train RUN_DIR STORE [flags...]
    local run=$1 store=$2
    shift 2
    rm -rf "$run"
    "$PYTHON" -m torch.distributed.run --standalone --nproc-per-node "$NPROC" -m maize_ddp.train \
        --data "$store" --out "$run" --device cpu "$@" "${EXTRA[@]}" > "$run.log" 2>&1 \
        || { tail -5 "$run.log" >&2; die "training $run failed (log: $run.log)"; }
}

for assay in $ASSAYS; do
    for seed in $SEEDS; do
        dir="$WORK/$assay-seed$seed"
        mkdir -p "$dir"
        echo "== $assay, seed $seed -> $dir"
        start=$(date +%s)
        "$PYTHON" -m convert.table_to_npz "$DATA_DIR/CNN_test_$assay.tsv" --seq-col sequence \
            --label-col enrichment --id-col gene --seed "$seed" --out "$dir/npz" --overwrite --quiet > /dev/null
        "$PYTHON" -m convert.npz_to_zarr "$dir/npz" "$dir/data.zarr" --overwrite --quiet > /dev/null
        train "$dir/preset" "$dir/data.zarr" --config "$PRESET" --seed "$seed"
        echo "$(( $(date +%s) - start ))" > "$dir/preset.wall"
        "$PYTHON" benchmarks/kmer_ridge.py "$dir/data.zarr" --k 4 6 --json "$dir/kmer.json" > /dev/null
        "$PYTHON" benchmarks/promoter_reference.py "$DATA_DIR/CNN_test_$assay.tsv" \
            "$DATA_DIR/CNN_test_${assay}_pred.tsv" "$dir/preset/test_predictions.tsv" --json "$dir/published.json" > /dev/null
        if [[ "$seed" == "$(echo $SEEDS | cut -d' ' -f1)" ]]; then
            train "$dir/defaults" "$dir/data.zarr" --seed "$seed"
            train "$dir/deepcre" "$dir/data.zarr" --seed "$seed" --model deepcre --lr 1e-3 --epochs 30 --max-shift 5
        fi
    done
done

"$PYTHON" - "$WORK" "$RESULTS" "$NPROC" $ASSAYS <<'EOF'
import glob, json, os, platform, sys, time
work, results, nproc, *assays = sys.argv[1:]
NAMES = {"leaf": "tobacco leaf", "proto": "maize protoplast"}


def run_row(run, label, extra=""):
    test = json.load(open(f"{run}/test_metrics.json"))
    history = [json.loads(line) for line in open(f"{run}/metrics.jsonl")]
    val = max(h["val_pearson"] for h in history)
    minutes = sum(h["seconds"] for h in history) / 60
    return f"| {label} | {val:.3f} | **{test['pearson']:.3f}** | {test['r2']:.3f} | {minutes:.1f} min training{extra} |"


lines = ["| assay, seed | model | val r | test r | test R² | time |", "|---|---|---|---|---|---|"]
for assay in assays:
    for d in sorted(glob.glob(f"{work}/{assay}-seed*")):
        seed = d.rsplit("seed", 1)[1]
        tag = f"{NAMES.get(assay, assay)}, {seed}"
        wall = int(open(f"{d}/preset.wall").read())
        lines.append(run_row(f"{d}/preset", f"{tag} | BasenjiModel, `presets/core_promoter.toml`",
                             f"; TSV to test report {wall / 60:.1f} min"))
        if os.path.exists(f"{d}/defaults/test_metrics.json"):
            lines.append(run_row(f"{d}/defaults", f"{tag} | BasenjiModel, trainer defaults"))
        if os.path.exists(f"{d}/deepcre/test_metrics.json"):
            lines.append(run_row(f"{d}/deepcre", f"{tag} | DeepCRE CNN (`--model deepcre --lr 1e-3`, the preset's "
                                 "30 epochs and shift +-5)"))
        for r in json.load(open(f"{d}/kmer.json")):
            lines.append(f"| {tag} | {r['model']} ridge, alpha {r['alpha']:.3g} | {r['val_pearson']:.3f} | "
                         f"{r['test_pearson']:.3f} | {r['test_r2']:.3f} | {r['seconds']:.0f} s |")
        pub = json.load(open(f"{d}/published.json"))
        lines.append(f"| {tag} | published CNN (Jores et al. 2021; trained on ~65k sequences), on the "
                     f"{pub['matched']} of {pub['test_rows']} test rows matched ({pub['ambiguous']} ambiguous) | | "
                     f"{pub['published_pearson']:.3f} (ours on the same rows: {pub['ours_pearson_same_rows']:.3f}) | | |")
header = [
    "# Plant core promoters (Jores et al. 2021 STARR-seq): BasenjiModel and DeepCRE vs k-mer ridge vs the published CNN",
    "",
    f"Written by `benchmarks/real_promoters.sh` on {time.strftime('%Y-%m-%d %H:%M')} ({platform.machine()}, "
    f"{os.cpu_count()} CPUs; torchrun {nproc} processes, OMP_NUM_THREADS=1). Each assay's 170-bp sequences "
    "are split 80/10/10 by a seeded hash of the gene id (`convert.table_to_npz --seed`); the label is log2 "
    "STARR-seq enrichment. Checkpoints and ridge alphas are chosen on val; test is scored once. The published "
    "predictions are matched to rows by (species, enrichment to 8 decimals); rows whose key several rows "
    "share are left out and counted as ambiguous.",
    "",
]
text = "\n".join(header + lines) + "\n"
print(text)
if results != "/dev/null":
    os.makedirs(os.path.dirname(results) or ".", exist_ok=True)
    open(results + ".tmp", "w").write(text)
    os.replace(results + ".tmp", results)
    print(f"-> {results}")
EOF
