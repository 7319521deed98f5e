"""Test tiers. Modules that start real processes end to end (torchrun ranks, trainers, SLURM jobs,
converters killed midway) are marked `e2e`: `make test` runs everything, `make test-fast` the rest
(the inner loop, under 90 s on 2 cores)."""
import os

import pytest

# Two pytest workers share the cores, and many tests start processes beside them: a torch (or BLAS,
# or numba) pool of one thread per core in each would spin waiting on threads the others hold (an
# in-process ISM test took 6x its idle time under `make test`). Set before any test imports torch;
# the subprocesses the tests start inherit it, as most already asked for.
os.environ.setdefault("OMP_NUM_THREADS", "1")

# Slowest first (seconds in `make test`, measured): the modules go out to the two workers in this
# order (Makefile: --no-loadscope-reorder), so the long ones start early and the short ones fill in
# at the end, and both workers finish together.
E2E_MODULES = (
    "test_train_step", "test_train", "test_slurm", "test_gpu_check", "test_faults_train", "test_interpret",  # > 30 s
    "test_cv", "test_launch_local", "test_cli", "test_run_api", "test_variants", "test_classification",
    "test_convert_workers", "test_predict_tables", "test_convert_errors", "test_gpu_guard", "test_data_ddp",
)


def module_name(item) -> str:
    return item.module.__name__.rpartition(".")[2]


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(E2E_MODULES)}
    items.sort(key=lambda item: rank.get(module_name(item), len(rank)))  # stable: test order within a module kept
    for item in items:
        if module_name(item) in rank:
            item.add_marker(pytest.mark.e2e)
