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

E2E_MODULES = {
    "test_classification", "test_cli", "test_convert_errors", "test_convert_workers", "test_cv", "test_data_ddp",
    "test_faults_train", "test_gpu_check", "test_gpu_guard", "test_interpret", "test_launch_local",
    "test_predict_tables", "test_run_api", "test_slurm", "test_train", "test_train_step", "test_variants",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.module.__name__.rpartition(".")[2] in E2E_MODULES:
            item.add_marker(pytest.mark.e2e)
