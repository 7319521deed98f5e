"""Saturation ISM side by side with tangermeme, on the same model, inputs, device and threads.

    pip install tangermeme   # the reference; not a maize_ddp dependency
    python benchmarks/bench_ism.py [--sequences 64] [--threads 1] [--repeats 3] > benchmarks/results/ism.md

Two models, untrained but with BatchNorm statistics away from the identity (speed does not depend
on the weights): the core-promoter preset at 170 bp (Jores et al. 2021 promoters) and the default
gene-window model at 3,020 bp. Each row times one whole call on the same sequences (random bases,
seed 0), best of --repeats, in one process, so the ratios compare like with like on a shared
machine. Before timing, each tangermeme mode's substitution effects are checked against
maize_ddp's to 1e-5.

tangermeme 1.6's own fast path (fastISM through torch.export) is tried only for jobs it predicts
to take 30 s or more; "fast, forced" lowers that threshold to 0 so its fastest mode runs on every
size (its capture and check are part of the call, as in a user's).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from maize_ddp import attribution
from maize_ddp.inference import Predictor
from maize_ddp.model import BasenjiModel

MODELS = {
    "core_promoter, 170 bp": dict(seq_len=170, pool1ks=4, pool2ks=2, pool3ks=2, convdc=3),
    "default, 3,020 bp": dict(seq_len=3020),
}


class FullPasses(BasenjiModel):
    """The same model with a forward of its own: maize_ddp scores it with full forward passes."""

    def forward(self, x):
        return super().forward(x)


def model_of(cls, geometry: dict) -> BasenjiModel:
    torch.manual_seed(0)
    model = cls(**geometry)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 2)
    return model.eval()


def best_of(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def tangermeme_ism(model, one_hot: torch.Tensor, batch_size: int, fast: bool, forced: bool):
    """tangermeme's substitution effects [N, 4, L] (each edit's prediction minus the reference's),
    and whether its fast path ran (it falls back, with a warning, where it finds itself slower)."""
    import warnings

    from tangermeme import saturation_mutagenesis as sm

    threshold = sm._FAST_MIN_SECONDS
    sm._FAST_MIN_SECONDS = 0.0 if forced else threshold
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", sm.TangermemeWarning)
            y0, y_hat = sm.saturation_mutagenesis(model, one_hot, batch_size=batch_size, raw_outputs=True,
                                                  fast=fast, device="cpu")
    finally:
        sm._FAST_MIN_SECONDS = threshold
    fell_back = any("fast=False" in str(w.message) for w in caught)
    return (y_hat[..., 0] - y0[:, None, None, 0]).float(), fast and not fell_back


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sequences", type=int, default=64, help="sequences at 170 bp (default 64; 1/32 as many at 3,020 bp)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    p.add_argument("--repeats", type=int, default=3, help="calls timed per row; the best counts (default 3)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    import tangermeme

    print(f"CPU, {torch.get_num_threads()} thread(s), torch {torch.__version__}, tangermeme {tangermeme.__version__}, "
          f"best of {a.repeats}\n")
    print("| model | sequences | tool, mode | batch | seconds | sequences/s | maize_ddp fast ISM is |")
    print("|---|---|---|---|---|---|---|")
    summary = []
    for name, geometry in MODELS.items():
        n = a.sequences if geometry["seq_len"] < 1000 else max(1, a.sequences // 32)
        rng = np.random.default_rng(0)
        codes = torch.from_numpy(rng.integers(0, 4, (n, geometry["seq_len"]), dtype=np.uint8))
        one_hot = torch.nn.functional.one_hot(codes.long(), 4).transpose(1, 2).float()
        model, full = model_of(BasenjiModel, geometry), model_of(FullPasses, geometry)
        batch = attribution.ism_batch(torch.device("cpu"))
        ours, want = best_of(lambda: attribution.ism(Predictor(model, "cpu"), codes, batch_size=batch), a.repeats)
        rows = [("maize_ddp, fast ISM (default)", batch, ours)]
        rows.append(("maize_ddp, full passes", batch, best_of(lambda: attribution.ism(Predictor(full, "cpu"), codes, batch_size=batch), 1)[0]))
        for mode, fast, forced, sizes in (("tangermeme, full passes", False, False, (32, 128, 512)),
                                          ("tangermeme, fast, forced", True, True, (32, 128, 512))):
            for size in sizes:
                seconds, (got, ran_fast) = best_of(lambda: tangermeme_ism(model, one_hot, size, fast, forced),
                                                   a.repeats)
                torch.testing.assert_close(got, want, rtol=0, atol=1e-5)  # the same numbers, or no row
                fell_back = " (fell back: its check found fast slower)" if fast and not ran_fast else ""
                rows.append((mode + fell_back, size, seconds))
        for tool, size, seconds in rows:
            print(f"| {name} | {n} | {tool} | {size} | {seconds:.3f} | {n / seconds:.3g} | {seconds / ours:.2f}x |",
                  flush=True)
        fastest = min(seconds for tool, _, seconds in rows if tool.startswith("tangermeme"))
        summary.append(f"- {name}: maize_ddp's fast ISM takes {ours / n:.3g} s a sequence, **{fastest / ours:.2f}x** "
                       f"the speed of tangermeme's fastest row and {rows[1][2] / ours:.2f}x that of full passes")
    print("\n" + "\n".join(summary))


if __name__ == "__main__":
    main()
