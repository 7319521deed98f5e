"""Trainer throughput and memory, measured side by side in one run.

    python benchmarks/bench_train.py [--work DIR] [--seq-len 1000] [--rows 4096]

1. Samples/s of `maize_ddp.train` (1 process, CPU, fp32 and bf16) against an ideal loop that trains
   the same model on a uint8 tensor already in memory (same batch, same precision, random
   permutation). The two alternate (ideal, trainer, ideal, trainer) so machine noise hits both.
2. Peak RSS of a training rank on a store with 8x more rows (same shards): the ratio.
Prints a Markdown table; figures go to the README's performance section.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# One thread: on a shared 2-core machine two OpenMP threads per process collapse under load.
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}

IDEAL = r"""
import sys, time, resource, torch, torch.nn.functional as F
from maize_ddp.model import BasenjiModel
from maize_ddp.inference import autocast
seq_len, rows, batch, amp, steps = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
torch.manual_seed(0)
codes = torch.randint(0, 5, (rows, seq_len), dtype=torch.uint8)
y = torch.randn(rows, 1)
model = BasenjiModel(seq_len=seq_len)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
perm = torch.randperm(rows)
def step(i):
    idx = perm[(i * batch) % (rows - batch):][:batch]
    with autocast(torch.device("cpu"), amp):
        loss = F.mse_loss(model(codes[idx]).float(), y[idx])
    opt.zero_grad(); loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf")); opt.step()
for i in range(3): step(i)
t = time.perf_counter()
for i in range(steps): step(i)
print(steps * batch / (time.perf_counter() - t))
"""


def run(cmd, **kw):
    res = subprocess.run(cmd, env=ENV, capture_output=True, text=True, **kw)
    if res.returncode:
        sys.exit(f"failed: {' '.join(map(str, cmd))}\n{res.stderr[-2000:]}")
    return res


def peak_rss_mb(cmd) -> float:
    """Peak RSS of the command and its children, in MB (GNU time's max resident set)."""
    res = run(["/usr/bin/time", "-f", "%M", *cmd]) if Path("/usr/bin/time").exists() else None
    if res is None:
        import resource
        run(cmd)
        return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return int(res.stderr.strip().splitlines()[-1]) / 1024


def make_store(work: Path, rows: int, seq_len: int, name: str) -> Path:
    store = work / f"{name}.zarr"
    if not store.exists():
        run([sys.executable, "-m", "convert.synth", str(work / f"{name}_npz"), "--train", str(rows), "--val", "256",
             "--test", "256", "--seq-len", str(seq_len), "--shard-size", "512", "--overwrite"])
        run([sys.executable, "-m", "convert.npz_to_zarr", str(work / f"{name}_npz"), str(store), "--quiet",
             "--overwrite"])
    return store


def trainer_samples_per_s(store: Path, work: Path, amp: str, epochs: int) -> float:
    out = work / f"run_{amp}_{time.time_ns()}"
    run([sys.executable, "-m", "maize_ddp.train", "--data", str(store), "--out", str(out), "--epochs", str(epochs),
         "--amp", amp, "--device", "cpu"])
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return max(h["samples_per_s"] for h in history)  # best epoch: the first pays for warm-up


def ideal_samples_per_s(seq_len: int, rows: int, amp: str, steps: int) -> float:
    return float(run([sys.executable, "-c", IDEAL, str(seq_len), str(rows), "32", amp, str(steps)]).stdout)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--work", type=Path, default=None)
    p.add_argument("--seq-len", type=int, default=1000)
    p.add_argument("--rows", type=int, default=2048)
    p.add_argument("--repeats", type=int, default=2)
    a = p.parse_args()
    work = a.work or Path(tempfile.mkdtemp(prefix="bench_train_"))
    work.mkdir(parents=True, exist_ok=True)

    print(f"## Trainer vs ideal in-memory loop (1 process, CPU, seq_len {a.seq_len}, batch 32)\n")
    print("| precision | ideal loop samples/s | trainer samples/s | trainer / ideal |")
    print("|---|---|---|---|")
    for amp, rows, epochs in (("off", a.rows, 2), ("bf16", a.rows // 8, 1)):
        store = make_store(work, rows, a.seq_len, f"speed_{rows}")
        ideal, trainer = [], []
        for _ in range(a.repeats):
            ideal.append(ideal_samples_per_s(a.seq_len, rows, amp, steps=rows // 32))
            trainer.append(trainer_samples_per_s(store, work, amp, epochs))
        i, t = max(ideal), max(trainer)
        print(f"| {'fp32' if amp == 'off' else amp} | {i:.0f} | {t:.0f} | {t / i:.2f} |")

    print("\n## Peak RSS of a training rank (1 epoch, seq_len 200)\n")
    print("| train rows | peak RSS MB |")
    print("|---|---|")
    rss = {}
    for rows in (4096, 32768):
        store = make_store(work, rows, 200, f"rss_{rows}")
        out = work / f"rss_run_{rows}_{time.time_ns()}"
        rss[rows] = peak_rss_mb([sys.executable, "-m", "maize_ddp.train", "--data", str(store), "--out", str(out),
                                 "--epochs", "1", "--device", "cpu", "--amp", "off"])
        print(f"| {rows} | {rss[rows]:.0f} |")
    print(f"\nRSS ratio 8x rows / 1x rows: {rss[32768] / rss[4096]:.3f}")


if __name__ == "__main__":
    main()
