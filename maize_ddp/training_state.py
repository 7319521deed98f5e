"""A run's training state, which its checkpoint saves and restores whole.

Model, optimizer and scaler; where the run is in its schedule (epochs finished, batches into the
current one, from which the step follows); the history of epoch metrics and the early-stopping
state; and, per rank, the RNG streams and the running loss sums. Every rank holds one; saving
gathers each rank's own part, so a resume continues every rank exactly where it was.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import numpy as np
import torch

from maize_ddp import distributed, errors


class TrainingError(errors.Error, RuntimeError):
    """A run that cannot go on as asked: the message says why and what to do."""


def rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    np.random.set_state(s["numpy"])
    random.setstate(s["python"])
    if s["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def seed_rank(seed: int, rank: int) -> None:
    """Dropout streams differ by rank; data order comes from (seed, epoch), not from these RNGs."""
    key = seed * 100_003 + rank + 1
    torch.manual_seed(key)
    np.random.seed(key % 2**32)
    random.seed(key)


@dataclass
class TrainingState:
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    steps_per_epoch: int
    epoch: int = 0  # epochs finished
    batch: int = 0  # batches done in the epoch under way
    history: list = field(default_factory=list)  # one metrics row per finished epoch
    best_pearson: float = -math.inf
    stale_epochs: int = 0  # epochs since validation Pearson last improved
    epoch_loss: list = field(default_factory=lambda: [0.0, 0])  # this rank's loss sum and batches, this epoch

    @property
    def step(self) -> int:
        """Optimizer steps taken, in this run's schedule (the learning rate is a function of it)."""
        return self.epoch * self.steps_per_epoch + self.batch

    def took_step(self, loss: float) -> None:
        self.batch += 1
        self.epoch_loss[0] += loss
        self.epoch_loss[1] += 1

    def end_epoch(self, row: dict, val_pearson: float) -> bool:
        """Record a finished epoch's metrics; return whether validation improved."""
        self.history.append(row)
        self.epoch, self.batch, self.epoch_loss = self.epoch + 1, 0, [0.0, 0]
        improved = not math.isnan(val_pearson) and val_pearson > self.best_pearson
        self.best_pearson, self.stale_epochs = ((val_pearson, 0) if improved else
                                                (self.best_pearson, self.stale_epochs + 1))
        return improved

    def stopped_early(self, patience: int) -> bool:
        return bool(patience) and self.stale_epochs >= patience

    def to_checkpoint(self, d: distributed.Dist, **extra) -> dict | None:
        """All ranks call this (each gives its RNG and loss sums); rank 0 gets the checkpoint."""
        ranks = distributed.all_gather_objects(d, {"rng": rng_state(), "epoch_loss": list(self.epoch_loss)})
        if not d.is_main:
            return None
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler else None,
                "epoch": self.epoch, "batch": self.batch, "history": self.history,
                "best_pearson": self.best_pearson, "stale_epochs": self.stale_epochs, "ranks": ranks, **extra}

    def restore(self, saved: dict, d: distributed.Dist, where) -> None:
        """Continue from a checkpoint. A mid-epoch one holds each rank's data position, so it
        needs the world size that wrote it; an end-of-epoch one resumes with any."""
        if saved["batch"] and len(saved["ranks"]) != d.world_size:
            raise TrainingError(f"{where} was written mid-epoch by {len(saved['ranks'])} ranks; resume it with "
                                f"the same world size (now {d.world_size}), or from an end-of-epoch checkpoint")
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        if self.scaler is not None and saved.get("scaler"):
            self.scaler.load_state_dict(saved["scaler"])
        self.epoch, self.batch, self.history = saved["epoch"], saved["batch"], saved["history"]
        self.best_pearson, self.stale_epochs = saved["best_pearson"], saved["stale_epochs"]
        if len(saved["ranks"]) == d.world_size:
            set_rng_state(saved["ranks"][d.rank]["rng"])
            self.epoch_loss = list(saved["ranks"][d.rank]["epoch_loss"])
