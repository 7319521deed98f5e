#!/usr/bin/env bash
# Real-data benchmark: Arabidopsis chromosome 1, leaf expression from gene-flanking DNA.
#
#   benchmarks/real_arabidopsis.sh [DATA_DIR] [-- extra trainer flags]
#
# DATA_DIR holds TAIR10_chr1.fna.gz, TAIR10_chr1.gff.gz and leaf_tpm.csv (default:
# ../shared/data/arabidopsis_chr1 relative to the repository root). The script
#   1. builds the dataset with convert.genome_to_npz (3020 bp promoter + terminator windows,
#      label log10(mean TPM + 1) over the 14 ERR* runs, contiguous position blocks 80/10/10),
#   2. converts it to a Zarr store with convert.npz_to_zarr,
#   3. fits k-mer ridge baselines on the same split (benchmarks/kmer_ridge.py),
#   4. trains BasenjiModel with presets/gene_level.toml under
#      torchrun --standalone --nproc-per-node $NPROC (default 2 CPU processes, OMP_NUM_THREADS=1)
#      and writes the test report,
#   5. prints a Markdown table and writes it to benchmarks/results/real_arabidopsis.md.
#
# Environment: WORK (intermediate data, default ${TMPDIR:-/tmp}/arabidopsis), PYTHON (default
# .venv/bin/python when present, else python3), NPROC (2), PRESET (presets/gene_level.toml),
# RESULTS (benchmarks/results/real_arabidopsis.md). Flags after `--` go to the trainer, e.g.
# `-- --epochs 2` for a quick check (then pass RESULTS=/dev/null to keep the committed table).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DATA_DIR="../shared/data/arabidopsis_chr1"
if [[ $# -gt 0 && "$1" != "--" ]]; then DATA_DIR="$1"; shift; fi
[[ $# -gt 0 && "$1" == "--" ]] && shift
EXTRA=("$@")

WORK="${WORK:-${TMPDIR:-/tmp}/arabidopsis}"
NPROC="${NPROC:-2}"
PRESET="${PRESET:-presets/gene_level.toml}"
RESULTS="${RESULTS:-benchmarks/results/real_arabidopsis.md}"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

die() { echo "error: $*" >&2; exit 1; }
for f in TAIR10_chr1.fna.gz TAIR10_chr1.gff.gz leaf_tpm.csv; do
    [[ -f "$DATA_DIR/$f" ]] || die "$DATA_DIR/$f: not found (usage: $0 [DATA_DIR] [-- trainer flags])"
done
[[ -f "$PRESET" ]] || die "$PRESET: preset not found"
mkdir -p "$WORK"

echo "== 1/5 genome -> npz ($DATA_DIR -> $WORK/npz)"
"$PYTHON" -m convert.genome_to_npz \
    --fasta "$DATA_DIR/TAIR10_chr1.fna.gz" --gff "$DATA_DIR/TAIR10_chr1.gff.gz" \
    --expression "$DATA_DIR/leaf_tpm.csv" \
    --id-attribute locus_tag --biotype protein_coding --columns 'ERR*' \
    --dtype uint8 --out "$WORK/npz" --overwrite

echo "== 2/5 npz -> Zarr ($WORK/data.zarr)"
"$PYTHON" -m convert.npz_to_zarr "$WORK/npz" "$WORK/data.zarr" --overwrite --quiet

echo "== 3/5 k-mer ridge baselines"
"$PYTHON" benchmarks/kmer_ridge.py "$WORK/data.zarr" --k 4 6 --regions whole --json "$WORK/kmer_whole.json"
"$PYTHON" benchmarks/kmer_ridge.py "$WORK/data.zarr" --k 4 --regions split --json "$WORK/kmer_split.json"

echo "== 4/5 train: torchrun --nproc-per-node $NPROC, $PRESET ${EXTRA[*]:-}"
RUN="$WORK/run"
rm -rf "$RUN"
start=$(date +%s)
"$PYTHON" -m torch.distributed.run --standalone --nproc-per-node "$NPROC" -m maize_ddp.train \
    --config "$PRESET" --data "$WORK/data.zarr" --out "$RUN" --device cpu "${EXTRA[@]}"
end=$(date +%s)

echo "== 5/5 results"
mkdir -p "$(dirname "$RESULTS")"
"$PYTHON" - "$WORK" "$RUN" "$PRESET" "$NPROC" "$((end - start))" "$RESULTS" <<'EOF'
import json, os, platform, sys, time
work, run, preset, nproc, wall, results = sys.argv[1:]
rows = json.load(open(f"{work}/kmer_whole.json")) + json.load(open(f"{work}/kmer_split.json"))
test = json.load(open(f"{run}/test_metrics.json"))
history = [json.loads(line) for line in open(f"{run}/metrics.jsonl")]
summary = json.load(open(f"{work}/npz/summary.json"))
train_min = sum(h["seconds"] for h in history) / 60
best = max(history, key=lambda h: h["val_pearson"])
lines = [
    "| model | val r | test Pearson r | test Spearman ρ | test R² | training time |",
    "|---|---|---|---|---|---|",
]
for r in rows:
    lines.append(f"| {r['model']}, alpha {r['alpha']:.3g} | {r['val_pearson']:.3f} | {r['test_pearson']:.3f} "
                 f"| {r['test_spearman']:.3f} | {r['test_r2']:.3f} | {r['seconds']:.0f} s (features + fit) |")
lines.append(f"| BasenjiModel, `{preset}`, torchrun {nproc} CPU processes, best epoch {test['best_epoch']}/"
             f"{len(history)} | {best['val_pearson']:.3f} | **{test['pearson']:.3f}** | {test['spearman']:.3f} "
             f"| **{test['r2']:.3f}** | {train_min:.1f} min (wall {int(wall) / 60:.1f} min) |")
n = summary["rows"]
header = [
    "# Arabidopsis chr1 leaf expression: k-mer ridge vs BasenjiModel",
    "",
    f"Written by `benchmarks/real_arabidopsis.sh` on {time.strftime('%Y-%m-%d %H:%M')} "
    f"({platform.machine()}, {os.cpu_count()} CPUs, OMP_NUM_THREADS=1 per process). "
    f"Genes: train {n['train']}, val {n['val']}, test {n['test']}; label log10(mean TPM + 1) over 14 leaf runs; 3020 bp windows; "
    "contiguous position blocks 80/10/10. Ridge alpha and the CNN's checkpoint are chosen on val; "
    "test is scored once. CNN training time: the sum of the epochs' training time (validation excluded); "
    "wall: the whole torchrun command, start-up, validation and test report included.",
    "",
]
text = "\n".join(header + lines) + "\n"
print(text)
if results != "/dev/null":
    tmp = results + ".tmp"
    open(tmp, "w").write(text)
    os.replace(tmp, results)
    print(f"-> {results}")
EOF
