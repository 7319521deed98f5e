"""Inference with a trained run, in one home: build its model from a checkpoint, and predict as
the run did (its precision, its reverse-complement averaging, the length rule of its table).

evaluate, predict, interpret, motifs, design, variants and maize_ddp.Run all predict through one
`Predictor` (model, device, precision, RC averaging) and its one batching loop, so a number is
the same whichever of them reports it.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Iterable, Iterator, TypeVar

import numpy as np
import torch

from maize_ddp import checkpoint, errors, models
from maize_ddp.codes import reverse_complement


def task_of(state: dict) -> str:
    """A checkpoint's task; runs from before classification existed are regression."""
    return state.get("config", {}).get("task", "regression")



def target_columns(kind: str, origin: dict | None, num_targets: int) -> list[str]:
    """A predictions table's columns of one kind (true, predicted, probability): `kind` for one
    target, else kind_NAME for each, NAME as the dataset recorded it (true_leaf), else its index."""
    from maize_ddp.origin import target_names

    if num_targets == 1:
        return [kind]
    return [f"{kind}_{name}" for name in target_names(origin, num_targets, unnamed="{}")]


def output_name(task: str) -> str:
    """The predictions column: a regression's value, a classification's probability of class 1."""
    return "probability" if task == "classification" else "predicted"



def probabilities(logits: np.ndarray) -> np.ndarray:
    """float32 sigmoid, as torch computes it: the probabilities written are those scored."""
    return torch.sigmoid(torch.from_numpy(np.ascontiguousarray(logits, dtype=np.float32))).numpy()



def resolve_amp(amp: str, device: torch.device) -> str:
    """`auto` is fp32 (off) on GPUs and CPUs alike. On an H200, bf16 autocast was no faster than
    fp32 for this model (TF32 convolutions, small layers: launch-bound, not math-bound), only
    half the activation memory; on CPUs without bf16 units autocast emulates it and runs several
    times slower. Ask for --amp bf16 when memory is what limits the batch (docs/gpu.md)."""
    if amp not in ("auto", "off", "bf16", "fp16"):
        raise errors.ConfigError(f"amp must be auto, off, bf16 or fp16, not {amp!r}")
    if amp == "auto":
        return "off"
    if amp == "fp16" and device.type != "cuda":
        raise errors.ConfigError("--amp fp16 needs a CUDA device; use --amp bf16 or off on CPU")
    return amp



def autocast(device: torch.device, amp: str):
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)



def forward(model, codes: torch.Tensor, amp: str, rc_average: bool) -> torch.Tensor:
    """Float32 predictions; with rc_average, the mean over each sequence and its reverse complement."""
    with autocast(codes.device, amp):
        pred = model(codes).float()
        if rc_average:
            pred = (pred + model(reverse_complement(codes)).float()) / 2
    return pred



Key = TypeVar("Key")


@dataclass(frozen=True)
class Predictor:
    """A model as its run predicts: on `device`, in precision `amp`, averaged over each sequence
    and its reverse complement when `rc_average`. Call it on a batch of uint8 codes [B, L]
    (tensor or numpy) for float32 predictions [B, T] on the device."""
    model: torch.nn.Module
    device: torch.device
    amp: str = "off"
    rc_average: bool = False

    def __post_init__(self):
        object.__setattr__(self, "device", torch.device(self.device))  # "cuda" as well as a torch.device

    @classmethod
    def of_checkpoint(cls, state: dict, device, where="checkpoint", trust_code: bool = False, amp=None,
                      rc_average=None) -> "Predictor":
        """The checkpoint's model in eval mode, with the run's precision and RC averaging unless
        `amp` / `rc_average` say otherwise."""
        model = model_from_checkpoint(state, device, where, trust_code).eval()
        return cls(model, device, *run_settings(state, amp, rc_average, device))

    @torch.no_grad()
    def __call__(self, codes) -> torch.Tensor:
        if isinstance(codes, np.ndarray):
            codes = torch.from_numpy(np.ascontiguousarray(codes))
        return forward(self.model, codes.to(self.device, non_blocking=True), self.amp, self.rc_average)

    def batches(self, batches: Iterable[tuple[Key, object]]) -> Iterator[tuple[Key, np.ndarray]]:
        """The batching loop: (key, codes) in, (key, float32 predictions [B, T] on the host) out."""
        self.model.eval()
        for key, codes in batches:
            yield key, self(codes).cpu().numpy()

    def array(self, codes: np.ndarray, batch_size: int) -> np.ndarray:
        """Predictions [N, T] of codes [N, L] held in memory, `batch_size` rows a pass."""
        out = [pred for _, pred in self.batches((None, codes[i:i + batch_size])
                                                for i in range(0, len(codes), batch_size))]
        return np.concatenate(out) if out else np.empty((0, 0), np.float32)

    def with_settings(self, amp: str | None = None, rc_average: bool | None = None) -> "Predictor":
        """The same model with another precision or RC averaging (None keeps the current one)."""
        return Predictor(self.model, self.device, self.amp if amp is None else resolve_amp(amp, self.device),
                         self.rc_average if rc_average is None else rc_average)


def run_settings(state: dict, amp, rc_average, device) -> tuple[str, bool]:
    """Precision and RC averaging: as asked, else as the run was trained and reported."""
    trained = state.get("config", {})
    if amp is None and trained.get("amp") == "fp16" and device.type != "cuda":
        # fp16 autocast needs CUDA: the run's half precision cannot be repeated here; say so
        print(f"note: the run was trained with --amp fp16, which needs CUDA; predicting in fp32 on {device.type}",
              file=sys.stderr, flush=True)
        amp = "off"
    amp = resolve_amp(amp or trained.get("amp", "off"), device)
    return amp, trained.get("rc_average", False) if rc_average is None else rc_average



def model_from_checkpoint(state: dict, device, where="checkpoint", trust_code: bool = False):
    """The trained model a checkpoint holds, on `device` (a class outside maize_ddp only when the
    caller trusts the run: maize_ddp.models)."""
    where = checkpoint.checkpoint_file(where)
    try:
        model = models.from_checkpoint_config(state["config"], where, trust_code)
    except (KeyError, TypeError) as e:  # no settings, or ones no model takes
        raise checkpoint.CheckpointError(f"{where}: its model config cannot build a model ({e})") from None
    except errors.ConfigError as e:
        raise checkpoint.CheckpointError(str(e)) from None
    checkpoint.fit_weights(model, state["model"], where)
    return model.to(device)



def recorded_origin(state: dict) -> dict | None:
    """The origin (maize_ddp.origin) of the store a checkpoint was trained on, as it recorded it."""
    return (state.get("store") or {}).get("origin")


def trained_align(state: dict) -> str | None:
    """How the run's training sequences were fitted to length (convert.table_to_npz --align),
    when its store recorded it: predictions then see sequences fitted the same way."""
    origin = recorded_origin(state) or {}
    return (origin.get("settings") or {}).get("align")

