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

"$PYTHON" - "$WORK" "$RESULTS" "$NPROC" "$STARTS" "$ROUNDS" <<'EOF'
import csv, json, os, platform, re, statistics, sys, time
work, results, nproc, starts, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
TSS = 165
TATA = re.compile(r"TATA[AT]A[AT]")  # the TATA box consensus (TATAWAW)


def seconds(name):
    return int(open(f"{work}/{name}.seconds").read())


def table(path):
    with open(path) as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


test = json.load(open(f"{work}/run/test_metrics.json"))
motifs, seqlets = table(f"{work}/motifs/motifs.tsv"), table(f"{work}/motifs/seqlets.tsv")
lines = [
    "# Motifs and designs from a model of plant core promoters (Jores et al. 2021, tobacco leaf)",
    "",
    f"Written by `benchmarks/real_motifs.sh` on {time.strftime('%Y-%m-%d %H:%M')} ({platform.machine()}, "
    f"{os.cpu_count()} CPUs, OMP_NUM_THREADS=1). Model: BasenjiModel, `--config core_promoter`, torchrun {nproc} "
    f"processes, split seed 0 (test r {test['pearson']:.3f}, {seconds('train')} s). Positions are bp from the TSS "
    "(the sequences run -165..+5).",
    "",
    f"## Patterns (TF-MoDISco on ISM of the {test['n']} test promoters, {seconds('motifs')} s; "
    "Tomtom against JASPAR CORE plants)",
    "",
    "| pattern | sign | seqlets | consensus | median position | best JASPAR plant match (q) |",
    "|---|---|---:|---|---:|---|",
]
for m in motifs:
    where = [int(s["from_tss"]) for s in seqlets if s["pattern"] == m["pattern"] and s["from_tss"] != ""]
    match = f"{m['match1_name']} ({m['match1_family'] or '-'}; q {float(m['match1_q']):.2g})" if m["match1_id"] else "none"
    lines.append(f"| {m['pattern']} | {m['sign']} | {m['seqlets']} | `{m['consensus']}` | "
                 f"{statistics.median(where) if where else '':} | {match} |")

designs = table(f"{work}/design/designs.tsv")
by_round = {}
for d in designs:
    if d["rank"] == "1":
        by_round.setdefault(int(d["round"]), []).append(d)
start = {d["id"]: d for d in by_round[0]}
lines += ["", f"## Designs ({starts} test promoters the model predicts weakest, {rounds} rounds, best single "
          f"substitution a round, GAATTC/GGTACC forbidden, -5..+5 fixed; {seconds('design')} s)", "",
          "| round | mean predicted log2 enrichment | mean gain over the start | with a TATA box at -40..-20 |",
          "|---:|---:|---:|---:|"]


def has_tata(seq):
    return any(TSS - 40 <= m.start() <= TSS - 20 for m in TATA.finditer(seq))


for r in sorted(by_round):
    rows = by_round[r]
    pred = [float(d["score"]) for d in rows]
    gain = [float(d["score"]) - float(start[d["id"]]["score"]) for d in rows]
    lines.append(f"| {r} | {statistics.mean(pred):.2f} | {statistics.mean(gain):+.2f} | "
                 f"{sum(has_tata(d['sequence']) for d in rows)} of {len(rows)} |")
final = by_round[max(by_round)]
kmers = {}
for d in final:
    for mutation in filter(None, d["mutations"].split(";")):
        pos = int(re.sub(r"\D", "", mutation)) - 1
        kmers.setdefault(pos - TSS, 0)
        kmers[pos - TSS] += 1
hot = sorted(kmers.items(), key=lambda kv: -kv[1])[:8]
lines += ["", "Substitutions of the final designs most often at (bp from the TSS: designs): "
          + ", ".join(f"{p:+d}: {n}" for p, n in hot) + "."]
text = "\n".join(lines) + "\n"
print(text)
os.makedirs(os.path.dirname(results) or ".", exist_ok=True)
open(results + ".tmp", "w").write(text)
os.replace(results + ".tmp", results)
print(f"-> {results}")
EOF
