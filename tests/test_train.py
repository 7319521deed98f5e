"""The trainer with real torchrun processes (gloo on CPU), real stores on disk."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from _commands import in_process
from convert import synth

HERE = Path(__file__).parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}
SMALL = ["--epochs", "2", "--batch-size", "32", "--warmup-steps", "5"]
# the shared single-process run: checkpoints between epochs, log points off the epoch ends, and test
# predictions averaged with the reverse complement (what predict and evaluate must then repeat)
SINGLE = [*SMALL, "--checkpoint-every", "7", "--log-every", "5", "--rc-average"]


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    from convert import npz_to_wds, npz_to_zarr

    root = tmp_path_factory.mktemp("data")
    truth = synth.generate(root / "npz", train=2048, val=101, test=101, seq_len=200, shard_size=512, noise_sd=0.5)
    npz_to_zarr.convert(root / "npz", root / "data.zarr")
    npz_to_wds.convert(root / "npz", root / "data.wds", shard_samples=256)
    return {"zarr": root / "data.zarr", "wds": root / "data.wds", "truth": truth}


@pytest.fixture(scope="module")
def two_rank_run(stores, tmp_path_factory):
    """kind -> (the launch's CompletedProcess, its run folder): torchrun, 2 processes, 4 epochs,
    trained once for every test that reads such a run (a test that changes one copies it first)."""
    runs = {}

    def get(kind):
        if kind not in runs:
            out = tmp_path_factory.mktemp(f"two_rank_{kind}") / "run"
            workers = ["--num-workers", "1"] if kind == "wds" else []  # the worker path, at the cost of 6 spawns
            runs[kind] = torchrun(2, ["--data", stores[kind], "--out", out, "--epochs", "4", *workers]), out
        return runs[kind]
    return get


@pytest.fixture(scope="module")
def single_run(stores, tmp_path_factory):
    """One single-process run (SINGLE), read by several tests; a test that changes it copies it first."""
    out = tmp_path_factory.mktemp("single") / "run"
    res = train_single(["--data", stores["zarr"], "--out", out, *SINGLE])
    assert res.returncode == 0, res.stderr[-3000:]
    return out


def torchrun(nproc, args, max_restarts=0, **kw):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           f"--max-restarts={max_restarts}", "-m", "maize_ddp.train", *map(str, args)]
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300, **kw)


def train_single(args, **kw):
    return subprocess.run([sys.executable, "-m", "maize_ddp.train", *map(str, args)], env=ENV,
                          capture_output=True, text=True, timeout=300, **kw)


def read_predictions(path):
    """(rows, true, predicted) of a one-target predictions table; its id column is checked apart."""
    table = np.loadtxt(path, skiprows=1, ndmin=2, usecols=(1, 2, 3), delimiter="\t")
    return table[:, 0].astype(int), table[:, 1], table[:, 2]


def read_id_column(path):
    lines = Path(path).read_text().splitlines()
    assert lines[0].startswith("id\t")
    return [line.split("\t", 1)[0] for line in lines[1:]]


@pytest.mark.parametrize("kind", ["zarr", "wds"])
def test_two_process_run_end_to_end(stores, two_rank_run, kind):
    res, out = two_rank_run(kind)
    assert res.returncode == 0, res.stderr[-3000:]
    # a finished launch ends cleanly: once in 6 launches rank 1 used to abort after the report with
    # gloo threads alive (the cause: test_shutdown_joins_gloo_threads)
    assert "terminate called" not in res.stderr and not (out / "run.lock").exists()
    assert res.stdout.count("[maize_ddp] rank ") == 2
    assert res.stderr.count("warning: seq_len 200 leaves 2 position(s)") == 1  # once, by rank 0
    # stderr is a file here, as under SLURM: a few progress lines an epoch, not one a step
    assert res.stderr.count("epoch 1/4:") <= 4, res.stderr[-2000:]
    for name in ("config.json", "metrics.jsonl", "test_metrics.json", "test_predictions.tsv", "scatter.png",
                 "curves.png", "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (out / name).stat().st_size > 0, name
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    report = json.loads((out / "test_metrics.json").read_text())
    assert report["n"] == 101
    rows, y, pred = read_predictions(out / "test_predictions.tsv")
    assert list(rows) == list(range(101))
    from maize_ddp.data import open_store, read_ids

    assert read_id_column(out / "test_predictions.tsv") == read_ids(open_store(stores[kind]), "test").tolist()
    # learning happened: a good part of the way to the best achievable r on this small set
    assert report["pearson"] > 0.5 * stores["truth"]["ceiling_pearson"][0]


def test_reported_pearson_is_exact_over_uneven_ranks(stores, two_rank_run, tmp_path):
    """101 test rows on 2 ranks: the all-reduced moments equal scipy on the gathered predictions."""
    res, out = two_rank_run("zarr")
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads((out / "test_metrics.json").read_text())
    rows, y, pred = read_predictions(out / "test_predictions.tsv")
    assert report["pearson"] == pytest.approx(stats.pearsonr(y, pred)[0], rel=1e-9)
    assert report["spearman"] == pytest.approx(stats.spearmanr(y, pred)[0], rel=1e-9)
    # R² = 1 - SSE/SST: compare SSE/SST, since near R² = 0 the subtraction amplifies rounding
    assert 1 - report["r2"] == pytest.approx(((y - pred) ** 2).sum() / ((y - y.mean()) ** 2).sum(), rel=1e-9)
    assert report["mse"] == pytest.approx(((y - pred) ** 2).mean(), rel=1e-9)
    # the validation figure is computed by the same exact path; re-evaluating the best
    # checkpoint on val in one process must give the value the 2-rank run logged at its epoch
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    best = history[report["best_epoch"] - 1]
    ev = in_process("maize_ddp.evaluate", out, "--data", stores["zarr"], "--split", "val", "--out", tmp_path / "val")
    assert ev.returncode == 0, ev.stderr
    _, yv, pv = read_predictions(tmp_path / "val" / "val_predictions.tsv")
    assert best["val_pearson"] == pytest.approx(stats.pearsonr(yv, pv)[0], rel=1e-5)


def test_ddp_step_equals_single_process_double_batch(tmp_path):
    sys.path.insert(0, str(HERE))
    import ddp_step_check as check

    out = tmp_path / "ddp.pt"
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                          str(HERE / "ddp_step_check.py"), str(out), "8"], env=ENV, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    ddp_params = torch.load(out)
    model = check.make()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    check.step(model, *check.rows(16))
    moved = 0
    for name, value in model.state_dict().items():
        torch.testing.assert_close(ddp_params[name], value, rtol=1e-5, atol=1e-6, msg=name)
        moved += not torch.equal(value, before[name])
    assert moved > 10  # the step really changed the weights


def wait_for(path: Path, proc, timeout=900):  # the limit only stops a hung test
    t0 = time.time()
    while not path.exists():
        assert proc.poll() is None, "training ended before the checkpoint appeared"
        assert time.time() - t0 < timeout, f"{path} did not appear"
        time.sleep(0.02)


def test_single_process_resume_is_bit_for_bit(stores, single_run, tmp_path):
    args = ["--data", stores["zarr"], *SINGLE]
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "maize_ddp.train", *map(str, args), "--out", str(out)],
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(out / "checkpoints" / "last.pt", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=False)
    assert (state["epoch"], state["batch"]) != (2, 0), "killed too late to test a resume"
    again = in_process("maize_ddp.train", *args, "--out", out)
    assert again.returncode == 1 and "pass --resume" in again.stderr
    resumed = train_single([*args, "--out", out, "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout

    a = torch.load(single_run / "checkpoints" / "last.pt", weights_only=False)
    b = torch.load(out / "checkpoints" / "last.pt", weights_only=False)
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name
    assert a["history"][-1]["train_loss"] == b["history"][-1]["train_loss"]
    assert a["history"][-1]["val_pearson"] == b["history"][-1]["val_pearson"]
    # steps.jsonl reads as the uninterrupted run's: no line lost or repeated, the same figures
    # (the lines the killed run wrote past its checkpoint were dropped on resuming)
    figures = [[{k: line[k] for k in ("step", "epoch", "loss", "lr", "grad_norm")}
                for line in map(json.loads, (run / "steps.jsonl").read_text().splitlines())]
               for run in (single_run, out)]
    assert [f["step"] for f in figures[0]] == sorted({*range(5, 129, 5), 64, 128})  # log points, epoch ends
    assert figures[1] == figures[0]


def test_resume_with_another_world_size_keeps_the_schedule(stores, two_rank_run, tmp_path):
    # 2 ranks for 4 epochs, then 1 process to 5 epochs: twice the steps per epoch from there on,
    # and the learning rate still ends at its floor on the last step.
    first, run = two_rank_run("zarr")
    assert first.returncode == 0, first.stderr[-3000:]
    out = shutil.copytree(run, tmp_path / "run")
    resumed = train_single(["--data", stores["zarr"], "--out", out, "--epochs", "5", "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4, 5]
    steps_per_epoch = 2048 // 32  # one process; two took half as many, and the count is rescaled on resuming
    assert [h["step"] for h in history] == [32, 64, 96, 128, 5 * steps_per_epoch]
    cfg = json.loads((out / "config.json").read_text())
    floor = cfg["lr"] * cfg["lr_min_ratio"]
    assert history[-1]["lr"] == pytest.approx(floor, rel=1e-2)


def test_a_run_that_stopped_early_resumes_into_its_test_report(stores, single_run, tmp_path):
    out = shutil.copytree(single_run, tmp_path / "run")
    # as the trainer leaves a run that early-stopped at epoch 2 (an epoch without a better val r)
    last = out / "checkpoints" / "last.pt"
    state = torch.load(last, weights_only=False)
    state["stale_epochs"] = 1
    torch.save(state, last)
    (out / "test_metrics.json").unlink()
    resumed = train_single(["--data", stores["zarr"], "--out", out, *SINGLE, "--epochs", "5", "--patience", "1",
                            "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2  # no epoch trained after the stop
    assert json.loads((out / "test_metrics.json").read_text())["best_epoch"] <= 2


def test_a_rank_that_meets_a_broken_shard_says_so(tmp_path):
    from convert import npz_to_wds

    synth.generate(tmp_path / "npz", train=256, val=101, test=32, seq_len=200, shard_size=128)
    store = tmp_path / "data.wds"
    npz_to_wds.convert(tmp_path / "npz", store, shard_samples=32)
    tars = sorted((store / "val").glob("*.tar"))
    os.truncate(tars[1], tars[1].stat().st_size // 2)  # cut short: only the rank that reads it can tell
    res = torchrun(2, ["--data", store, "--out", tmp_path / "run", "--epochs", "1"])
    assert res.returncode != 0
    errors = [line for line in res.stderr.splitlines() if line.startswith("error: rank ")]
    assert any(tars[1].name in line for line in errors), res.stderr[-3000:]


def children(pid):
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def test_torchrun_restarts_a_killed_rank_and_finishes(stores, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "--max-restarts=1",
           "-m", "maize_ddp.train", "--data", str(stores["zarr"]), "--out", str(out), "--epochs", "3",
           "--checkpoint-every", "5"]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(out / "checkpoints" / "last.pt", proc)
    ranks = children(proc.pid)
    assert len(ranks) == 2
    os.kill(ranks[-1], signal.SIGKILL)
    log, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, log[-3000:]
    assert "resumed from" in log
    report = json.loads((out / "test_metrics.json").read_text())
    assert report["n"] == 101
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 3
    # a new launch on that folder is refused, also on torchrun's automatic retry
    again = torchrun(2, ["--data", stores["zarr"], "--out", out], max_restarts=1)
    assert again.returncode != 0 and "already holds a run" in again.stderr


def test_bf16_autocast_tracks_fp32():
    from maize_ddp.model import BasenjiModel
    from maize_ddp.train import train_step

    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 5, (16, 200), generator=g, dtype=torch.uint8)
    y = torch.randn(16, 1, generator=g)
    losses = {}
    for amp in ("off", "bf16"):
        torch.manual_seed(0)
        model = BasenjiModel(seq_len=200, pdrop1=0, pdrop2=0, pdrop3=0, pdropd=0, pdrop4=0)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        losses[amp] = [train_step(model, codes, y, opt, None, amp, 0.0)[0].item() for _ in range(6)]
    np.testing.assert_allclose(losses["bf16"], losses["off"], rtol=0.05, atol=0.01)
    assert losses["off"][-1] < losses["off"][0]


def test_errors_are_one_line(stores, tmp_path):
    readonly = tmp_path / "ro"
    readonly.mkdir()
    readonly.chmod(0o500)
    cases = [
        (["--data", tmp_path / "nothing.zarr", "--out", tmp_path / "a"], "nothing.zarr"),
        (["--data", stores["zarr"], "--out", tmp_path / "b", "--batch-size", "5000"], "no full batch per rank"),
        (["--data", stores["zarr"], "--out", tmp_path / "c", "--amp", "fp16", "--device", "cpu"], "fp16 needs"),
        (["--data", stores["zarr"], "--out", tmp_path / "d", "--sync-bn"], "--sync-bn needs CUDA"),
    ]
    if os.geteuid() != 0:  # root writes anywhere
        cases.append((["--data", stores["zarr"], "--out", readonly / "run"], "not writable"))
    for args, message in cases:
        res = in_process("maize_ddp.train", *args)  # each fails before training: no process of its own needed
        assert res.returncode != 0
        # the default model on 200 bp also warns (a line of its own) that its pools are too coarse
        lines = [line for line in res.stderr.strip().splitlines() if not line.startswith("warning: seq_len 200")]
        assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], res.stderr


def test_resume_refuses_another_model(stores, single_run, tmp_path):
    out = shutil.copytree(single_run, tmp_path / "run")
    res = in_process("maize_ddp.train", "--data", stores["zarr"], "--out", out, "--epochs", "2", "--resume",
                     "--conv1kc", "32")
    assert res.returncode == 1
    assert "a resume continues the run as it was trained" in res.stderr and "--conv1kc 32 (the run: 64)" in res.stderr


def test_predict_and_evaluate_reproduce_the_runs_test_report(stores, single_run, tmp_path):
    # The run averages each sequence with its reverse complement: predict and evaluate must too,
    # unless told otherwise.
    out = single_run
    ev = in_process("maize_ddp.evaluate", out, "--data", stores["zarr"], "--out", tmp_path / "ev")
    assert ev.returncode == 0, ev.stderr
    trained, again = (json.loads((d / "test_metrics.json").read_text()) for d in (out, tmp_path / "ev"))
    assert again["rc_average"] is True and again["pearson"] == pytest.approx(trained["pearson"], rel=1e-6)
    npz_dir = stores["zarr"].parent / "npz" / "test"
    res = in_process("maize_ddp.predict", out, "--data", npz_dir, "--out", tmp_path / "p.tsv")
    assert res.returncode == 0, res.stderr
    from_npz = np.loadtxt(tmp_path / "p.tsv", skiprows=1, usecols=3, delimiter="\t")
    assert read_id_column(tmp_path / "p.tsv") == read_id_column(out / "test_predictions.tsv")
    _, _, from_store = read_predictions(out / "test_predictions.tsv")
    np.testing.assert_allclose(from_npz, from_store, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("env,expected", [
    ({"SLURM_JOB_ID": "812", "TORCHELASTIC_RUN_ID": "abc"}, "812"),  # a requeued job keeps its id
    ({"TORCHELASTIC_RUN_ID": "4f0c2a"}, "4f0c2a"),
    ({"TORCHELASTIC_RUN_ID": "none"}, None),  # torchrun's default: shared by unrelated launches
    ({}, None),
])
def test_launch_id(monkeypatch, env, expected):
    from maize_ddp.train import launch_id

    for name in ("SLURM_JOB_ID", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert launch_id() == expected


EXIT_CHECK = """
import os, sys
import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from maize_ddp import distributed

def gloo_threads():
    names = []
    for t in os.listdir("/proc/self/task"):
        try:
            names.append(open(f"/proc/self/task/{t}/comm").read())
        except OSError:
            pass
    return sum(n.startswith(("pt_gloo", "gloo_")) for n in names)

def train(d):  # as the trainer: DDP, then all_gather_object last
    model = DDP(torch.nn.Linear(4, 1))
    model(torch.randn(8, 4)).sum().backward()
    distributed.all_gather_objects(d, {"rank": d.rank})

d = distributed.init("cpu")
train(d)
before = gloo_threads()
distributed.shutdown(d)
os.write(1, f"gloo threads {before} -> {gloo_threads()}\\n".encode())  # one write: the ranks' lines never interleave
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads through /proc (Linux)")
def test_shutdown_joins_gloo_threads(tmp_path):
    """The cause of 'terminate called without an active exception' at the end of a finished run:
    gloo worker threads alive when Python finalizes (see distributed.shutdown). None may be left."""
    script = tmp_path / "exit_check.py"
    script.write_text(EXIT_CHECK)
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                          str(script)], env=ENV, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    counts = re.findall(r"gloo threads (\d+) -> (\d+)", res.stdout)
    assert len(counts) == 2 and all(before != "0" and after == "0" for before, after in counts), res.stdout


