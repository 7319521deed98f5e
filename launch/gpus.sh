# count_gpus [PYTHON]: how many GPUs this node gives us, cheapest answer first. Sourced by
# launch/local.sh and by each node of launch/slurm/train.sbatch (one torchrun process per GPU).
#
#   SLURM_GPUS_ON_NODE > 0        what the SLURM job got on this node
#   CUDA_VISIBLE_DEVICES          "" or NoDevFiles: none; else one per listed device
#   nvidia-smi -L                 every GPU the driver shows
#   /dev/kfd (ROCm)               torch.cuda.device_count() with PYTHON (default python3)
count_gpus() {
    local n=0
    if [ "${SLURM_GPUS_ON_NODE:-0}" -gt 0 ] 2>/dev/null; then
        n=$SLURM_GPUS_ON_NODE
    elif [ "${CUDA_VISIBLE_DEVICES-unset}" = "" ] || [ "${CUDA_VISIBLE_DEVICES:-}" = NoDevFiles ]; then
        n=0
    elif [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then
        n=$(tr ',' '\n' <<<"$CUDA_VISIBLE_DEVICES" | grep -c . || true)
    elif command -v nvidia-smi >/dev/null; then
        n=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
    elif [ -e /dev/kfd ]; then
        n=$("${1:-python3}" -c 'import torch; print(torch.cuda.device_count())' 2>/dev/null || echo 0)
    fi
    echo "${n:-0}"
}
