"""Attribution throughput: sequences/s of saturation ISM and of gradient x input.

    python benchmarks/bench_interpret.py [--device auto] [--threads 1] [--seq-lens 300,3020] [--batch-sizes 256,1024]

For the default BasenjiModel at 3020 bp (the genome window) and the demo's at 300 bp, untrained
weights (speed does not depend on them), fp32: maize_ddp.attribution.ism at a few mutant batch
sizes, and saliency. ISM runs 3 x L forward passes a sequence (9060 at 3020 bp). Prints a
Markdown table for benchmarks/results/interpret.md.
"""
from __future__ import annotations

import argparse
import time

import torch

from maize_ddp import attribution
from maize_ddp.inference import Predictor
from maize_ddp.model import BasenjiModel


def timed(fn, repeats=1) -> float:
    fn()  # warm-up: allocator, kernels
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def rate(per_s: float) -> str:
    return f"{per_s:,.0f}" if per_s >= 100 else f"{per_s:.3g}"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="auto", help="auto (cuda when available) | cpu | cuda")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    p.add_argument("--seq-lens", default="300,3020", help="comma-separated sequence lengths (default 300,3020)")
    p.add_argument("--batch-sizes", default="256,1024", help="comma-separated ISM mutant batch sizes (default 256,1024)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    device = torch.device("cuda" if a.device == "auto" and torch.cuda.is_available() else
                          "cpu" if a.device == "auto" else a.device)
    print(f"device {device}, {torch.get_num_threads()} thread(s), torch {torch.__version__}\n")
    print("| model | seq_len | method | mutants per pass | sequences per call | seconds per sequence | sequences/s |")
    print("|---|---|---|---|---|---|---|")
    for seq_len in (int(n) for n in a.seq_lens.split(",")):
        name, seqs = ("default", 1) if seq_len >= 1000 else ("default (short)", 2)
        torch.manual_seed(0)
        model = BasenjiModel(seq_len=seq_len).to(device).eval()
        codes = torch.randint(0, 4, (seqs, seq_len), dtype=torch.uint8, device=device)
        for batch in (int(b) for b in a.batch_sizes.split(",")):
            s = timed(lambda: attribution.ism(Predictor(model, device), codes, batch_size=batch)) / seqs
            print(f"| {name} | {seq_len} | ism | {batch} | {seqs} | {s:.2f} | {rate(1 / s)} |", flush=True)
        many = torch.randint(0, 4, (32, seq_len), dtype=torch.uint8, device=device)
        s = timed(lambda: attribution.saliency(Predictor(model, device), many), repeats=3) / len(many)
        print(f"| {name} | {seq_len} | saliency | - | 32 | {s:.4f} | {rate(1 / s)} |", flush=True)


if __name__ == "__main__":
    main()
