"""Table converter benchmark: memory and speed of convert.table_to_npz as the table grows.

    python benchmarks/bench_tables.py [--rows 50000] [--seq-len 200] [--work DIR]

Writes a gzip TSV of random sequences (id, sequence, two activities) with 1x and 8x the rows,
converts each in its own process (`python -m convert.table_to_npz`, default settings, seeded hash
split) and reports, side by side: peak RSS of the converting process, 8x / 1x (the table is
streamed, so memory should not grow with it: only 8 bytes a row for the duplicate-id check), rows
per second, and the output's size against the table's.
"""
from __future__ import annotations

import argparse
import gzip
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def write_table(path: Path, rows: int, seq_len: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    letters = np.frombuffer(b"ACGT", np.uint8)
    with gzip.open(path, "wt", compresslevel=1) as fh:
        fh.write("id\tsequence\tleaf\tprotoplast\n")
        for start in range(0, rows, 10000):
            n = min(10000, rows - start)
            seqs = letters[rng.integers(0, 4, size=(n, seq_len))]
            y = rng.normal(size=(n, 2))
            fh.write("".join(f"seq{start + i:09d}\t{seqs[i].tobytes().decode()}\t{y[i, 0]:.5f}\t{y[i, 1]:.5f}\n"
                             for i in range(n)))


def convert(table: Path, out: Path) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one conversion in a fresh process."""
    code = ("import resource, sys, runpy; sys.argv = sys.argv[1:]; "
            "exec('try:\\n runpy.run_module(\"convert.table_to_npz\", run_name=\"__main__\")\\n"
            "except SystemExit as e:\\n assert not e.code, e.code'); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)")
    start = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", code, "table_to_npz", str(table), "--seq-col", "sequence",
                          "--id-col", "id", "--label-col", "leaf", "--label-col", "protoplast", "--out", str(out),
                          "--quiet"], cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if res.returncode:
        raise SystemExit(res.stderr)
    return seconds, int(res.stderr.strip().splitlines()[-1]) / 1024


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=50000)
    p.add_argument("--seq-len", type=int, default=200)
    p.add_argument("--work", type=Path)
    a = p.parse_args(argv)
    work = a.work or Path(tempfile.mkdtemp(prefix="bench_tables_"))
    work.mkdir(parents=True, exist_ok=True)
    results = {}
    for scale in (1, 8):
        table = work / f"table_{scale}x.tsv.gz"
        if not table.exists():
            write_table(table, a.rows * scale, a.seq_len)
        out = work / f"npz_{scale}x"
        shutil.rmtree(out, ignore_errors=True)
        seconds, rss = convert(table, out)
        results[scale] = (seconds, rss, table.stat().st_size, folder_bytes(out))
    (s1, r1, *_), (s8, r8, *_) = results[1], results[8]
    print(f"{a.rows:,} and {8 * a.rows:,} rows x {a.seq_len} bp, gzip TSV; {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}\n")
    print("| table | rows/s | peak RSS (MB) | npz / gzip table |")
    print("|---|---:|---:|---:|")
    for scale, (s, r, t, o) in results.items():
        print(f"| {scale}x ({scale * a.rows:,} rows) | {scale * a.rows / s:,.0f} | {r:.0f} | {o / t:.2f} |")
    print(f"\npeak RSS 8x / 1x: **{r8 / r1:.2f}**; rows/s 8x / 1x: {(8 * a.rows / s8) / (a.rows / s1):.2f}")
    if not a.work:
        shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
