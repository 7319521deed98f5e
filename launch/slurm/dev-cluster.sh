#!/bin/bash
# A throwaway two-node SLURM cluster on this machine (loopback), to try the sbatch scripts:
#
#   sudo bash .ci/install_slurm.sh              # once: Debian's slurmctld slurmd slurm-client munge
#   sudo launch/slurm/dev-cluster.sh up         # prints: export SLURM_CONF=...
#   export SLURM_CONF=/tmp/maize-slurm-dev/etc/slurm.conf
#   sbatch --nodes=2 --gpus-per-node=0 --cpus-per-task=2 launch/slurm/train.sbatch --data ... --out ...
#   sudo launch/slurm/dev-cluster.sh down
#
# Commands: up | down | status. Options: --dir DIR (default $MAIZE_SLURM_DIR or /tmp/maize-slurm-dev),
# --nodes N (2), --cpus C (CPUs per node, 2). Everything (config, munge socket and key, state, logs)
# stays in DIR; daemons are stopped by the PIDs recorded there. Needs root. The work is done by
# tests/slurm_cluster.py, the same code the SLURM tests use.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PY=${MAIZE_DDP_PYTHON:-$(command -v python3 || true)}
[ -n "$PY" ] || { echo "error: python3 not found (set MAIZE_DDP_PYTHON)" >&2; exit 2; }
[ $# -ge 1 ] || { echo "usage: $0 up|down|status [--dir DIR] [--nodes N] [--cpus C]" >&2; exit 2; }
exec "$PY" "$root/tests/slurm_cluster.py" "$@"
