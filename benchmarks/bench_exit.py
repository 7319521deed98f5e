"""What a command's process pays to end, with and without maize_ddp.process_exit.

    python benchmarks/bench_exit.py [--rows 2048] [--repeats 3]

Python collects every object it holds before a process exits; with torch (and torch._dynamo,
which an optimizer imports) that is hundreds of thousands of objects, in every rank and every
DataLoader worker. The commands freeze the heap instead as they end, and each DataLoader worker
as it starts. This runs the same commands both ways, alternating, each in a fresh process:

- as shipped: `python -m maize_ddp.train ...` and `python -m maize_ddp.predict ...`;
- plain: the same main() under `sys.exit`, with the workers' freeze replaced by a no-op.

and reports the median wall time of each, side by side.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLAIN = ("import sys, importlib, maize_ddp.data.loader as loader; loader.freeze_garbage_collection = int; "
         "sys.exit(importlib.import_module(sys.argv[1]).main(sys.argv[2:]))")


def make_store(work: Path, rows: int) -> Path:
    sys.path.insert(0, str(ROOT))
    from convert import npz_to_zarr, synth

    synth.generate(work / "npz", train=rows, val=rows // 8, test=rows // 8, seq_len=200, shard_size=512)
    npz_to_zarr.convert(work / "npz", work / "data.zarr")
    return work / "data.zarr"


def timed(module: str, args: list[str], plain: bool) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-c", PLAIN, module, *args] if plain else [sys.executable, "-m", module, *args]
    began = time.perf_counter()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - began
    if res.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{res.stderr[-3000:]}")
    return seconds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=2048)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench_exit_"))
    store = make_store(work, a.rows)
    run = work / "run"
    train = ["--data", str(store), "--epochs", "1", "--device", "cpu"]
    assert timed("maize_ddp.train", [*train, "--out", str(run)], plain=False) > 0  # the run predict reads
    cases = {
        "train, 1 epoch, no workers": ("maize_ddp.train", [*train, "--num-workers", "0"]),
        "train, 1 epoch, 2 DataLoader workers": ("maize_ddp.train", [*train, "--num-workers", "2"]),
        "predict, test split": ("maize_ddp.predict", [str(run), "--data", str(store)]),
    }
    seconds = {(name, plain): [] for name in cases for plain in (True, False)}
    for i in range(a.repeats):
        for k, (name, (module, args)) in enumerate(cases.items()):
            for plain in (True, False):
                out = work / f"out-{k}-{i}-{'plain' if plain else 'shipped'}{'.tsv' if 'predict' in module else ''}"
                seconds[name, plain].append(timed(module, [*args, "--out", str(out)], plain))
    print(f"## Process exit: {a.rows} training rows x 200 bp, default model, 1 process on CPU; medians of "
          f"{a.repeats} fresh processes a case, alternating\n")
    print("| command | plain sys.exit s | as shipped s | shipped / plain |")
    print("|---|---:|---:|---:|")
    for name in cases:
        plain, shipped = (statistics.median(seconds[name, k]) for k in (True, False))
        print(f"| {name} | {plain:.2f} | {shipped:.2f} | {shipped / plain:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