# ---- --check: the decisions a run takes, for launchers; nothing is created ---------------------
def check(args, **env):
    """`train --check` in this process (it starts nothing, so nothing needs isolating but the
    environment it reads and the SIGTERM handler main installs)."""
    import contextlib
    import io
    from types import SimpleNamespace

    from maize_ddp import train

    saved = {k: os.environ.get(k) for k in ("SLURM_JOB_ID", "TORCHELASTIC_RUN_ID", "SLURM_RESTART_COUNT",
                                            "TORCHELASTIC_RESTART_COUNT", *env)}
    handler = signal.getsignal(signal.SIGTERM)
    out, err = io.StringIO(), io.StringIO()
    try:
        for k in saved:
            os.environ.pop(k, None)
        os.environ.update(env)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = train.main(["--check", *map(str, args)])
    finally:
        signal.signal(signal.SIGTERM, handler)
        for k, v in saved.items():
            os.environ.pop(k, None)
            if v is not None:
                os.environ[k] = v
    return SimpleNamespace(returncode=rc, stdout=out.getvalue(), stderr=err.getvalue())


def fake_checkpoint(path, launch_id, launch_round=(0, 0)):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": {}, "config": {}, "launch_id": launch_id, "launch_round": list(launch_round)}, path)


def test_check_takes_the_runs_decisions_and_creates_nothing(stores, tmp_path):
    data = ["--data", stores["zarr"]]
    res = check([*data, "--out", tmp_path / "fresh"])
    assert res.returncode == 0 and res.stdout == f"check: ok resume=no out={tmp_path / 'fresh'}\n", res
    assert not (tmp_path / "fresh").exists()  # no folder, no lock

    best_only = tmp_path / "best only"
    fake_checkpoint(best_only / "checkpoints" / "best.pt", "812")
    res = check([*data, "--out", best_only])
    assert res.returncode == 1 and res.stdout == ""
    assert res.stderr == (f"error: {best_only} already holds a run (checkpoints/best.pt) but no "
                          "checkpoints/last.pt to resume from; choose another --out\n")
    assert not (best_only / "run.lock").exists()
    # the same launch, restarted before its first last.pt, starts its run again
    assert check([*data, "--out", best_only], SLURM_JOB_ID="812",
                 SLURM_RESTART_COUNT="1").stdout.startswith("check: ok resume=no ")
    # ... but a second trainer of the same allocation is no restart
    assert check([*data, "--out", best_only], SLURM_JOB_ID="812").returncode == 1

    run = tmp_path / "run"
    fake_checkpoint(run / "checkpoints" / "last.pt", "812")
    res = check([*data, "--out", run])
    assert res.returncode == 1 and "already holds a run" in res.stderr and "pass --resume" in res.stderr
    assert check([*data, "--out", run, "--resume"]).stdout == f"check: ok resume=yes out={run}\n"
    assert check([*data, "--out", run], SLURM_JOB_ID="812",
                 SLURM_RESTART_COUNT="1").stdout == f"check: ok resume=yes out={run}\n"
    res = check([*data, "--out", run], SLURM_JOB_ID="812")  # same job, same round: a second trainer
    assert res.returncode == 1 and "pass --resume" in res.stderr
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["best only", "best.pt", "checkpoints", "checkpoints",
                                                           "last.pt", "run"]


