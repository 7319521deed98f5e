"""Bad inputs and faults through the real trainer, evaluate and predict commands on tiny stores.

Each scenario asserts the exit code, one `error:` line naming the file or flag, no traceback, and
that nothing of the run's was replaced. Disk-full faults use RLIMIT_FSIZE (EFBIG, with SIGXFSZ
ignored), which works for any user; one test uses a real full tmpfs where it can be mounted.
"""
import contextlib
import hashlib
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from _commands import in_process as run_main
from convert import synth

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}
FAST = ["--epochs", "1", "--warmup-steps", "2", "--bn-recalibration-batches", "2"]
RUN_FILES = ["config.json", "metrics.jsonl", "test_metrics.json", "test_predictions.tsv", "scatter.png",
             "curves.png", "checkpoints/last.pt", "checkpoints/best.pt"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Two stores of the same rows and one finished single-process run on the Zarr one."""
    from convert import npz_to_wds, npz_to_zarr

    root = tmp_path_factory.mktemp("faults")
    synth.generate(root / "npz", train=256, val=40, test=40, seq_len=200, shard_size=128)
    npz_to_zarr.convert(root / "npz", root / "data.zarr")
    npz_to_wds.convert(root / "npz", root / "data.wds", shard_samples=64)
    run = root / "run"
    res = cli("train", "--data", root / "data.zarr", "--out", run, *FAST)
    assert res.returncode == 0, res.stderr[-3000:]
    return {"root": root, "zarr": root / "data.zarr", "wds": root / "data.wds", "npz": root / "npz", "run": run}


def cli(tool, *args, limit_bytes=None, **kw):
    def preexec():  # a disk that takes no file larger than limit_bytes
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run([sys.executable, "-m", f"maize_ddp.{tool}", *map(str, args)], env=ENV,
                          capture_output=True, text=True, timeout=180,
                          preexec_fn=preexec if limit_bytes else None, **kw)


def in_process(tool, *args):
    """A fault that does not depend on which process meets it: the command's main, in this process."""
    return run_main(f"maize_ddp.{tool}", *args)


def fingerprint(run: Path) -> dict:
    return {name: hashlib.sha256((run / name).read_bytes()).hexdigest() for name in RUN_FILES if (run / name).exists()}


def temps(folder: Path) -> list:
    return sorted(p.name for p in folder.rglob(".*.tmp-*"))


def one_error_line(res, *needles) -> str:
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, res.stderr[-3000:]
    for needle in needles:
        assert str(needle) in errors[0], errors[0]
    return errors[0]


def copy_run(world, tmp_path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(world["run"], run)
    return run


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def lock_of(host, pid, launch=None, round=(0, 0)) -> str:
    return json.dumps({"host": host, "pid": pid, "start": None, "launch_id": launch, "round": list(round),
                       "since": "2025-01-01 00:00:00"})


# ---- the table: (scenario, set-up of a copy of the finished run -> command, rc, needles) --------------------

def _bad_flag(flag, value):
    return lambda w, run: (["train", "--data", w["zarr"], "--out", run / "new", flag, value], 2, [flag])


def _busy(w, run):  # a live process on this host holds the folder (this test's own process)
    (run / "run.lock").write_text(lock_of(socket.gethostname(), os.getpid()))
    return ["train", "--data", w["zarr"], "--out", run, "--resume", *FAST], 1, [run, "in use by another run",
                                                                                f"pid {os.getpid()}"]


def _other_host(w, run):
    (run / "run.lock").write_text(lock_of("node-elsewhere", 4242, "812"))
    return ["train", "--data", w["zarr"], "--out", run, "--resume", *FAST], 1, ["node-elsewhere", "remove",
                                                                                run / "run.lock"]


def _best_without_last(w, run):
    (run / "checkpoints" / "last.pt").unlink()
    return ["train", "--data", w["zarr"], "--out", run, *FAST], 1, [run, "already holds a run", "checkpoints/best.pt"]


def _best_without_last_resume(w, run):
    (run / "checkpoints" / "last.pt").unlink()
    return ["train", "--data", w["zarr"], "--out", run, "--resume", *FAST], 1, ["no checkpoints/last.pt"]


def _truncated_last(w, run):
    last = run / "checkpoints" / "last.pt"
    os.truncate(last, last.stat().st_size // 3)
    return ["train", "--data", w["zarr"], "--out", run, "--resume", *FAST], 1, [last, "not a readable checkpoint"]


def _mid_epoch_other_store(w, run):
    last = run / "checkpoints" / "last.pt"
    state = torch.load(last, weights_only=False)
    state["batch"] = 2  # as a mid-epoch checkpoint: its data position is the store's
    torch.save(state, last)
    return ["train", "--data", w["wds"], "--out", run, "--resume", *FAST], 1, [last, "mid-epoch on another store"]


def _predict_over_checkpoint(w, run):
    return ["predict", run, "--data", w["zarr"], "--out", run / "checkpoints" / "best.pt"], 1, ["best.pt",
                                                                                                "checkpoint"]


def _predict_over_a_file(w, run):
    return ["predict", run, "--data", w["zarr"], "--out", run / "config.json"], 1, ["config.json", "--overwrite"]


def _predict_overwrite_not_a_table(w, run):
    return ["predict", run, "--data", w["zarr"], "--out", run / "metrics.jsonl", "--overwrite"], 1, [
        "metrics.jsonl", "not a predictions table"]


def _predict_disk_full(w, run):
    return ["predict", run, "--data", w["zarr"], "--out", run / "p" / "preds.tsv", "--limit", 600], 1, [
        run / "p" / "preds.tsv", "cannot write", "file too large"]


def _predict_npz_bad_id(w, run):
    """A shard's ids would break the predictions table (a tab) or its joins (a repeat)."""
    shard = run.parent / "npz_in" / "a.npz"
    shard.parent.mkdir()
    with np.load(sorted((w["npz"] / "test").glob("*.npz"))[0]) as z:
        np.savez(shard, z["arr_0"][:3], z["arr_1"][:3], ids=np.array(["g1", "g\t2", "g3"]))
    (shard.parent / "._a.npz").write_bytes(b"\0\5\26\7 macOS metadata")  # skipped, not an error
    return ["predict", run, "--data", shard.parent, "--out", run.parent / "p.tsv"], 1, [
        shard, "ids row 1", "without tabs, line breaks"]


def _evaluate_disk_full(w, run):
    return ["evaluate", run, "--data", w["wds"], "--limit", 1500], 1, [run / "eval-data.wds-test", "cannot write",
                                                                       "file too large"]


def _train_disk_full(w, run):  # config and metrics fit, a checkpoint does not
    return ["train", "--data", w["zarr"], "--out", run / "new", *FAST, "--limit", 100_000], 1, [
        run / "new" / "checkpoints", ".pt: cannot write", "file too large"]


def _resume_with_other_settings(w, run):
    return ["train", "--data", w["zarr"], "--out", run, "--resume", *FAST, "--lr", "0.1", "--batch-size", "8"], 1, [
        run / "checkpoints" / "last.pt", "--lr 0.1 (the run: 0.006)", "--batch-size 8 (the run: 32)"]


def _resume_with_another_model(w, run):
    return ["train", "--data", w["zarr"], "--out", run, "--resume", *FAST, "--convdc", "1"], 1, [
        "last.pt", "--convdc 1 (the run: 6)"]


def _best_over_last(w, run):
    shutil.copy(run / "checkpoints" / "best.pt", run / "checkpoints" / "last.pt")
    return ["train", "--data", w["zarr"], "--out", run, "--resume", *FAST], 1, [
        run / "checkpoints" / "last.pt", "not a checkpoint a run can resume from", "best.pt copied over last.pt?"]


def _edit_best(edit):
    """evaluate on a best.pt whose weights no longer fit its own model config."""
    def scenario(w, run):
        best = run / "checkpoints" / "best.pt"
        state = torch.load(best, weights_only=True)
        edit(state)
        torch.save(state, best)
        return ["evaluate", run, "--data", w["zarr"], "--out", run.parent / "eval"], 1, [
            best, "its weights do not fit the model its config describes"]
    return scenario


def _bad_config(text: bytes, *needles):
    def scenario(w, run):
        path = run.parent / "c.toml"
        path.write_bytes(text)
        return ["train", "--data", w["zarr"], "--out", run.parent / "new", "--config", path], 2, [path, *needles]
    return scenario


def _train_out_inside_its_store(w, run):
    return ["train", "--data", w["zarr"], "--out", w["zarr"] / "run", *FAST], 1, [
        w["zarr"] / "run", "the output lies inside the input", "choose an --out"]


def _evaluate_over_another_run(w, run):
    other = run.parent / "other"
    shutil.copytree(run, other)
    return ["evaluate", run, "--data", w["zarr"], "--out", other], 1, [other, "is another run's folder"]


def _evaluate_over_users_files(w, run):
    mine = run.parent / "mine"
    mine.mkdir()
    (mine / "test_metrics.json").write_text('{"my": "results"}')
    return ["evaluate", run, "--data", w["zarr"], "--out", mine], 1, [
        mine / "test_metrics.json", "not an evaluation report"]


def _evaluate_out_inside_the_store(w, run):
    return ["evaluate", run, "--data", w["zarr"], "--out", w["zarr"] / "eval"], 1, [
        "the output lies inside the input"]


def _evaluate_into_another_stores_evaluation(w, run):
    """Two stores of one name (a/data.zarr, b/data.zarr) would share RUN/eval-data.zarr-test."""
    other = run.parent / "b" / "data.zarr"
    shutil.copytree(w["zarr"], other)
    first = in_process("evaluate", run, "--data", other)
    assert first.returncode == 0, first.stderr[-2000:]
    return ["evaluate", run, "--data", w["zarr"]], 1, [run / "eval-data.zarr-test",
                                                       "holds the evaluation of another store"]


def _evaluate_into_a_live_run(w, run):
    (run / "run.lock").write_text(lock_of(socket.gethostname(), os.getpid()))
    return ["evaluate", run, "--data", w["zarr"], "--out", run], 1, [run, "a live run holds this folder"]


def _evaluate_nan_weights(w, run):
    best = run / "checkpoints" / "best.pt"
    state = torch.load(best, weights_only=True)
    for tensor in state["model"].values():
        if tensor.is_floating_point():
            tensor.fill_(float("nan"))
    torch.save(state, best)
    return ["evaluate", run, "--data", w["zarr"], "--out", run.parent / "eval"], 1, [
        "predicts NaN or inf for 40 of 40 test rows", "no report written"]


SCENARIOS = {
    "--conv1kc 0": _bad_flag("--conv1kc", "0"),
    "train --out inside its store": _train_out_inside_its_store,
    "evaluate --out another run": _evaluate_over_another_run,
    "evaluate --out a folder of the user's files": _evaluate_over_users_files,
    "evaluate --out inside the store": _evaluate_out_inside_the_store,
    "evaluate two stores of one name": _evaluate_into_another_stores_evaluation,
    "evaluate --out RUN while it trains": _evaluate_into_a_live_run,
    "evaluate NaN weights": _evaluate_nan_weights,
    "--lr nan": _bad_flag("--lr", "nan"),
    "--weight-decay nan": _bad_flag("--weight-decay", "nan"),
    "--grad-clip nan": _bad_flag("--grad-clip", "nan"),
    "--lr inf": _bad_flag("--lr", "inf"),
    "config lr = nan": _bad_config(b"lr = nan\n", "finite"),
    "config model = 5": _bad_config(b"model = 5\n", "[model] table"),
    "config not UTF-8": _bad_config(b"\xff\xfe = 1\n", "not valid TOML"),
    "best.pt copied over last.pt": _best_over_last,
    "weights missing a tensor": _edit_best(lambda s: s["model"].pop(next(iter(s["model"])))),
    "weights of another size": _edit_best(lambda s: s["config"]["model"].update(conv4kc=7)),
    "--conv1st 0": _bad_flag("--conv1st", "0"),
    "--pool1ks 0": _bad_flag("--pool1ks", "0"),
    "--seed -1": _bad_flag("--seed", "-1"),
    "folder in use on this host": _busy,
    "folder locked from another host": _other_host,
    "best.pt and report, no last.pt": _best_without_last,
    "--resume with no last.pt": _best_without_last_resume,
    "--resume of a truncated last.pt": _truncated_last,
    "mid-epoch --resume on another store": _mid_epoch_other_store,
    "--resume with another lr and batch size": _resume_with_other_settings,
    "--resume with another model": _resume_with_another_model,
    "predict --out a checkpoint": _predict_over_checkpoint,
    "predict --out an existing file": _predict_over_a_file,
    "predict --overwrite a non-table": _predict_overwrite_not_a_table,
    "predict on a full disk": _predict_disk_full,
    "predict on npz with a tab in an id": _predict_npz_bad_id,
    "evaluate on a full disk": _evaluate_disk_full,
    "train on a full disk": _train_disk_full,
}


# a lock naming this test's process must be another process's than the command's
OWN_PROCESS = {"folder in use on this host", "evaluate --out RUN while it trains"}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_fault(world, tmp_path, scenario):
    run = copy_run(world, tmp_path)
    command, rc, needles = SCENARIOS[scenario](world, run)
    limit = None
    if "--limit" in command:
        at = command.index("--limit")
        limit = command[at + 1]
        command = command[:at] + command[at + 2:]
    lock_before = (run / "run.lock").read_text() if (run / "run.lock").exists() else None
    before = fingerprint(run)
    res = cli(*command, limit_bytes=limit) if limit or scenario in OWN_PROCESS else in_process(*command)
    assert res.returncode == rc, res.stderr[-3000:]
    one_error_line(res, *needles)
    assert fingerprint(run) == before  # nothing of the run's replaced
    assert temps(run) == []  # no temp file left behind
    lock_after = (run / "run.lock").read_text() if (run / "run.lock").exists() else None
    assert lock_after == lock_before  # another's lock is left alone; ours is gone
    if "--out" in command and command[0] == "evaluate" and not Path(command[command.index("--out") + 1]).is_relative_to(run):
        out = Path(command[command.index("--out") + 1])
        assert not out.exists() or any(out.iterdir()), f"{out}: a failed evaluation left an empty folder"


def test_train_out_into_another_store_is_refused_and_the_store_left_alone(world, tmp_path):
    """A store that is not the input is still no run folder: run files would go in beside its
    arrays, and its next --overwrite would take the run with it."""
    other = tmp_path / "other.wds"
    shutil.copytree(world["wds"], other)

    def contents():
        return {str(p.relative_to(other)): p.read_bytes() if p.is_file() else None for p in other.rglob("*")}
    before = contents()
    res = in_process("train", "--data", world["zarr"], "--out", other, *FAST)
    assert res.returncode == 1, res.stderr[-3000:]
    one_error_line(res, other, "is a WebDataset store (it holds manifest.json), not a run folder",
                   "choose another --out")
    assert contents() == before


# ---- faults that need a run going on, or leave something to clean up ---------------------------------------

def test_a_second_trainer_and_a_torchrun_resume_are_refused_then_ctrl_c_stops_the_first(world, tmp_path):
    out = tmp_path / "run"
    first = endless_trainer(world, out)
    try:
        holder = json.loads((out / "run.lock").read_text())
        assert holder["pid"] == first.pid and holder["host"] == socket.gethostname()
        second = cli("train", "--data", world["zarr"], "--out", out, *FAST)
        assert second.returncode == 1
        one_error_line(second, out, "in use by another run", f"pid {first.pid}")
        resume = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                                 "-m", "maize_ddp.train", "--data", str(world["zarr"]), "--out", str(out), "--resume",
                                 *FAST], env=ENV, capture_output=True, text=True, timeout=120)
        assert resume.returncode != 0
        errors = [line for line in resume.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "in use by another run" in errors[0], resume.stderr[-3000:]  # rank 0 alone
        first.send_signal(signal.SIGUSR1)  # prints its stacks and goes on training
        first.send_signal(signal.SIGINT)
        try:
            _, err = first.communicate(timeout=120)
        except subprocess.TimeoutExpired:  # what was it doing? (the trainer prints its stacks on SIGUSR1)
            first.send_signal(signal.SIGUSR1)
            time.sleep(5)
            first.kill()
            raise AssertionError("the trainer did not stop on Ctrl-C:\n" + first.communicate()[1][-8000:]) from None
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "error: interrupted" in err.splitlines(), err[-3000:]
    assert "(most recent call first)" in err and "maize_ddp/train.py" in err  # the SIGUSR1 stacks
    assert not (out / "run.lock").exists() and temps(out) == []
    assert json.loads((out / "config.json").read_text())["epochs"] == 1000000  # the first run's, not the refused ones'


def endless_trainer(world, out: Path) -> subprocess.Popen:
    """A trainer with more epochs than any machine finishes while a test acts on it, returned once
    it holds its run folder (config.json written): only a signal ends it."""
    proc = subprocess.Popen([sys.executable, "-m", "maize_ddp.train", "--data", str(world["zarr"]), "--out", str(out),
                             "--epochs", "1000000", "--warmup-steps", "2"], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (out / "config.json").exists(), proc)
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    return proc


def wait_for(condition, proc=None, limit_s=600):
    """Wait for an event (a file appears, a process ends); the limit only stops a hung test."""
    deadline = time.monotonic() + limit_s
    while not condition():
        assert proc is None or proc.poll() is None, proc.communicate()[1][-3000:] if proc.stderr else proc.returncode
        assert time.monotonic() < deadline, "waited too long"
        time.sleep(0.05)


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def test_a_killed_torchrun_takes_its_ranks_with_it(world, tmp_path):
    from maize_ddp.runlock import RunLock, alive

    out = tmp_path / "run"
    launcher = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                                 "-m", "maize_ddp.train", "--data", str(world["zarr"]), "--out", str(out),
                                 "--epochs", "1000000", "--warmup-steps", "2"], env=ENV, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
    ranks = []
    try:
        wait_for(lambda: (out / "config.json").exists(), launcher)  # rank 0 holds the folder and trains
        ranks = children(launcher.pid)
        assert len(ranks) == 2
        launcher.kill()
        launcher.wait()
        wait_for(lambda: not any(alive(pid) for pid in ranks))
    finally:
        for pid in [launcher.pid, *ranks]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    lock = RunLock(out, None).acquire()  # the folder is free for a --resume
    assert lock.took_over["pid"] in ranks
    lock.release()


def test_sigterm_stops_the_trainer_with_a_line_and_a_resumable_folder(world, tmp_path):
    """SLURM's time limit sends SIGTERM: the trainer says so, and that its last checkpoint is there
    to resume, releases its lock, exit 143."""
    out = tmp_path / "run"
    proc = endless_trainer(world, out)
    try:
        wait_for(lambda: (out / "checkpoints" / "last.pt").exists(), proc)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err[-3000:]
    one_error_line(subprocess.CompletedProcess(proc.args, 143, "", err), "terminated (SIGTERM", out, "--resume")
    assert not (out / "run.lock").exists() and temps(out) == []


@pytest.mark.parametrize("signum, stop", [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, "Terminated")])
def test_a_stop_whose_exception_was_swallowed_is_raised_again_at_the_next_step(signum, stop):
    """A signal's exception raised inside a destructor or a library callback is lost ("Exception
    ignored"); the trainer's loop asks raise_if_stopped at every step, so it stops all the same."""
    from maize_ddp import errors

    stop = errors.Terminated if stop == "Terminated" else stop
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        errors.raise_on_sigterm()
        errors.raise_if_stopped()  # nothing asked yet
        with contextlib.suppress(KeyboardInterrupt):  # where the exception is swallowed
            os.kill(os.getpid(), signum)
            time.sleep(1)  # the handler runs by here (a signal to oneself arrives before kill returns)
        with pytest.raises(stop):
            errors.raise_if_stopped()
        errors.raise_on_sigterm()  # a new run starts with no stop asked
        errors.raise_if_stopped()
    finally:
        for number, handler in handlers.items():
            signal.signal(number, handler)
