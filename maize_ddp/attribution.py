"""Attribution scores of a trained model: saturation in-silico mutagenesis and gradient x input.

Both return float32 scores [B, 4, L] for one target:

- ism:      scores[b, k, l] = f(sequence b with base k at l) - f(sequence b); 0 at the reference
            base and at N positions (the spacer is not mutated: it carries no sequence).
- saliency: the gradient of f with respect to the one-hot input, times the input, so only the
            reference base of each position is non-zero (N columns are all zero).

`importance` folds either into one number per position, "the attribution at the reference base":
saliency's non-zero entry, and for ISM minus the mean effect of the 3 substitutions (a base whose
every substitution lowers the prediction is important for it, so its importance is positive).

f is inference.forward: the run's precision and, when the run averaged a sequence with its reverse
complement, that average, so scores explain exactly the prediction the run reports.
"""
from __future__ import annotations

import numpy as np
import torch

from maize_ddp.inference import autocast, forward
from maize_ddp.models import one_hot

METHODS = ("ism", "saliency")


def ism_batch(device: torch.device) -> int:
    """Mutants per forward pass when not told: a GPU wants large batches; a CPU core runs small
    ones faster (170-bp promoters, one thread: 128 took 0.6-0.7x the time of 1024)."""
    return 512 if device.type == "cuda" else 128


@torch.no_grad()
def ism(model, codes: torch.Tensor, amp: str = "off", rc_average: bool = False, target: int = 0,
        batch_size: int | None = None) -> torch.Tensor:
    """Saturation mutagenesis of codes [B, L] (uint8, on the model's device): every non-N position
    x the 3 other bases, batched across positions and sequences; each reference predicted once."""
    model.eval()
    batch_size = batch_size or ism_batch(codes.device)
    b, length = codes.shape
    device = codes.device
    ref = torch.cat([forward(model, codes[i:i + batch_size], amp, rc_average)[:, target]
                     for i in range(0, b, batch_size)]) if b else torch.zeros(0, device=codes.device)
    scores = torch.zeros(b, 4, length, dtype=torch.float32, device=device)
    # Every mutant as (sequence, position, alternative base): 3 per non-N position.
    seq, pos = torch.nonzero(codes < 4, as_tuple=True)
    ref_base = codes[seq, pos].long()
    shift = torch.arange(1, 4, device=device)
    alt = (ref_base[:, None] + shift) % 4  # the 3 other bases
    seq, pos, alt = seq.repeat_interleave(3), pos.repeat_interleave(3), alt.reshape(-1)
    for start in range(0, len(seq), batch_size):
        s, p, a = seq[start:start + batch_size], pos[start:start + batch_size], alt[start:start + batch_size]
        mutants = codes[s]  # a copy: advanced indexing
        mutants[torch.arange(len(s), device=device), p] = a.to(codes.dtype)
        scores[s, a, p] = forward(model, mutants, amp, rc_average)[:, target] - ref[s]
    return scores


def saliency(model, codes: torch.Tensor, amp: str = "off", rc_average: bool = False,
             target: int = 0) -> torch.Tensor:
    """Gradient x input of codes [B, L]: d f / d one-hot, at the reference bases."""
    model.eval()
    x = one_hot(codes).detach().requires_grad_(True)
    with torch.enable_grad(), autocast(codes.device, amp):
        pred = model(x).float()
        if rc_average:
            # the reverse complement of a one-hot [B, 4, L]: reverse both axes (A<->T, C<->G)
            pred = (pred + model(x.flip(1, 2)).float()) / 2
        (grad,) = torch.autograd.grad(pred[:, target].sum(), x)
    return (grad * x).detach().float()


def compute(method: str, model, codes, amp="off", rc_average=False, target=0, batch_size=None) -> torch.Tensor:
    if method == "ism":
        return ism(model, codes, amp, rc_average, target, batch_size)
    if method == "saliency":
        return saliency(model, codes, amp, rc_average, target)
    raise ValueError(f"unknown attribution method {method!r} (choose from {', '.join(METHODS)})")


def importance(method: str, scores: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """One number per position [B, L]: the attribution at the reference base (see module doc)."""
    if method == "ism":
        return -scores.sum(axis=1) / 3  # the reference entry is 0: the sum is over the 3 substitutions
    return scores.sum(axis=1)  # gradient x input is 0 away from the reference base


def top_windows(values: np.ndarray, width: int, count: int) -> list[tuple[int, int, float]]:
    """The `count` non-overlapping windows of `width` positions with the largest sum of |values|,
    best first, as (start, end, signed sum); greedy, which is exact for picking the best first."""
    length = len(values)
    width = max(1, min(width, length))
    sums = np.convolve(np.abs(values), np.ones(width), mode="valid")  # [L - width + 1]
    signed = np.convolve(values, np.ones(width), mode="valid")
    taken = np.zeros(len(sums), dtype=bool)
    windows = []
    for start in np.argsort(-sums, kind="stable"):
        if len(windows) == count:
            break
        if taken[start]:
            continue
        windows.append((int(start), int(start) + width, float(signed[start])))
        taken[max(0, start - width + 1):start + width] = True  # any window overlapping this one
    return windows
