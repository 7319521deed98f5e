"""Inference with a trained run, in one home: build its model from a checkpoint, and predict as
the run did (its precision, its reverse-complement averaging, the length rule of its table).

evaluate, predict, interpret, motifs, design, variants and maize_ddp.Run all predict through
`forward`, so a number is the same whichever of them reports it.
"""
from __future__ import annotations

import sys

import numpy as np
import torch

from maize_ddp import checkpoint, errors, models
from maize_ddp.codes import reverse_complement


def task_of(state: dict) -> str:
    """A checkpoint's task; runs from before classification existed are regression."""
    return state.get("config", {}).get("task", "regression")



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



def trained_align(state: dict) -> str | None:
    """How the run's training sequences were fitted to length (convert.table_to_npz --align),
    when its store recorded it: predictions then see sequences fitted the same way."""
    origin = (state.get("store") or {}).get("origin") or {}
    return (origin.get("settings") or {}).get("align")

