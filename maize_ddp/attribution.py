"""Attribution scores of a trained model: saturation in-silico mutagenesis and gradient x input.

Both return float32 scores [B, 4, L] for one target:

- ism:      scores[b, k, l] = f(sequence b with base k at l) - f(sequence b); 0 at the reference
            base and at N positions (the spacer is not mutated: it carries no sequence).
- saliency: the gradient of f with respect to the one-hot input, times the input, so only the
            reference base of each position is non-zero (N columns are all zero).

`importance` folds either into one number per position, "the attribution at the reference base":
saliency's non-zero entry, and for ISM minus the mean effect of the 3 substitutions (a base whose
every substitution lowers the prediction is important for it, so its importance is positive).

f is the run's inference.Predictor: its precision and, when the run averaged a sequence with its
reverse complement, that average, so scores explain exactly the prediction the run reports.
"""
from __future__ import annotations

import numpy as np
import torch

from maize_ddp import fast_ism
from maize_ddp.codes import reverse_complement
from maize_ddp.inference import Predictor, autocast
from maize_ddp.models import one_hot

METHODS = ("ism", "saliency")


def ism_batch(device: torch.device) -> int:
    """Mutants per forward pass when not told: a GPU wants large batches. On one CPU thread 128
    suits both paths: full passes of 170-bp promoters took 0.6-0.7x the time of 1024, and fast
    ISM runs within 15 % of its best batch (256-512) at 170 and 3,020 bp."""
    return 512 if device.type == "cuda" else 128


# Sequences whose activations are cached at a time by the fast path: bounded memory (~22 MB at 3 kb
# with reverse complements), many mutant batches per cache.
CACHED_SEQUENCES = 64


@torch.no_grad()
def ism(predictor: Predictor, codes: torch.Tensor, target: int = 0, batch_size: int | None = None,
        weights: torch.Tensor | None = None) -> torch.Tensor:
    """Saturation mutagenesis of codes [B, L] (uint8, on the model's device): every non-N position
    x the 3 other bases, batched across positions and sequences; each reference predicted once.
    The score is target `target`'s prediction, or with `weights` [T] the weighted sum of targets.

    A BasenjiModel's mutants are computed only where a substitution can change its activations
    (maize_ddp.fast_ism: equal to full passes up to float rounding); any other model's in full."""
    predictor.model.eval()
    codes = codes.to(predictor.device)
    batch_size = batch_size or ism_batch(codes.device)
    device = codes.device

    def score(pred: torch.Tensor) -> torch.Tensor:
        return pred[:, target] if weights is None else (pred * weights.to(pred.device)).sum(-1)

    b, length = codes.shape
    scores = torch.zeros(b, 4, length, dtype=torch.float32, device=device)
    for first in range(0, b, CACHED_SEQUENCES):
        group = codes[first:first + CACHED_SEQUENCES]
        mutants = MutantPredictor(predictor, group)
        ref = torch.cat([score(predictor(group[i:i + batch_size])) for i in range(0, len(group), batch_size)])
        # Every mutant as (sequence, position, alternative base): 3 per non-N position.
        seq, pos = torch.nonzero(group < 4, as_tuple=True)
        alt = (group[seq, pos].long()[:, None] + torch.arange(1, 4, device=device)) % 4  # the 3 other bases
        seq, pos, alt = seq.repeat_interleave(3), pos.repeat_interleave(3), alt.reshape(-1)
        for start in range(0, len(seq), batch_size):
            s, p, a = seq[start:start + batch_size], pos[start:start + batch_size], alt[start:start + batch_size]
            scores[first + s, a, p] = score(mutants(s, p, a)) - ref[s]
    return scores


class MutantPredictor:
    """Float32 predictions [M, T] of single-base mutants (sequence, position, base) of `codes`, as
    inference.forward gives them (the run's precision and reverse-complement averaging)."""

    def __init__(self, predictor: Predictor, codes: torch.Tensor):
        self.predictor, self.codes = predictor, codes
        self.fast = fast_ism.FastISM(predictor.model) if fast_ism.supports(predictor.model) else None
        if self.fast is not None:
            with autocast(codes.device, self.predictor.amp):
                # the reverse complement of a mutant is a mutant of the reverse complement
                self.caches = [self.fast.cache(c) for c in ([codes, reverse_complement(codes)]
                                                            if self.predictor.rc_average else [codes])]

    def __call__(self, seq: torch.Tensor, pos: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        if self.fast is None:
            mutants = self.codes[seq]  # a copy: advanced indexing
            mutants[torch.arange(len(seq), device=seq.device), pos] = base.to(self.codes.dtype)
            return self.predictor(mutants)
        length = self.codes.shape[1]
        with autocast(self.codes.device, self.predictor.amp):
            pred = self.fast.predict(self.caches[0], seq, pos, base).float()
            if self.predictor.rc_average:
                pred = (pred + self.fast.predict(self.caches[1], seq, length - 1 - pos, 3 - base).float()) / 2
        return pred


def saliency(predictor: Predictor, codes: torch.Tensor, target: int = 0) -> torch.Tensor:
    """Gradient x input of codes [B, L]: d f / d one-hot, at the reference bases."""
    model = predictor.model.eval()
    x = one_hot(codes.to(predictor.device)).detach().requires_grad_(True)
    with torch.enable_grad(), autocast(predictor.device, predictor.amp):
        pred = model(x).float()
        if predictor.rc_average:
            # the reverse complement of a one-hot [B, 4, L]: reverse both axes (A<->T, C<->G)
            pred = (pred + model(x.flip(1, 2)).float()) / 2
        (grad,) = torch.autograd.grad(pred[:, target].sum(), x)
    return (grad * x).detach().float()


def compute(method: str, predictor: Predictor, codes, target=0, batch_size=None) -> torch.Tensor:
    if method == "ism":
        return ism(predictor, codes, target, batch_size)
    if method == "saliency":
        return saliency(predictor, codes, target)
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
