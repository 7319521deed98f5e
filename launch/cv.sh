#!/bin/bash
# Cross-validation on this machine: train every fold of a genome_to_npz --folds folder, then
# report per-fold and pooled test metrics (guide: docs/evaluation.md).
#
#   launch/cv.sh FOLDS_DIR RUNS_DIR [trainer flags ...]
#   launch/cv.sh data/folds runs/cv --config presets/gene_level.toml --task classification
#
# For each FOLDS_DIR/fold-I (listed in FOLDS_DIR/folds.json): convert it to
# RUNS_DIR/stores/fold-I.zarr unless that store is there and newer than the fold; skip the fold if
# RUNS_DIR/fold-I/test_metrics.json exists (finished); resume it (--resume) if it has a
# checkpoints/last.pt; else train it afresh with $LAUNCHER (default launch/local.sh: torchrun on
# the GPUs, or 2 CPU processes). Run it again after any interruption: it goes on fold by fold.
# RUNS_DIR/cv_settings.txt records the folds and flags of the first start; a start with others is
# refused, and RUNS_DIR may not be, hold or lie inside FOLDS_DIR.
# When every fold is finished: python -m maize_ddp.cv_report RUNS_DIR/fold-* --out RUNS_DIR.
#
# Environment knobs:
#   FOLD=I                 this fold only (what launch/slurm/cv.sbatch's array tasks set)
#   LAUNCHER=script        the per-fold trainer launcher, given --data STORE --out RUN [flags]
#   MAIZE_DDP_PYTHON=...   interpreter for the converter and the report (default: .venv, else python3);
#   NPROC_PER_NODE, VENV, MAX_RESTARTS ... are launch/local.sh's.
set -euo pipefail

case "${1:-}" in -h | --help)  # this script's own settings: the comment block above
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
    exit 0 ;;
esac

die() { echo "error: $*" >&2; exit 2; }
log() { echo "[cv] $*"; }

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -n "${MAIZE_DDP_PYTHON:-}" ]; then PY=$MAIZE_DDP_PYTHON
elif [ -x "$root/.venv/bin/python" ]; then PY=$root/.venv/bin/python
else PY=$(command -v python3 || command -v python || true); fi
{ [ -n "$PY" ] && [ -x "$PY" ]; } || die "no python found; set MAIZE_DDP_PYTHON=/path/to/python"
export MAIZE_DDP_PYTHON=$PY
[ $# -ge 2 ] || die "usage: launch/cv.sh FOLDS_DIR RUNS_DIR [trainer flags]  (FOLDS_DIR: python -m convert.genome_to_npz --folds K --out FOLDS_DIR)"
folds_dir=$1 runs_dir=$2
shift 2
LAUNCHER=${LAUNCHER:-$root/launch/local.sh}
for arg in "$@"; do  # each fold has its own store and run folder: a flag naming one would merge the folds
    case "$arg" in --data | --data=* | --out | --out=* | --default-out | --default-out=*)
        die "$arg: cv.sh chooses each fold's --data (RUNS_DIR/stores/fold-I.zarr) and --out (RUNS_DIR/fold-I); drop it" ;;
    esac
done
[ -f "$folds_dir/folds.json" ] || die "$folds_dir/folds.json: not found (make the folds with python -m convert.genome_to_npz --folds K --out $folds_dir)"
# each fold's folder is a plain name inside FOLDS_DIR: a crafted "../x" would train and write elsewhere
listing=$("$PY" - "$folds_dir/folds.json" 2>&1 <<'PY'
import json, re, sys
try:
    folds = [f["folder"] for f in json.load(open(sys.argv[1], encoding="utf-8"))["fold_list"]]
except (OSError, ValueError, KeyError, TypeError) as e:
    sys.exit(f"not a genome_to_npz folds description ({type(e).__name__}: {e})")
bad = [f for f in folds if not isinstance(f, str) or not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*", f)]
if bad:
    sys.exit(f"fold folder {bad[0]!r} is not a plain folder name inside the folds folder")
print(*folds, sep="\n")
PY
) || die "$folds_dir/folds.json: $listing"
[ -n "$listing" ] || die "$folds_dir/folds.json: lists no fold"
mapfile -t folds <<< "$listing"

# the runs never share a folder with the folds: genome_to_npz --folds --overwrite would meet them
folds_real=$(realpath -m -- "$folds_dir") runs_real=$(realpath -m -- "$runs_dir")
case "$runs_real/" in "$folds_real/"*) die "$runs_dir: the runs folder is or lies inside the folds folder $folds_dir; choose another RUNS_DIR" ;; esac
case "$folds_real/" in "$runs_real/"*) die "$runs_dir: the runs folder holds the folds folder $folds_dir; choose another RUNS_DIR" ;; esac

