#!/usr/bin/env bash
# Cross-validation benchmark: Arabidopsis chromosome 1, 5 position-block folds, regression and
# high/low classification, BasenjiModel beside a k-mer baseline on the same folds.
#
#   benchmarks/real_folds.sh [DATA_DIR] [-- extra trainer flags]
#
# DATA_DIR holds TAIR10_chr1.fna.gz, TAIR10_chr1.gff.gz and leaf_tpm.csv (default
# ../shared/data/arabidopsis_chr1). The script
#   1. makes 5 folds twice with convert.genome_to_npz --folds 5 (one chromosome: 5 contiguous
#      position blocks; fold I tests block I, validates on block I+1): regression labels
#      log10(mean TPM + 1) over the 14 ERR* runs, and classification labels from
#      --classes quartiles --class-column logMaxTPM (top quartile 1, bottom 0, middle dropped),
#   2. trains every fold of both with launch/cv.sh and presets/gene_level.toml (torchrun, $NPROC
#      CPU processes; --task classification for the second), which also writes the per-fold and
#      pooled report (maize_ddp.cv_report),
#   3. fits a 4-mer ridge baseline on each fold's train split (TSS and TTS halves counted apart,
#      alpha chosen on val Pearson, or val auROC of the ridge score for classification) and
#      scores it on the same test folds, per fold and pooled,
#   4. writes benchmarks/results/real_folds.md.
#
# Environment: WORK (default ${TMPDIR:-/tmp}/real_folds; its contents are reused: cv.sh resumes
# unfinished folds and skips finished ones, so delete WORK for a fresh run), PYTHON, NPROC (2),
# PRESET (presets/gene_level.toml), RESULTS (benchmarks/results/real_folds.md). Flags after `--` go
# to the trainer, e.g. `-- --epochs 4`; the results file then says so.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DATA_DIR="../shared/data/arabidopsis_chr1"
if [[ $# -gt 0 && "$1" != "--" ]]; then DATA_DIR="$1"; shift; fi
[[ $# -gt 0 && "$1" == "--" ]] && shift
EXTRA=("$@")

WORK="${WORK:-${TMPDIR:-/tmp}/real_folds}"
NPROC="${NPROC:-2}"
PRESET="${PRESET:-presets/gene_level.toml}"
RESULTS="${RESULTS:-benchmarks/results/real_folds.md}"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 NPROC_PER_NODE="$NPROC" MAIZE_DDP_PYTHON="$PYTHON"

die() { echo "error: $*" >&2; exit 1; }
for f in TAIR10_chr1.fna.gz TAIR10_chr1.gff.gz leaf_tpm.csv; do
    [[ -f "$DATA_DIR/$f" ]] || die "$DATA_DIR/$f: not found (usage: $0 [DATA_DIR] [-- trainer flags])"
done
[[ -f "$PRESET" ]] || die "$PRESET: preset not found"
mkdir -p "$WORK"

COMMON=(--fasta "$DATA_DIR/TAIR10_chr1.fna.gz" --gff "$DATA_DIR/TAIR10_chr1.gff.gz"
        --expression "$DATA_DIR/leaf_tpm.csv" --id-attribute locus_tag --biotype protein_coding
        --dtype uint8 --folds 5 --quiet)
echo "== 1/4 genome -> 5 folds, twice ($WORK/{regression,classification}/folds)"
[[ -f "$WORK/regression/folds/folds.json" ]] ||
    "$PYTHON" -m convert.genome_to_npz "${COMMON[@]}" --columns 'ERR*' --out "$WORK/regression/folds"
[[ -f "$WORK/classification/folds/folds.json" ]] ||
    "$PYTHON" -m convert.genome_to_npz "${COMMON[@]}" --classes quartiles --class-column logMaxTPM \
        --out "$WORK/classification/folds"

start=$(date +%s)
echo "== 2/4 train every fold: launch/cv.sh, $PRESET ${EXTRA[*]:-}"
launch/cv.sh "$WORK/regression/folds" "$WORK/regression/runs" --config "$PRESET" --device cpu "${EXTRA[@]}"
launch/cv.sh "$WORK/classification/folds" "$WORK/classification/runs" --config "$PRESET" --device cpu \
    --task classification "${EXTRA[@]}"
end=$(date +%s)

echo "== 3/4 k-mer baselines on the same folds"
"$PYTHON" - "$WORK" <<'EOF_PY'
"""4-mer ridge per fold (features of benchmarks/kmer_ridge.py), scored like the CNN by cv_report."""
import json, sys, time
import numpy as np
sys.path.insert(0, "benchmarks")
from kmer_ridge import fit_ridge, load_split, standardised
from maize_ddp.cv_report import fold_metrics, spread
from maize_ddp.metrics import auroc

work = sys.argv[1]
for task in ("regression", "classification"):
    folds, ys, ps = [], [], []
    for i in range(5):
        t0 = time.perf_counter()
        store = f"{work}/{task}/runs/stores/fold-{i}.zarr"
        data = {s: load_split(store, s) for s in ("train", "val", "test")}
        Z, y = standardised(data, 4, "split")
        alpha, _, preds = fit_ridge(Z, y, auroc if task == "classification" else None)
        pred = preds["test"]
        if task == "classification":  # a ridge score on 0/1 labels: clipped to [0, 1], accuracy at 0.5
            pred = np.clip(pred, 0, 1)
        m = fold_metrics(task, y["test"][:, None], pred[:, None])
        folds.append({"fold": f"fold-{i}", **m, "alpha": float(alpha), "seconds": time.perf_counter() - t0})
        ys.append(y["test"]), ps.append(pred)
        print(task, folds[-1], flush=True)
    pooled = {"fold": "pooled", **fold_metrics(task, np.concatenate(ys)[:, None], np.concatenate(ps)[:, None])}
    with open(f"{work}/{task}/kmer.json", "w") as fh:
        json.dump({"folds": folds, "pooled": pooled, "spread": spread(task, folds)}, fh, indent=2)
EOF_PY

echo "== 4/4 results"
mkdir -p "$(dirname "$RESULTS")"
"$PYTHON" - "$WORK" "$PRESET" "$NPROC" "$((end - start))" "$RESULTS" "${EXTRA[*]:-}" <<'EOF_PY'
import json, os, platform, sys, time
work, preset, nproc, wall, results, extra = sys.argv[1:]

def rows(path):
    lines = open(path).read().splitlines()
    head = lines[0].split("\t")
    return {l.split("\t")[0]: dict(zip(head, l.split("\t"))) for l in lines[1:]}

def history(task, i):
    return [json.loads(l) for l in open(f"{work}/{task}/runs/fold-{i}/metrics.jsonl")]

out = ["# Cross-validation on Arabidopsis chr1: 5 position-block folds, BasenjiModel vs k-mer ridge", "",
       f"Written by `benchmarks/real_folds.sh` on {time.strftime('%Y-%m-%d %H:%M')} ({platform.machine()}, "
       f"{os.cpu_count()} CPUs shared with other work, torchrun {nproc} CPU processes, OMP_NUM_THREADS=1). "
       f"CNN: `{preset}`" + (f" with `{extra}`" if extra else "") + f"; wall time of both cross-validations "
       f"{int(wall) / 60:.0f} min.", ""]
if extra:
    out += [f"**Shortened run: trainer flags `{extra}` override the preset (20 epochs). These are not the "
            "preset's figures; the full run (`benchmarks/real_folds.sh` without flags, about an hour on 2 "
            "cores) is still to be done.**", ""]
out += ["Folds: one chromosome, so `convert.genome_to_npz --folds 5` cuts it into 5 contiguous position "
        "blocks; fold I tests block I, validates on block I+1 (mod 5) and trains on the other three; genes "
        "whose window overlaps another block's are dropped (the same genes in every fold), so each kept gene "
        "is tested exactly once. **Pooled** = the metric recomputed on all 5 folds' test predictions "
        "concatenated (`maize_ddp.cv_report`), not an average; mean ± sd over the folds beside it. "
        "Baseline: 4-mer frequencies of the TSS and TTS halves (512 features), ridge with alpha chosen on "
        "each fold's val split (val Pearson; val auROC of the ridge score for classification).", ""]
for task, cols in (("regression", ("pearson", "spearman", "r2")), ("classification", ("accuracy", "auroc"))):
    cnn = rows(f"{work}/{task}/runs/cv_metrics.tsv")
    kmer = json.load(open(f"{work}/{task}/kmer.json"))
    folds = json.load(open(f"{work}/{task}/folds/folds.json"))
    n = cnn["pooled"]["n"]
    if task == "regression":
        out += ["## Regression: log10(mean leaf TPM + 1)", "",
                f"{n} genes tested (each once); per fold about 3/5 train, 1/5 val, 1/5 test.", ""]
    else:
        rule = folds["settings"]["classes"]
        out += ["## Classification: high vs low (DeepCRE's rule)", "",
                f"Top quartile of `logMaxTPM` (≥ {rule['high_threshold']:.3f}) = 1, bottom quartile "
                f"(≤ {rule['low_threshold']:.3f}) = 0, middle half left out; thresholds over all "
                f"{rule['high'] + rule['low'] + rule['middle_dropped']} genes. {n} genes tested; "
                f"{cnn['pooled']['positives']} of them high. Accuracy: probability ≥ 0.5.", ""]
    out += ["| model | " + " | ".join(f"pooled {c}" for c in cols) + " | " +
            " | ".join(f"{c} mean ± sd over folds" for c in cols) + " |", "|---" * (1 + 2 * len(cols)) + "|"]
    k_mean, k_sd = kmer["spread"]
    out.append("| 4-mer ridge (TSS + TTS halves) | " + " | ".join(f"{kmer['pooled'][c]:.3f}" for c in cols) + " | "
               + " | ".join(f"{k_mean[c]:.3f} ± {k_sd[c]:.3f}" for c in cols) + " |")
    out.append(f"| BasenjiModel, `{preset}` | " + " | ".join(f"**{float(cnn['pooled'][c]):.3f}**" for c in cols)
               + " | " + " | ".join(f"{float(cnn['mean of folds'][c]):.3f} ± {float(cnn['sd over folds'][c]):.3f}"
                                    for c in cols) + " |")
    out += ["", "Per fold (test):", "", "| fold | n | " + " | ".join(f"CNN {c}" for c in cols) + " | " +
            " | ".join(f"k-mer {c}" for c in cols) + " | CNN best epoch |", "|---" * (3 + 2 * len(cols)) + "|"]
    for i, k in enumerate(kmer["folds"]):
        c = cnn[f"fold-{i}"]
        h = history(task, i)
        key = "val_auroc" if task == "classification" else "val_pearson"
        best = max(range(len(h)), key=lambda j: h[j][key]) + 1
        out.append(f"| {i} | {c['n']} | " + " | ".join(f"{float(c[x]):.3f}" for x in cols) + " | "
                   + " | ".join(f"{k[x]:.3f}" for x in cols) + f" | {best}/{len(h)} |")
    out.append("")
text = "\n".join(out)
print(text)
if results != "/dev/null":
    open(results + ".tmp", "w").write(text)
    os.replace(results + ".tmp", results)
    print(f"-> {results}")
EOF_PY
