"""The training step without host reads: the device-side meter, the non-finite guard at log points
and before checkpoints, steps.jsonl, --compile, --tensorboard and the --amp auto decision."""
import importlib.util
import json
import math
import os
import subprocess
import sys

import pytest
import torch

from convert import synth
from maize_ddp import config, distributed, train
from maize_ddp.data import open_store
from maize_ddp.training_state import StepMeter, TrainingError

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}
ONE = distributed.Dist(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"), backend=None)
# a tiny model without dropout: compiled and eager runs draw no random masks to differ by
TINY = ["--conv1kc", "8", "--conv2kc", "8", "--conv3kc", "8", "--convdc", "1", "--convdkc", "4", "--conv4kc", "8",
        "--pool1ks", "2", "--pool2ks", "2", "--pool3ks", "2", "--pdrop1", "0", "--pdrop2", "0", "--pdrop3", "0",
        "--pdropd", "0", "--pdrop4", "0"]


class Batches:
    """A training loader's interface over fixed batches: the guard sees exactly the steps we plant."""

    def __init__(self, batches):
        self.batches, self.start = batches, 0

    def set_epoch(self, epoch, start_batch=0):
        self.start = start_batch

    def __iter__(self):
        return iter(self.batches[self.start:])

    def __len__(self):
        return len(self.batches)


def batches(n, bad_step=None, seq_len=64, batch=4):
    g = torch.Generator().manual_seed(0)
    out = []
    for step in range(1, n + 1):
        codes = torch.randint(0, 5, (batch, seq_len), generator=g, dtype=torch.uint8)
        y = torch.randn(batch, 1, generator=g)
        if step == bad_step:
            y[0, 0] = math.nan  # a NaN label: the loss and every gradient go non-finite from here on
        out.append((codes, y))
    return out


def run_epoch(tmp_path, loader, *flags):
    """train.train_epoch on the real state, with save_last recording the step and whether every
    weight was finite when it was called."""
    cfg = config.resolve(["--data", "x", "--out", str(tmp_path), *TINY, *flags])
    cfg.model["seq_len"] = 64
    state, amp, lr_factor = train.build(cfg, ONE, steps_per_epoch=len(loader))
    saved = []

    def save_last():
        saved.append((state.step, all(bool(torch.isfinite(p).all()) for p in state.model.parameters())))

    log = train.StepLog(cfg, ONE, tmp_path, resumed_step=None)
    bar = train.progress_bar(cfg, ONE, state)
    try:
        train.train_epoch(cfg, ONE, state, state.model, loader, amp, lr_factor, bar, save_last, log)
        return state, saved, None
    except TrainingError as e:
        return state, saved, str(e)
    finally:
        bar.close()


@pytest.mark.parametrize("log_every,checkpoint_every,stops_at", [
    (5, 4, 15),    # the log point at 15 finds step 13
    (50, 4, 16),   # no log point before the checkpoint at 16: its check finds it
    (50, 0, 20),   # neither: the epoch's end finds it, before validation and any save
])
def test_a_non_finite_step_stops_the_run_before_any_save(tmp_path, log_every, checkpoint_every, stops_at):
    state, saved, error = run_epoch(tmp_path, Batches(batches(20, bad_step=13)), "--log-every", str(log_every),
                                    "--checkpoint-every", str(checkpoint_every))
    assert error is not None and error.startswith("non-finite loss or gradients at step 13 "), error
    assert "lower --lr, set --grad-clip, or use --amp off" in error
    assert state.step == stops_at and stops_at - 13 < log_every
    assert saved == [(s, True) for s in range(checkpoint_every, 13, checkpoint_every)] if checkpoint_every else not saved
    lines = [json.loads(x) for x in (tmp_path / "steps.jsonl").read_text().splitlines()] \
        if (tmp_path / "steps.jsonl").exists() else []
    assert [x["step"] for x in lines] == list(range(log_every, 13, log_every))
    assert all(math.isfinite(x["loss"]) and math.isfinite(x["grad_norm"]) for x in lines)


def test_a_finite_epoch_logs_at_every_log_point_and_its_end(tmp_path):
    loader = Batches(batches(12))
    state, saved, error = run_epoch(tmp_path, loader, "--log-every", "5", "--checkpoint-every", "4")
    assert error is None and [s for s, _ in saved] == [4, 8] and all(ok for _, ok in saved)
    lines = [json.loads(x) for x in (tmp_path / "steps.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [5, 10, 12] and {x["epoch"] for x in lines} == {1}
    # the logged losses are the step losses' means, computed here independently on a fresh copy
    cfg = config.resolve(["--data", "x", *TINY])
    cfg.model["seq_len"] = 64
    again, amp, lr_factor = train.build(cfg, ONE, steps_per_epoch=12)
    losses = []
    for step, (codes, y) in enumerate(loader.batches):
        for group in again.optimizer.param_groups:
            group["lr"] = cfg.lr * lr_factor(step)
        losses.append(train.train_step(again.model, codes, y, again.optimizer, None, amp, 0.0)[0].item())
    means = [sum(losses[a:b]) / (b - a) for a, b in ((0, 5), (5, 10), (10, 12))]
    assert [x["loss"] for x in lines] == pytest.approx(means, rel=1e-12)
    assert state.epoch_loss[0] == pytest.approx(sum(losses), rel=1e-12)
    assert lines[-1]["lr"] == pytest.approx(cfg.lr * lr_factor(11))


def test_the_meter_reads_nothing_until_asked_and_skips_fp16_overflow():
    meter = StepMeter(torch.device("cpu"), scaler_skips_overflow=True)
    meter.add(torch.tensor(2.0), torch.tensor(math.inf), step=0)  # an overflow the scaler skipped
    meter.add(torch.tensor(4.0), torch.tensor(3.0), step=1)
    assert meter.read(ONE) == {"loss": 3.0, "grad_norm": 3.0, "skipped": 1}
    meter.add(torch.tensor(math.nan), torch.tensor(1.0), step=2)  # a non-finite loss is never an overflow
    with pytest.raises(TrainingError, match="at step 3 "):
        meter.check(ONE)
    plain = StepMeter(torch.device("cpu"), scaler_skips_overflow=False)
    plain.add(torch.tensor(1.0), torch.tensor(math.inf), step=6)
    with pytest.raises(TrainingError, match="at step 7 "):
        plain.check(ONE)


METER_RANKS = """
import math, sys, torch
from maize_ddp import distributed
from maize_ddp.training_state import StepMeter, TrainingError
d = distributed.init("cpu")
meter = StepMeter(torch.device("cpu"), scaler_skips_overflow=False)
for step in range(4):  # rank 1's loss alone goes non-finite at step 2; the norms agree (DDP)
    bad = d.rank == 1 and step >= 2
    meter.add(torch.tensor(math.inf if bad else 1.0), torch.tensor(1.0), step)
try:
    meter.check(d)
    said = "went on"
except TrainingError as e:
    said = str(e)
sys.stdout.write(f"rank {d.rank}: {said}\\n")  # one write: the ranks share the pipe
sys.stdout.flush()
distributed.shutdown(d)
"""


def test_every_rank_takes_the_same_decision(tmp_path):
    script = tmp_path / "meter_ranks.py"
    script.write_text(METER_RANKS)
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                          str(script)], env=ENV, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = sorted(line for line in res.stdout.splitlines() if line.startswith("rank "))
    assert len(lines) == 2 and all("non-finite loss or gradients at step 3 " in x for x in lines), res.stdout


def test_steps_jsonl_keeps_the_lines_up_to_the_resumed_step(tmp_path):
    path = tmp_path / "steps.jsonl"
    path.write_text("".join(json.dumps({"step": s}) + "\n" for s in (5, 10, 15)) + '{"step": 2')  # cut short
    train.keep_lines_to(path, 10)
    assert path.read_text() == '{"step": 5}\n{"step": 10}\n'
    train.keep_lines_to(path, None)  # a fresh run starts its own
    assert not path.exists()


def test_amp_auto_is_fp32_on_gpu_and_cpu():
    from maize_ddp.inference import resolve_amp

    assert resolve_amp("auto", torch.device("cuda", 0)) == "off"
    assert resolve_amp("auto", torch.device("cpu")) == "off"
    assert resolve_amp("bf16", torch.device("cuda", 0)) == "bf16"


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    from convert import npz_to_zarr

    root = tmp_path_factory.mktemp("tiny")
    synth.generate(root / "npz", train=256, val=32, test=32, seq_len=64, shard_size=128)
    npz_to_zarr.convert(root / "npz", root / "data.zarr")
    return root / "data.zarr"


def run_trainer(store, out, *flags):
    return subprocess.run([sys.executable, "-m", "maize_ddp.train", "--data", str(store), "--out", str(out),
                           "--epochs", "1", "--batch-size", "16", "--warmup-steps", "2", "--log-every", "4",
                           "--bn-recalibration-batches", "2", "--device", "cpu", *TINY, *flags],
                          env=ENV, capture_output=True, text=True, timeout=300)


def test_compiled_training_matches_eager(tiny_store, tmp_path):
    """torch.compile (inductor's C++ kernels on CPU) against eager: the same losses step by step
    within float32 reordering, and checkpoints with the eager module's keys."""
    runs = {}
    for name, flags in (("eager", []), ("compiled", ["--compile"])):
        res = run_trainer(tiny_store, tmp_path / name, *flags)
        assert res.returncode == 0, res.stderr[-3000:]
        runs[name] = [json.loads(x) for x in (tmp_path / name / "steps.jsonl").read_text().splitlines()]
    assert [x["step"] for x in runs["compiled"]] == [x["step"] for x in runs["eager"]] == [4, 8, 12, 16]
    eager, compiled = ([x[key] for x in runs[name] for key in ("loss", "grad_norm")] for name in ("eager", "compiled"))
    assert compiled == pytest.approx(eager, rel=2e-3)
    for name in ("last.pt", "best.pt"):
        a, b = (torch.load(tmp_path / run / "checkpoints" / name, weights_only=False) for run in ("eager", "compiled"))
        assert list(a["model"]) == list(b["model"]) and not any("_orig_mod" in k for k in b["model"])
        assert b["store"]["sha256"] == a["store"]["sha256"] is not None  # best.pt names its store too
        assert b["store"].get("origin") == getattr(open_store(tiny_store).meta, "origin", None)


def test_tensorboard_is_optional(tiny_store, tmp_path):
    res = run_trainer(tiny_store, tmp_path / "tb", "--tensorboard")
    if importlib.util.find_spec("tensorboard") is None:
        assert res.returncode == 2 and res.stderr == ("error: --tensorboard needs the tensorboard package (pip "
                                                      "install tensorboard), which is not installed\n")
        assert not (tmp_path / "tb").exists()
    else:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        assert res.returncode == 0, res.stderr[-3000:]
        events = EventAccumulator(str(tmp_path / "tb" / "tensorboard")).Reload()
        scalars = {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
        steps = [json.loads(x) for x in (tmp_path / "tb" / "steps.jsonl").read_text().splitlines()]
        assert scalars["train/loss"] == [(x["step"], pytest.approx(x["loss"])) for x in steps]
        epochs = [json.loads(x) for x in (tmp_path / "tb" / "metrics.jsonl").read_text().splitlines()]
        assert scalars["val/pearson"] == [(x["step"], pytest.approx(x["val_pearson"])) for x in epochs]
        # the test report too, at the last step: the numbers of test_metrics.json
        report = json.loads((tmp_path / "tb" / "test_metrics.json").read_text())
        for key in ("pearson", "spearman", "r2", "mse"):
            assert scalars[f"test/{key}"] == [(steps[-1]["step"], pytest.approx(report[key]))]
