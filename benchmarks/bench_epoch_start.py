"""What reading ahead saves at the start of a run and of an epoch (BatchLoader.read_ahead).

    python benchmarks/bench_epoch_start.py [--rows 8192] [--seq-len 3020] [--batch-size 256] [--workers 2]

A run with DataLoader workers has two fixed costs that a fast step (a GPU, or the tiny model used
here) cannot hide: the workers' start (spawned processes importing torch and zarr) before the
first batch, and the first windows of every epoch (a window is ~32 chunks, read whole before its
first batch). The trainer reads ahead: epoch 1 while the model is built, epoch 2 during epoch 1's
validation. This runs bench_gpu.py's trainer loop (the trainer's own loader, build, train_epoch
and validate) with and without reading ahead, each case in a fresh process (so that the start-up
is a real one), the cases alternating, and reports the medians of the timed training epochs
(validation is outside them, as in metrics.jsonl) side by side.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_gpu import TINY, make_store, trainer


def one_case(store: Path, read_ahead: bool, batch: int, workers: int) -> dict:
    import torch

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="case_"))
    epochs, _ = trainer(store, work, torch.device("cpu"), "off", batch, False, TINY, workers, read_ahead=read_ahead)
    return {"seconds": [s for s, _ in epochs], "samples": epochs[0][1]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=8192)
    p.add_argument("--seq-len", type=int, default=3020)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--work", type=Path, default=None, help="folder for the store (default: a temp folder)")
    p.add_argument("--case", choices=["ahead", "plain"], help=argparse.SUPPRESS)  # one case, in a child
    p.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.case:
        print(json.dumps(one_case(a.store, a.case == "ahead", a.batch_size, a.workers)))
        return 0
    work = a.work or Path(tempfile.mkdtemp(prefix="bench_epoch_start_"))
    work.mkdir(parents=True, exist_ok=True)
    store = make_store(work, a.rows, a.seq_len)
    runs = {"plain": [], "ahead": []}
    for _ in range(a.repeats):
        for case in runs:
            res = subprocess.run([sys.executable, __file__, "--case", case, "--store", str(store), "--batch-size",
                                  str(a.batch_size), "--workers", str(a.workers)], capture_output=True, text=True)
            if res.returncode != 0:
                sys.exit(f"the {case} case failed:\n{res.stderr[-3000:]}")
            runs[case].append(json.loads(res.stdout.strip().splitlines()[-1]))
    samples = runs["plain"][0]["samples"]
    first = {c: statistics.median(r["seconds"][0] for r in runs[c]) for c in runs}
    steady = {c: statistics.median(r["seconds"][1] for r in runs[c]) for c in runs}
    print(f"## Epoch starts: {a.rows} rows x {a.seq_len} bp, batch {a.batch_size}, {a.workers} workers, tiny model, "
          f"1 process on CPU; medians of {a.repeats} fresh processes a case\n")
    print("| loader | epoch 1 s | epoch 2 s | epoch 2 samples/s | first epoch / steady (speed) |")
    print("|---|---:|---:|---:|---:|")
    for case, name in (("plain", "without reading ahead"), ("ahead", "reading ahead (the trainer)")):
        print(f"| {name} | {first[case]:.2f} | {steady[case]:.2f} | {samples / steady[case]:,.0f} | "
              f"{steady[case] / first[case]:.2f} |")
    print(f"\n- reading ahead / without, time: epoch 1 {first['ahead'] / first['plain']:.2f}, "
          f"epoch 2 {steady['ahead'] / steady['plain']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