def test_check_refuses_bad_input_in_one_line(stores, tmp_path):
    cases = [(["--data", stores["zarr"], "--bogus-flag"], 2, "error: unrecognized arguments: --bogus-flag"),
             (["--data", stores["zarr"], "--epochs", "0"], 2, "error: --epochs must be at least 1"),
             (["--data", tmp_path / "missing.zarr"], 1, f"error: {tmp_path / 'missing.zarr'}: no such file")]
    for args, rc, message in cases:
        res = check([*args, "--out", tmp_path / "run"])
        assert res.returncode == rc and res.stdout == "", res
        lines = res.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith(message), res.stderr
    assert list(tmp_path.iterdir()) == []


def test_default_out_yields_to_the_config_file_and_the_flag(stores, tmp_path):
    """A launcher's per-job folder (--default-out) replaces the default only."""
    toml = tmp_path / "c.toml"
    toml.write_text(f'out = "{tmp_path / "from toml"}"\n')
    base = ["--data", stores["zarr"], "--default-out", tmp_path / "job-7"]
    assert check(base).stdout.endswith(f"out={tmp_path / 'job-7'}\n")
    assert check([*base, "--config", toml]).stdout.endswith(f"out={tmp_path / 'from toml'}\n")
    assert check([*base, "--config", toml, "--out", tmp_path / "flag"]).stdout.endswith(f"out={tmp_path / 'flag'}\n")
