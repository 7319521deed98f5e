"""launch/slurm/*.sbatch on a real SLURM: a two-node cluster on loopback (tests/slurm_cluster.py).

The cluster starts once per session where the SLURM and munge binaries exist and we are root
(`bash .ci/install_slurm.sh` installs them); elsewhere these tests skip and say why. Jobs run the
project's python (MAIZE_DDP_PYTHON, default: the one running pytest) on a tiny synthetic store;
every wait has a time-out, and a failure prints the job record and its whole log.

Both nodes are this host, so a 2-node x 2-process job is world size 4 on 2 cores: training is
kept tiny (200 bp, 256 rows, batch 16, 1-2 epochs, OMP_NUM_THREADS=1).
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from slurm_cluster import SlurmCluster, make_tiny_store, unavailable_reason  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "launch" / "slurm" / "train.sbatch"
CONVERT = ROOT / "launch" / "slurm" / "convert.sbatch"
CV = ROOT / "launch" / "slurm" / "cv.sbatch"
PY = os.environ.get("MAIZE_DDP_PYTHON", sys.executable)
JOB_TIMEOUT = float(os.environ.get("MAIZE_SLURM_JOB_TIMEOUT", "300"))  # seconds per training job
REPORT = ("test_metrics.json", "test_predictions.tsv", "scatter.png", "curves.png", "metrics.jsonl", "config.json")
TINY = ["--batch-size", "16", "--num-workers", "0"]
RANK_LINE = re.compile(r"\[maize_ddp\] rank (\d+)/(\d+) local_rank (\d+) host \S+ device (\S+) backend (\S+)", re.M)


# ---- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def slurm():
    """A running two-node SLURM cluster (node1, node2; 2 CPUs each), stopped at the end."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    # Not under pytest's tmp folder: munged (user munge) must be able to traverse every parent.
    root = Path(tempfile.mkdtemp(prefix="maize-slurm-"))
    cluster = SlurmCluster(root, nodes=2, cpus=2)
    try:
        cluster.start(timeout=90)
    except Exception as e:  # noqa: BLE001 - stop what started, then report why
        cluster.stop()
        pytest.fail(f"could not start the test SLURM cluster in {root}: {e}", pytrace=False)
    yield cluster
    cluster.stop()
    if not os.environ.get("MAIZE_SLURM_KEEP"):
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def store(tmp_path_factory):
    for module in ("convert.synth", "convert.npz_to_zarr"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not available")
    return make_tiny_store(tmp_path_factory.mktemp("store"), PY)


@pytest.fixture
def work(tmp_path):
    (tmp_path / "logs").mkdir()
    return tmp_path


def job_env(**extra) -> dict:
    env = {"MAIZE_DDP_PYTHON": PY, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def submit(cluster: SlurmCluster, work: Path, script: Path, args: list[str], *, name: str, nodes: int = 1,
           cpus: int = 1, env: dict | None = None) -> int:
    sbatch_opts = [f"--job-name={name}", f"--nodes={nodes}", f"--cpus-per-task={cpus}", "--time=15",
                   f"--output={work}/logs/%x-%j.out", f"--chdir={work}"]
    if script == TRAIN:
        sbatch_opts.append("--gpus-per-node=0")  # the script's default asks for GPUs; this cluster has none
    return cluster.sbatch(*sbatch_opts, str(script), *map(str, args), env=env or job_env(), cwd=work)


def finish(cluster: SlurmCluster, job: int, expect: str = "COMPLETED", timeout: float = JOB_TIMEOUT) -> str:
    """Wait for the job to end; assert its final state; return its log."""
    t0 = time.monotonic()
    state = cluster.wait(job, timeout)
    log = cluster.log(job)
    assert state == expect, f"job {job} ended {state}, expected {expect}\n{cluster.describe(job)}"
    print(f"job {job} {state} in {time.monotonic() - t0:.0f}s (RunTime {cluster.job(job).get('RunTime')})")
    return log


def ranks_in(log: str) -> list[tuple[int, int]]:
    return sorted((int(m.group(1)), int(m.group(2))) for m in RANK_LINE.finditer(log))


# ---- training ----------------------------------------------------------------------------------
@pytest.mark.slurm
def test_train_two_nodes_four_gloo_ranks(slurm, store, work):
    """2 nodes x 2 CPU processes: one torchrun per node, c10d rendezvous on node1, world size 4;
    no --out, so the run folder is RUNS_DIR/JOBNAME-JOBID; the test report lands there."""
    job = submit(slurm, work, TRAIN, ["--data", store, "--epochs", "2", *TINY], name="t-train", nodes=2, cpus=2,
                 env=job_env(NPROC_PER_NODE=2, RUNS_DIR=work / "runs"))
    log = finish(slurm, job)
    context = f"\n--- job log ---\n{log}"
    assert ranks_in(log) == [(r, 4) for r in range(4)], "expected ranks 0-3 of 4" + context
    assert set(re.findall(r"device (\S+) backend (\S+)", log)) == {("cpu", "gloo")}, context
    port = 20000 + job % 10000
    assert f"rendezvous host node1 (127.0.0.1) port {port}" in log, context
    for node, rank in (("node1", 0), ("node2", 1)):
        assert f"[launch] node {node} " in log and f"node_rank {rank}: 2 process(es), 0 GPU(s)" in log, context
    run = work / "runs" / f"t-train-{job}"
    missing = [f for f in REPORT if not (run / f).is_file()]
    assert not missing, f"{run} lacks {missing}" + context
    metrics = json.loads((run / "test_metrics.json").read_text())
    assert metrics["n"] == 64, metrics
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2


RESUMED = re.compile(r"resumed from \S+last\.pt at epoch (\d+) batch (\d+) \(step (\d+)\)")


@pytest.mark.slurm
def test_requeued_and_resubmitted_jobs_resume_from_their_checkpoint(slurm, store, work):
    """One run, three lives (a single story, to pay for fewer start-ups on a 2-core machine):
    1. `scontrol requeue` after the first checkpoint (what preemption or a node failure does): the
       job keeps its id, hence its default run folder, and the trainer resumes there by itself;
    2. scancel it; a new job on the same folder without --resume is refused before anything starts;
    3. a new job with the same --out and --resume continues from the checkpoint and finishes."""
    epochs = 8
    args = ["--data", store, "--epochs", str(epochs), "--checkpoint-every", "2", *TINY]
    env = job_env(NPROC_PER_NODE=1, RUNS_DIR=work / "runs")
    job = submit(slurm, work, TRAIN, args, name="t-resume", nodes=2, cpus=1, env=env)
    run = work / "runs" / f"t-resume-{job}"
    last = run / "checkpoints" / "last.pt"

    state = slurm.wait(job, JOB_TIMEOUT, states={"__never__"}, until=last.exists)
    assert state == "RUNNING", f"job {job} should still run after its first checkpoint\n{slurm.describe(job)}"
    slurm.run("scontrol", "requeue", str(job))
    slurm.wait(job, JOB_TIMEOUT, states={"__never__"},
               until=lambda: RESUMED.search(slurm.log(job)) is not None)
    log = slurm.log(job)
    assert "requeue count 1" in log, f"step 1: the requeued job should say so\n{log}"
    assert int(RESUMED.search(log).group(3)) >= 2, f"step 1: resumed from the wrong step\n{log}"

    slurm.scancel(job)
    state = slurm.wait(job, 60)
    assert state == "CANCELLED", f"step 2: job {job} should have been cancelled mid-run\n{slurm.describe(job)}"

    same_run = [*args, "--out", run]
    refused = submit(slurm, work, TRAIN, same_run, name="t-refuse", env=env)
    log = finish(slurm, refused, expect="FAILED", timeout=120)
    assert "already holds a run" in log and "pass --resume" in log, f"step 2\n{log}"
    assert not ranks_in(log), f"step 2: nothing should start when the run folder is refused\n{log}"

    again = submit(slurm, work, TRAIN, [*same_run, "--resume"], name="t-resubmit", nodes=2, cpus=1, env=env)
    log = finish(slurm, again)
    m = RESUMED.search(log)
    assert m and int(m.group(3)) >= 2, f"step 3: job {again} did not resume from the checkpoint\n{log}"
    assert ranks_in(log) == [(0, 2), (1, 2)], log
    missing = [f for f in REPORT if not (run / f).is_file()]
    assert not missing, f"step 3: {run} lacks {missing}\n{log}"
    assert len((run / "metrics.jsonl").read_text().splitlines()) == epochs


# ---- converting --------------------------------------------------------------------------------
@pytest.mark.slurm
@pytest.mark.parametrize("fmt", ["zarr", "wds"])
def test_convert_job(slurm, store, work, fmt):
    module = "convert.npz_to_zarr" if fmt == "zarr" else "convert.npz_to_wds"
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not available")
    src, dst = store.parent / "npz", work / f"out.{fmt}"
    job = submit(slurm, work, CONVERT, [src, dst, "--quiet"], name=f"t-convert-{fmt}", cpus=2)
    log = finish(slurm, job, timeout=180)
    assert f"{module} {src} -> {dst} --quiet --workers 2" in log, log
    from maize_ddp.data import open_store

    s = open_store(dst)
    assert (s.seq_len, s.num_targets) == (200, 1)
    assert {k: s.splits[k].n for k in ("train", "val", "test")} == {"train": 256, "val": 64, "test": 64}


# ---- cross-validation: one array task per fold -------------------------------------------------
@pytest.mark.slurm
def test_cv_array_job_trains_each_fold_and_reports(slurm, work):
    """sbatch --array=0-2 cv.sbatch: each task converts and trains its fold through launch/local.sh
    (torchrun, one process); the report is written once every fold is finished."""
    from test_cv import TINY as CV_TINY, make_folds

    folds, runs = make_folds(work, folds=3, genes=60), work / "runs"
    job = slurm.sbatch("--job-name=t-cv", "--array=0-2", "--nodes=1", "--cpus-per-task=1", "--time=15",
                       "--gpus-per-node=0", f"--output={work}/logs/%x-%A_%a.out", f"--chdir={work}", str(CV),
                       str(folds), str(runs), *CV_TINY, env=job_env(NPROC_PER_NODE=1), cwd=work)
    logs = ""
    for task in (0, 1, 2):
        logs += finish(slurm, f"{job}_{task}")
    for fold in ("fold-0", "fold-1", "fold-2"):
        assert (runs / fold / "test_metrics.json").is_file(), logs
        assert f"[cv] {fold}: training" in logs, logs
    assert ranks_in(logs) == [(0, 1)] * 3, logs
    assert (runs / "cv_metrics.tsv").is_file(), logs


def test_cv_script_outside_slurm_says_how_to_submit(tmp_path):
    res = subprocess.run(["bash", str(CV), str(tmp_path), str(tmp_path / "runs")], cwd=tmp_path,
                         env=_bare_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert res.returncode == 2, res
    assert "error: not inside a SLURM array job: submit with 'sbatch --array=0-<K-1> launch/slurm/cv.sbatch" in res.stderr


# ---- failing early and clearly -------------------------------------------------------------------
BAD = {
    "unknown flag": (["--bogus-flag", "1"], {}, "error: unrecognized arguments: --bogus-flag"),
    "bad value": (["--epochs", "0"], {}, "error: --epochs must be at least 1"),
    "missing store": (["--data", "missing.zarr"], {}, "error: missing.zarr: no such file or directory"),
    # the trainer's own rule: any run file without last.pt is another run (here: old/checkpoints/best.pt)
    "run folder": (["--out", "old"], {}, "error: old already holds a run (checkpoints/best.pt) but no "
                                         "checkpoints/last.pt to resume from; choose another --out"),
    "rendezvous host": ([], {"RDZV_HOST": "no-such-host.invalid"},
                        "error: rendezvous host 'no-such-host.invalid' (first node node"),
}


@pytest.mark.slurm
def test_bad_input_fails_the_job_with_a_readable_error(slurm, store, work):
    """The batch script asks the trainer (--check) before any node starts; its error line ends the log."""
    import torch

    (work / "old" / "checkpoints").mkdir(parents=True)
    torch.save({"model": {}, "config": {}, "launch_id": "1"}, work / "old" / "checkpoints" / "best.pt")
    jobs = {}
    for case, (extra, env, _) in BAD.items():
        args = ["--data", store, *TINY, *extra] if "--data" not in extra else [*extra, *TINY]
        jobs[case] = submit(slurm, work, TRAIN, args, name="t-bad", env=job_env(**env))
    for case, job in jobs.items():
        expected = BAD[case][2]
        log = finish(slurm, job, expect="FAILED", timeout=120)
        assert expected in log, f"{case}: expected {expected!r} in the log of job {job}\n{log}"
        assert log.rstrip().splitlines()[-1].startswith("error: "), f"{case}: the error should end the log\n{log}"
        assert slurm.job(job).get("ExitCode") == "2:0", f"{case}\n{slurm.describe(job)}"
        assert not ranks_in(log), f"{case}: no training process should have started\n{log}"


# ---- the scripts outside a job (no cluster needed) ----------------------------------------------
def _bare_env(tmp_path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_"))}
    env.update(MAIZE_DDP_PYTHON=PY, **{k: str(v) for k, v in extra.items()})
    return env


def test_train_script_outside_slurm_says_how_to_submit(tmp_path):
    res = subprocess.run(["bash", str(TRAIN), "--data", str(tmp_path)], cwd=tmp_path, env=_bare_env(tmp_path),
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2, res
    assert "error: not inside a SLURM job: submit with 'sbatch launch/slurm/train.sbatch" in res.stderr


def test_train_script_fails_fast_without_a_first_host(tmp_path):
    """A nodelist that scontrol cannot expand stops the job before any process starts."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("scontrol", "srun"):
        (bin_dir / tool).write_text("#!/bin/sh\nexit 1\n")
        (bin_dir / tool).chmod(0o755)
    env = _bare_env(tmp_path, SLURM_JOB_ID=42, SLURM_JOB_NODELIST="gpu[01-02]", SLURM_NNODES=2,
                    PATH=f"{bin_dir}:{os.environ['PATH']}")
    res = subprocess.run(["bash", str(TRAIN), "--data", str(tmp_path), "--out", str(tmp_path / "run")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res
    assert "error: cannot find the first host of SLURM_JOB_NODELIST='gpu[01-02]'" in res.stderr, res.stderr


def test_convert_script_names_the_format_it_needs(tmp_path):
    res = subprocess.run(["bash", str(CONVERT), str(tmp_path), str(tmp_path / "out.store")], cwd=tmp_path,
                         env=_bare_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert res.returncode == 2, res
    assert "error: cannot tell the store format from" in res.stderr and "FORMAT=zarr|wds" in res.stderr
