"""Test tiers. Modules that start real processes end to end (torchrun ranks, trainers, SLURM jobs,
converters killed midway) are marked `e2e`: `make test` runs everything, `make test-fast` the rest
(the inner loop, under 90 s on 2 cores)."""
import pytest

E2E_MODULES = {
    "test_classification", "test_cli", "test_convert_errors", "test_convert_workers", "test_cv", "test_data_ddp",
    "test_faults_train", "test_gpu_check", "test_gpu_guard", "test_interpret", "test_launch_local",
    "test_predict_tables", "test_run_api", "test_slurm", "test_train", "test_train_step", "test_variants",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.module.__name__.rpartition(".")[2] in E2E_MODULES:
            item.add_marker(pytest.mark.e2e)
