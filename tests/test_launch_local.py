"""launch/local.sh: torchrun --standalone on this machine (GPUs counted, else CPU processes)."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from slurm_cluster import make_tiny_store  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LOCAL = ROOT / "launch" / "local.sh"
PY = os.environ.get("MAIZE_DDP_PYTHON", sys.executable)


def run_local(args, tmp_path, timeout=60, **env):
    full = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "NPROC_PER_NODE", "DRY_RUN"))}
    full.update(MAIZE_DDP_PYTHON=PY, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    full.update({k: str(v) for k, v in env.items()})
    return subprocess.run(["bash", str(LOCAL), *map(str, args)], cwd=tmp_path, env=full,
                          capture_output=True, text=True, timeout=timeout)


def test_cpu_default_is_two_gloo_processes(tmp_path):
    res = run_local(["--data", "my store.zarr", "--out", "runs/a b", "--epochs", "1"], tmp_path, DRY_RUN=1)
    assert res.returncode == 0, res.stderr
    assert "[launch] local: 2 process(es), 0 GPU(s)" in res.stdout
    cmd = res.stdout.splitlines()[-1]
    assert "-m torch.distributed.run --standalone --nnodes=1 --nproc-per-node=2 --max-restarts=0 -m maize_ddp.train" in cmd
    # arguments reach the trainer unchanged, spaces included
    assert cmd.rstrip().endswith(r"--data my\ store.zarr --out runs/a\ b --epochs 1"), cmd


def test_nproc_override_and_restarts(tmp_path):
    res = run_local(["--data", "x"], tmp_path, DRY_RUN=1, NPROC_PER_NODE=3, MAX_RESTARTS=2)
    assert res.returncode == 0, res.stderr
    assert "--nproc-per-node=3 --max-restarts=2" in res.stdout


@pytest.mark.parametrize("env,expected", [
    ({"SLURM_GPUS_ON_NODE": "3", "CUDA_VISIBLE_DEVICES": "0"}, 3),  # what the SLURM job got
    ({"SLURM_GPUS_ON_NODE": "0", "CUDA_VISIBLE_DEVICES": "0,2"}, 2),
    ({"CUDA_VISIBLE_DEVICES": "GPU-6f1a,GPU-77b0,GPU-9c3e"}, 3),
    ({"CUDA_VISIBLE_DEVICES": ""}, 0),
    ({"CUDA_VISIBLE_DEVICES": "NoDevFiles"}, 0),
])
def test_one_helper_counts_gpus_for_both_launchers(env, expected):
    """launch/gpus.sh, sourced by local.sh and by each node of train.sbatch."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "CUDA_VISIBLE_DEVICES"))}
    res = subprocess.run(["bash", "-c", f"source {ROOT / 'launch' / 'gpus.sh'} && count_gpus"],
                         env={**full, **env}, capture_output=True, text=True, timeout=30)
    assert (res.returncode, res.stdout) == (0, f"{expected}\n"), res
    for script in (LOCAL, ROOT / "launch" / "slurm" / "train.sbatch"):
        text = script.read_text()
        assert "gpus.sh" in text and "count_gpus() {" not in text, f"{script} counts GPUs itself"


@pytest.mark.parametrize("args,env,message", [
    ([], {}, "error: usage: launch/local.sh --data STORE --out RUN_DIR"),
    (["--data", "x"], {"NPROC_PER_NODE": "two"}, "error: NPROC_PER_NODE must be a positive integer, got 'two'"),
    (["--data", "x"], {"VENV": "/nonexistent/venv"}, "error: VENV=/nonexistent/venv has no bin/activate"),
])
def test_bad_launcher_input(tmp_path, args, env, message):
    res = run_local(args, tmp_path, DRY_RUN=1, **env)
    assert res.returncode == 2, res
    assert message in res.stderr


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    for module in ("convert.synth", "convert.npz_to_zarr", "maize_ddp.train"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not available")
    return make_tiny_store(tmp_path_factory.mktemp("store"), PY)


def test_local_run_trains_two_processes(store, tmp_path):
    out = tmp_path / "run"
    res = run_local(["--data", store, "--out", out, "--epochs", "1", "--batch-size", "16", "--num-workers", "0"],
                    tmp_path, timeout=400, NPROC_PER_NODE=2)
    log = res.stdout + res.stderr
    assert res.returncode == 0, log
    ranks = sorted(re.findall(r"\[maize_ddp\] rank (\d+)/(\d+) .* device cpu backend gloo", log, re.M))
    assert ranks == [("0", "2"), ("1", "2")], log
    for name in ("test_metrics.json", "test_predictions.tsv", "scatter.png", "curves.png", "metrics.jsonl",
                 "config.json"):
        assert (out / name).is_file(), f"{out} lacks {name}\n{log}"
    assert json.loads((out / "test_metrics.json").read_text())["n"] == 64


def test_local_bad_trainer_argument_fails_readably(store, tmp_path):
    res = run_local(["--data", store, "--out", tmp_path / "run", "--bogus-flag"], tmp_path, timeout=300,
                    NPROC_PER_NODE=1)
    assert res.returncode != 0
    assert "error: unrecognized arguments: --bogus-flag" in res.stderr, res.stderr
    # said once, by the check before torchrun starts: no rank ran, no failure report
    assert res.stderr.count("error: ") == 1 and "ChildFailedError" not in res.stderr, res.stderr


@pytest.mark.parametrize("script, own", [("local.sh", ["NPROC_PER_NODE=N", "MAX_RESTARTS=N", "DRY_RUN=1"]),
                                         ("cv.sh", ["FOLDS_DIR RUNS_DIR", "FOLD=I", "LAUNCHER=script"])])
def test_launchers_help_shows_their_own_settings(tmp_path, script, own):
    for flag in ("--help", "-h"):
        res = subprocess.run(["bash", str(ROOT / "launch" / script), flag], cwd=tmp_path, capture_output=True,
                             text=True, timeout=60, env={**os.environ, "DRY_RUN": "1"})
        assert res.returncode == 0 and not res.stderr, res.stderr
        assert all(setting in res.stdout for setting in own), res.stdout
        assert "torch.distributed.run" not in res.stdout and "set -euo" not in res.stdout
