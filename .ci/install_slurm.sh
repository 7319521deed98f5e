#!/usr/bin/env bash
# Install a real SLURM (controller, node daemon, client tools) and munge from Debian's packages,
# so the SLURM tests can start a throwaway two-node cluster on loopback (tests/slurm_cluster.py).
# Idempotent: does nothing when the binaries are already there. Needs root (or sudo) and apt.
# Never fatal for CI: if it cannot install, it says so and the SLURM tests skip with a reason.
set -u

need=(slurmctld slurmd sbatch srun scontrol sinfo squeue scancel munged)
missing=()
for b in "${need[@]}"; do
    command -v "$b" >/dev/null 2>&1 || [ -x "/usr/sbin/$b" ] || missing+=("$b")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "install_slurm: SLURM and munge already installed"
    exit 0
fi
echo "install_slurm: missing ${missing[*]}; installing slurmctld slurmd slurm-client munge"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
        echo "install_slurm: not root and no sudo; SLURM tests will be skipped" >&2; exit 0
    fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_slurm: no apt-get on this machine; SLURM tests will be skipped" >&2
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
# The packages' postinst scripts try to start services; there is no init system in a container
# (and we do not want system-wide daemons), so forbid service starts during the install.
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null && $SUDO chmod +x "$policy" && made_policy=1
fi
rc=0
$SUDO apt-get update -qq || rc=$?
if [ $rc -eq 0 ]; then
    $SUDO apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge || rc=$?
fi
[ $made_policy -eq 1 ] && $SUDO rm -f "$policy"
if [ $rc -ne 0 ]; then
    echo "install_slurm: apt-get failed (rc=$rc); SLURM tests will be skipped" >&2
    exit 0
fi
# munged refuses to start without a key; the package usually makes one, make sure.
if [ ! -s /etc/munge/munge.key ]; then
    if command -v mungekey >/dev/null 2>&1; then $SUDO mungekey --create --force
    else $SUDO dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none; fi
    $SUDO chown munge:munge /etc/munge/munge.key && $SUDO chmod 400 /etc/munge/munge.key
fi
echo "install_slurm: installed $(dpkg-query -W -f='${Package} ${Version}  ' slurm-client slurmd slurmctld munge 2>/dev/null)"
