#!/usr/bin/env bash
# Real-data benchmark: from a model of plant core promoters to motifs and designs
# (Jores et al. 2021 STARR-seq, tobacco leaf; 170 bp, -165..+5 around the TSS).
#
#   benchmarks/real_motifs.sh [DATA_DIR]
#
# DATA_DIR holds CNN_test_leaf.tsv (default ../shared/data/jores2021). The script
#   1. splits the table 80/10/10 by a seeded hash of the gene id (seed 0, as real_promoters.sh),
#      recording the TSS at position 165 (convert.table_to_npz --tss-position), and writes a store,
#   2. trains BasenjiModel with the core_promoter preset (torchrun, $NPROC CPU processes),
#   3. runs maize_ddp.motifs on every test promoter: ISM -> TF-MoDISco -> Tomtom against JASPAR
#      CORE plants, seqlet positions in bp from the TSS,
#   4. runs maize_ddp.design from the $STARTS test promoters the model predicts weakest: $ROUNDS
#      rounds of the best single substitution (as Jores et al. evolved promoters), with the
#      EcoRI/KpnI sites GAATTC/GGTACC forbidden and the TSS region (-5..+5) fixed,
# and writes benchmarks/results/real_motifs.md: the patterns and their matches, where their
# seqlets sit, the predicted gain per round and what the designs gained (TATA boxes).
#
# Environment: WORK (default ${TMPDIR:-/tmp}/real_motifs), PYTHON (.venv/bin/python when present),
# NPROC (2), STARTS (20), ROUNDS (10), RESULTS (benchmarks/results/real_motifs.md).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DATA_DIR="${1:-../shared/data/jores2021}"
WORK="${WORK:-${TMPDIR:-/tmp}/real_motifs}"
NPROC="${NPROC:-2}"
STARTS="${STARTS:-20}"
ROUNDS="${ROUNDS:-10}"
RESULTS="${RESULTS:-benchmarks/results/real_motifs.md}"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
TABLE="$DATA_DIR/CNN_test_leaf.tsv"
[[ -f "$TABLE" ]] || { echo "error: $TABLE: not found (usage: $0 [DATA_DIR])" >&2; exit 1; }
mkdir -p "$WORK"
timed() {  # timed NAME command...: runs it, keeps its log, records its wall seconds
    local name=$1 start
    shift
    start=$(date +%s)
    "$@" > "$WORK/$name.log" 2>&1 || { tail -5 "$WORK/$name.log" >&2; echo "error: $name failed (log: $WORK/$name.log)" >&2; exit 1; }
    echo "$(( $(date +%s) - start ))" > "$WORK/$name.seconds"
}

echo "== data and model -> $WORK"
"$PYTHON" -m convert.table_to_npz "$TABLE" --seq-col sequence --label-col enrichment --id-col gene --seed 0 \
    --tss-position 165 --out "$WORK/npz" --overwrite --quiet > /dev/null
"$PYTHON" -m convert.npz_to_zarr "$WORK/npz" "$WORK/data.zarr" --overwrite --quiet > /dev/null
rm -rf "$WORK/run"
timed train "$PYTHON" -m torch.distributed.run --standalone --nproc-per-node "$NPROC" -m maize_ddp.train \
    --config core_promoter --data "$WORK/data.zarr" --out "$WORK/run" --device cpu

echo "== motifs"
timed motifs "$PYTHON" -m maize_ddp.motifs "$WORK/run" --data "$WORK/data.zarr" --split test \
    --out "$WORK/motifs" --overwrite --device cpu

echo "== design"
"$PYTHON" - "$WORK" "$TABLE" "$STARTS" <<'EOF'
import csv, sys
work, table, starts = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open(f"{work}/run/test_predictions.tsv") as fh:
    rows = sorted(csv.DictReader(fh, delimiter="\t"), key=lambda r: float(r["predicted"]))[:starts]
with open(table) as fh:
    seqs = {r["gene"]: r["sequence"] for r in csv.DictReader(fh, delimiter="\t")}
with open(f"{work}/weakest.fa", "w") as out:
    out.writelines(f">{r['id']}\n{seqs[r['id']]}\n" for r in rows)
EOF
timed design "$PYTHON" -m maize_ddp.design "$WORK/run" --seqs "$WORK/weakest.fa" --rounds "$ROUNDS" \
    --forbid GAATTC --forbid GGTACC --fixed 160:170 --out "$WORK/design" --overwrite --device cpu

"$PYTHON" benchmarks/real_motifs_report.py "$WORK" "$RESULTS" --nproc "$NPROC"
