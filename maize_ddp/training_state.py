"""A run's training state, which its checkpoint saves and restores whole.

Model, optimizer and scaler; where the run is in its schedule (epochs finished, batches into the
current one, from which the step follows); the history of epoch metrics and the early-stopping
state; and, per rank, the RNG streams and the running loss sums (a StepMeter, kept on the
device). Every rank holds one; saving gathers each rank's own part, so a resume continues every
rank exactly where it was.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import numpy as np
import torch

from maize_ddp import checkpoint, distributed, errors


class TrainingError(errors.Error, RuntimeError):
    """A run that cannot go on as asked: the message says why and what to do."""


def rng_state() -> dict:
    """Every RNG's state as tensors and plain values only: a checkpoint loads with weights_only=True."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    n = s["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    random.setstate(s["python"])
    if s["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def seed_rank(seed: int, rank: int) -> None:
    """Dropout streams differ by rank; data order comes from (seed, epoch), not from these RNGs."""
    key = seed * 100_003 + rank + 1
    torch.manual_seed(key)
    np.random.seed(key % 2**32)
    random.seed(key)


class StepMeter:
    """Per-step loss and gradient norm, summed on the device and read on the host only when asked
    (every --log-every steps, before a checkpoint, at the epoch's end). A host read waits for the
    device: one every step serialises launching step k+1 behind executing step k.

    Sums, float64: the epoch's loss (this rank's), and for the window since the last read the
    loss, the finite gradient norms and their count, the non-finite steps and the first of them.
    With a GradScaler (fp16) a non-finite gradient norm is an overflow the scaler skips, not a
    failure; a non-finite loss always is."""

    EPOCH_LOSS, LOSS, NORM, NORMS, BAD, FIRST_BAD = range(6)

    def __init__(self, device: torch.device, scaler_skips_overflow: bool):
        self.sums = torch.zeros(6, dtype=torch.float64, device=device)
        self.skips_overflow = scaler_skips_overflow
        self.window_steps = 0  # host count: knowing it needs no read

    def add(self, loss: torch.Tensor, norm: torch.Tensor, step: int) -> None:
        """Fold in one step's (local) loss and (global) gradient norm; queues device work only."""
        loss, norm = loss.detach().double(), norm.detach().double()
        norm_ok = torch.isfinite(norm)
        bad = ~torch.isfinite(loss) if self.skips_overflow else ~(torch.isfinite(loss) & norm_ok)
        first = self.sums[self.BAD] == 0
        self.sums[self.FIRST_BAD] = torch.where(first & bad, float(step), self.sums[self.FIRST_BAD])
        self.sums += torch.stack([loss, loss, torch.where(norm_ok, norm, 0.0), norm_ok.double(), bad.double(),
                                  torch.zeros_like(loss)])
        self.window_steps += 1

    def check(self, d: distributed.Dist) -> float:
        """Raise TrainingError on every rank if any rank met a non-finite step; else return the
        window's loss summed over ranks. All ranks call it at the same step, and the decision is
        all-reduced, so every rank takes it (one small collective, one host read)."""
        loss, bad = distributed.all_reduce_tensor(d, self.sums[[self.LOSS, self.BAD]]).tolist()
        if bad:
            mine = self.sums[self.FIRST_BAD] if self.sums[self.BAD].item() else torch.tensor(math.inf)
            first = distributed.all_reduce_tensor(d, mine.to(self.sums), "min").item()
            steps = max(self.window_steps, 1)
            raise TrainingError(f"non-finite loss or gradients at step {int(first) + 1} (mean loss "
                                f"{loss / (steps * d.world_size):.4g} over the last {steps} steps); "
                                "lower --lr, set --grad-clip, or use --amp off")
        return loss

    def read(self, d: distributed.Dist) -> dict:
        """The window's mean loss (over ranks) and gradient norm, checked; starts a new window."""
        loss = self.check(d)
        local = self.sums.tolist()
        steps = max(self.window_steps, 1)
        row = {"loss": loss / (steps * d.world_size),
               "grad_norm": local[self.NORM] / local[self.NORMS] if local[self.NORMS] else None,
               "skipped": self.window_steps - int(local[self.NORMS])}
        self.sums[self.LOSS:] = 0
        self.window_steps = 0
        return row

    def epoch_loss(self) -> float:
        return self.sums[self.EPOCH_LOSS].item()

    def state(self) -> dict:
        return {"sums": self.sums.tolist(), "window_steps": self.window_steps}

    def load(self, saved: dict) -> None:
        self.sums.copy_(torch.tensor(saved["sums"], dtype=torch.float64))
        self.window_steps = saved["window_steps"]

    def new_epoch(self) -> None:
        self.sums[self.EPOCH_LOSS] = 0


@dataclass
class TrainingState:
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    steps_per_epoch: int
    epoch: int = 0  # epochs finished
    batch: int = 0  # batches done in the epoch under way
    history: list = field(default_factory=list)  # one metrics row per finished epoch
    best_score: float = -math.inf  # the best validation score: Pearson r, or auROC for classification
    stale_epochs: int = 0  # epochs since the validation score last improved
    meter: StepMeter | None = None  # this rank's loss sums, on the device

    def __post_init__(self):
        if self.meter is None:
            device = next(self.model.parameters()).device
            self.meter = StepMeter(device, scaler_skips_overflow=self.scaler is not None)

    @property
    def step(self) -> int:
        """Optimizer steps taken, in this run's schedule (the learning rate is a function of it)."""
        return self.epoch * self.steps_per_epoch + self.batch

    def took_step(self, loss: torch.Tensor, norm: torch.Tensor) -> None:
        self.meter.add(loss, norm, self.step)
        self.batch += 1

    @property
    def epoch_loss(self) -> list:
        """This rank's loss sum and batches in the epoch under way (a host read)."""
        return [self.meter.epoch_loss(), self.batch]

    def end_epoch(self, row: dict, val_score: float) -> bool:
        """Record a finished epoch's metrics; return whether the validation score improved."""
        self.history.append(row)
        self.epoch, self.batch = self.epoch + 1, 0
        self.meter.new_epoch()
        improved = not math.isnan(val_score) and val_score > self.best_score
        self.best_score, self.stale_epochs = ((val_score, 0) if improved else
                                              (self.best_score, self.stale_epochs + 1))
        return improved

    def stopped_early(self, patience: int) -> bool:
        return bool(patience) and self.stale_epochs >= patience

    def to_checkpoint(self, d: distributed.Dist, **extra) -> dict | None:
        """All ranks call this (each gives its RNG and loss sums); rank 0 gets the checkpoint."""
        ranks = distributed.all_gather_objects(d, {"rng": rng_state(), "epoch_loss": self.epoch_loss,
                                                   "meter": self.meter.state()})
        if not d.is_main:
            return None
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler else None,
                "epoch": self.epoch, "batch": self.batch, "history": self.history,
                "best_score": self.best_score, "stale_epochs": self.stale_epochs, "ranks": ranks, **extra}

    def restore(self, saved: dict, d: distributed.Dist, where) -> None:
        """Continue from a checkpoint. A mid-epoch one holds each rank's data position, so it
        needs the world size that wrote it; an end-of-epoch one resumes with any."""
        if saved["batch"] and len(saved["ranks"]) != d.world_size:
            raise TrainingError(f"{where} was written mid-epoch by {len(saved['ranks'])} ranks; resume it with "
                                f"the same world size (now {d.world_size}), or from an end-of-epoch checkpoint")
        checkpoint.fit_weights(self.model, saved["model"], where)
        # the implementation (fused on CUDA, foreach) is this run's choice, not the checkpoint's
        chosen = [{k: g[k] for k in ("fused", "foreach") if k in g} for g in self.optimizer.param_groups]
        self.optimizer.load_state_dict(saved["optimizer"])
        for group, keep in zip(self.optimizer.param_groups, chosen):
            group.update(keep)
        if self.scaler is not None and saved.get("scaler"):
            self.scaler.load_state_dict(saved["scaler"])
        self.epoch, self.batch, self.history = saved["epoch"], saved["batch"], saved["history"]
        # "best_pearson": the key before classification runs, whose best score is an auROC
        self.best_score = saved["best_score"] if "best_score" in saved else saved["best_pearson"]
        self.stale_epochs = saved["stale_epochs"]
        if len(saved["ranks"]) == d.world_size:
            mine = saved["ranks"][d.rank]
            set_rng_state(mine["rng"])
            if "meter" in mine:
                self.meter.load(mine["meter"])
            else:  # a checkpoint from before the meter: its loss sum only
                self.meter.load({"sums": [mine["epoch_loss"][0], 0, 0, 0, 0, 0], "window_steps": 0})