# Every fold of a cross-validation is trained alike: the folds and trainer flags are recorded in
# RUNS_DIR/cv_settings.txt by the first start, and a later start with others is refused (its folds
# would be skipped as finished, or resumed, under settings they were not trained with).
mkdir -p "$runs_dir"
settings="folds $folds_real
flags$(printf ' %q' "$@")"
tmp_settings="$runs_dir/.cv_settings.txt.tmp-$$"
printf '%s\n' "$settings" > "$tmp_settings"
ln "$tmp_settings" "$runs_dir/cv_settings.txt" 2>/dev/null || true  # the first start's, atomically
rm -f "$tmp_settings"
if [ "$(cat "$runs_dir/cv_settings.txt")" != "$settings" ]; then
    die "$runs_dir: its folds were started with other settings ($(tr '\n' ';' < "$runs_dir/cv_settings.txt" | sed 's/;$//')); this start has ($(printf '%s' "$settings" | tr '\n' ';')); run it with those, or choose another RUNS_DIR"
fi

if [ -n "${FOLD:-}" ]; then
    case "$FOLD" in '' | *[!0-9]*) die "FOLD must be a fold number, got '$FOLD'" ;; esac
    [ "$FOLD" -lt "${#folds[@]}" ] || die "FOLD=$FOLD: $folds_dir has ${#folds[@]} folds (0-$(( ${#folds[@]} - 1 )))"
    todo=("${folds[$FOLD]}")
else
    todo=("${folds[@]}")
fi

run_fold() {
    local name=$1 store="$runs_dir/stores/$1.zarr" run="$runs_dir/$1"
    shift  # the rest: trainer flags
    [ -d "$folds_dir/$name" ] || die "$folds_dir/$name: fold folder not found"
    if [ -f "$run/test_metrics.json" ]; then
        log "$name: finished ($run/test_metrics.json); skipped"
        return
    fi
    # a store older than its fold was made from earlier folds: convert again (npz_to_zarr writes atomically)
    if [ ! -f "$store/zarr.json" ] || [ "$folds_dir/$name/summary.json" -nt "$store/zarr.json" ]; then
        log "$name: converting to $store"
        mkdir -p "$runs_dir/stores"
        "$PY" -m convert.npz_to_zarr "$folds_dir/$name" "$store" --overwrite --quiet
    fi
    local resume=()
    if [ -f "$run/checkpoints/last.pt" ]; then
        resume=(--resume)
        log "$name: resuming $run"
    else
        log "$name: training $run"
    fi
    "$LAUNCHER" --data "$store" --out "$run" "$@" "${resume[@]}" ||
        die "$name: training failed (exit $?); run the same command again to resume it"
}

for name in "${todo[@]}"; do
    run_fold "$name" "$@"
done

runs=()
for name in "${folds[@]}"; do
    [ -f "$runs_dir/$name/test_metrics.json" ] && runs+=("$runs_dir/$name")
done
if [ "${#runs[@]}" -eq "${#folds[@]}" ]; then
    "$PY" -m maize_ddp.cv_report "${runs[@]}" --out "$runs_dir"
else
    log "${#runs[@]} of ${#folds[@]} folds finished; the report waits for the rest"
fi
