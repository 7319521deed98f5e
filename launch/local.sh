#!/bin/bash
# Train on this machine with torchrun --standalone: one process per GPU, or CPU processes (gloo)
# where there is no GPU.
#
#   launch/local.sh --data DATASET.zarr --out runs/try1 [trainer flags ...]
#   NPROC_PER_NODE=1 launch/local.sh --data ...       # choose the number of processes
#
# Every argument goes to `python -m maize_ddp.train` unchanged (its flags: python -m maize_ddp.train
# --help). Environment knobs:
#   NPROC_PER_NODE=N      processes (default: the GPUs launch/gpus.sh counts; 2 CPU processes without GPUs)
#   VENV=/path/to/venv    activate this virtualenv first
#   MAIZE_DDP_PYTHON=...  use this interpreter (default: the project's .venv if present, else python3)
#   MAX_RESTARTS=N        torchrun restarts after a failure (default 0)
#   DRY_RUN=1             print the torchrun command instead of running it
set -euo pipefail

case "${1:-}" in -h | --help)  # this script's own settings: the comment block above
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
    exit 0 ;;
esac

die() { echo "error: $*" >&2; exit 2; }

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -n "${VENV:-}" ]; then
    [ -f "$VENV/bin/activate" ] || die "VENV=$VENV has no bin/activate"
    # shellcheck disable=SC1091
    source "$VENV/bin/activate"
fi
if [ -n "${MAIZE_DDP_PYTHON:-}" ]; then PY=$MAIZE_DDP_PYTHON
elif [ -z "${VENV:-}" ] && [ -x "$root/.venv/bin/python" ]; then PY=$root/.venv/bin/python
else PY=$(command -v python3 || command -v python || true); fi
{ [ -n "$PY" ] && [ -x "$PY" ]; } || die "no python found; set VENV=/path/to/venv or MAIZE_DDP_PYTHON=/path/to/python"
[ $# -gt 0 ] || die "usage: launch/local.sh --data STORE --out RUN_DIR [trainer flags]  (python -m maize_ddp.train --help lists them)"

# shellcheck source=launch/gpus.sh
source "$root/launch/gpus.sh"
gpus=$(count_gpus "$PY")
if [ -n "${NPROC_PER_NODE:-}" ]; then nproc=$NPROC_PER_NODE
elif [ "$gpus" -gt 0 ]; then nproc=$gpus
else nproc=2; fi
case "$nproc" in '' | *[!0-9]* | 0) die "NPROC_PER_NODE must be a positive integer, got '$nproc'" ;; esac
cores=$(nproc 2>/dev/null || echo 1)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(( cores / nproc > 0 ? cores / nproc : 1 ))}
# torchrun shares its rendezvous TCP store with the workers by default; after a restart the
# workers can read the previous round's addresses and fail to connect (pytorch/pytorch#135712).
export TORCH_DISABLE_SHARE_RDZV_TCP_STORE=${TORCH_DISABLE_SHARE_RDZV_TCP_STORE:-1}

cmd=("$PY" -m torch.distributed.run --standalone --nnodes=1 --nproc-per-node="$nproc"
     --max-restarts="${MAX_RESTARTS:-0}" -m maize_ddp.train "$@")
echo "[launch] local: ${nproc} process(es), ${gpus} GPU(s), OMP_NUM_THREADS=${OMP_NUM_THREADS}"
if [ -n "${DRY_RUN:-}" ]; then
    printf '%q ' "${cmd[@]}"; echo
    exit 0
fi
# The trainer checks its arguments, store and run folder once, before torchrun starts: a mistake
# is its one 'error:' line, not the same line from every rank under torchrun's failure report.
"$PY" -m maize_ddp.train --check "$@" > /dev/null || exit 2
exec "${cmd[@]}"
