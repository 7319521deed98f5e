"""Benchmark the converters: peak memory against data size, speed against np.load, sizes on disk.

    python benchmarks/bench_convert.py [--workdir DIR] [--rows 1000] [--seq-len 3020]
                                       [--base-shards 4] [--scale 8] [--repeat 3]

Data: `convert.synth` writes the base dataset (BASE shards of ROWS x SEQ_LEN float32 one-hot,
np.savez_compressed, as the seed's shards); the large one is SCALE copies of each base shard
under new names (real files, so every byte is read again; synthesising 8x more would only cost
time).

Every case runs in its own subprocess. Peak RSS comes from os.wait4, i.e. the largest single
process among the case and all its (joined) worker processes; "tree PSS" is the largest sum
of proportional set sizes over the case's live process tree, sampled every 5 ms in separate untimed runs: what the
machine actually had to hold, each page shared by forked processes counted once.
Times are measured inside the case (imports excluded), best of --repeat runs: wall clock,
and CPU (user + system of the case and its joined workers), which a busy machine inflates less. The seed-style
baseline loads every shard and concatenates, as the original lab did.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _npz import drop_ids_apart



# ---------------------------------------------------------------- cases (run in a subprocess)


def case(argv) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("kind", choices=["read", "concat", "zarr", "wds"])
    p.add_argument("src")
    p.add_argument("--dst")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--repeat", type=int, default=1)
    a = p.parse_args(argv)
    import numpy as np

    import resource

    def cpu_seconds():  # this process (all threads) and its joined workers
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.process_time() + children.ru_utime + children.ru_stime

    files = sorted(Path(a.src).glob("*/*.npz"))
    best = best_cpu = float("inf")
    for _ in range(a.repeat):
        if a.dst:
            shutil.rmtree(a.dst, ignore_errors=True)
        start, start_cpu = time.perf_counter(), cpu_seconds()
        if a.kind == "read":  # the floor: decompress every shard, nothing else
            for f in files:
                with np.load(f) as z:
                    z["arr_0"], z["arr_1"]
        elif a.kind == "concat":  # the seed: everything in memory at once
            xs, ys = [], []
            for f in files:
                with np.load(f) as z:
                    xs.append(z["arr_0"])
                    ys.append(z["arr_1"])
            x, y = np.concatenate(xs), np.concatenate(ys)
            assert len(x) == len(y)
            del xs, ys, x, y
        else:
            from convert import npz_to_wds, npz_to_zarr

            module = npz_to_zarr if a.kind == "zarr" else npz_to_wds
            module.convert(a.src, a.dst, workers=a.workers, overwrite=True)
        best = min(best, time.perf_counter() - start)
        best_cpu = min(best_cpu, cpu_seconds() - start_cpu)
    print(json.dumps({"seconds": best, "cpu_seconds": best_cpu}))


# ---------------------------------------------------------------- measuring a case


def tree_pss(root: int) -> int:
    """Proportional set size of root and all its descendants, now: memory the machine holds.

    Not the sum of RSS: forked workers share their parent's pages and the result slots, and
    RSS would count each shared page once per process.
    """
    parents = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as f:
                    parents[int(entry.name)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        for child, parent in parents.items():
            if parent == pid and child not in tree:
                tree.add(child)
                frontier.append(child)
    total = 0
    for pid in tree:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("Pss:")) * 1024
        except (OSError, ValueError, IndexError, StopIteration):
            pass
    return total


def run_case(*args, sample_memory: bool) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--case", *map(str, args)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1])
    peak_tree = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak_tree[0] = max(peak_tree[0], tree_pss(proc.pid))
            done.wait(0.005)

    # Sampling costs ~1 ms of CPU per process every 5 ms, taken from the cores the case runs
    # on: timed runs go unsampled, the memory figures come from runs of their own.
    sampler = threading.Thread(target=sample, daemon=True)
    if sample_memory:
        sampler.start()
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)  # rusage of the case and its waited-for workers
    proc.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    if sample_memory:
        sampler.join()
    if proc.returncode:
        raise SystemExit(f"case {args} failed with status {proc.returncode}")
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_rss"] = usage.ru_maxrss * 1024  # KiB on Linux
    result["peak_tree_pss"] = peak_tree[0]
    return result


def _spin(_=None) -> float:
    start, x = time.perf_counter(), 0
    for i in range(3_000_000):
        x += i
    return time.perf_counter() - start


def parallel_headroom() -> float:
    """How much faster 2 processes finish 2 CPU-bound jobs than 1 process: 2.0 on 2 idle cores.

    Printed beside the --workers 2 speedup: other load on the machine caps both alike.
    """
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(2) as pool:
        pool.map(_spin, range(2))  # warm up
        solo = min(_spin() for _ in range(3))
        start = time.perf_counter()
        pool.map(_spin, range(2))
        pair = time.perf_counter() - start
    return 2 * solo / pair


def dir_bytes(path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


# ---------------------------------------------------------------- data


def make_data(work: Path, rows: int, seq_len: int, base_shards: int, scale: int) -> tuple[Path, Path]:
    base, big = work / "base", work / f"x{scale}"
    if not base.exists():
        subprocess.run([sys.executable, "-m", "convert.synth", str(base), "--train", str(rows * base_shards),
                        "--val", "0", "--test", "0", "--seq-len", str(seq_len), "--shard-size", str(rows)],
                       check=True, cwd=Path(__file__).resolve().parents[1], stdout=subprocess.DEVNULL)
        drop_ids_apart(base)
    if not big.exists():
        (big / "train").mkdir(parents=True)
        shards = sorted((base / "train").glob("*.npz"))
        for copy in range(scale):
            for i, f in enumerate(shards):
                shutil.copyfile(f, big / "train" / f"train_{copy * len(shards) + i:04d}.npz")
    return base, big


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--case":
        case(sys.argv[2:])
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", type=Path, help="keep the data here (default: a temporary folder)")
    p.add_argument("--rows", type=int, default=1000, help="rows per npz shard")
    p.add_argument("--seq-len", type=int, default=3020)
    p.add_argument("--base-shards", type=int, default=4)
    p.add_argument("--scale", type=int, default=8)
    p.add_argument("--repeat", type=int, default=3, help="timing runs per case (best is kept)")
    a = p.parse_args()
    work = a.workdir or Path(tempfile.mkdtemp(prefix="bench_convert_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        return report(work, a)
    finally:
        if a.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


def report(work: Path, a) -> int:
    base, big = make_data(work, a.rows, a.seq_len, a.base_shards, a.scale)
    shard_mb = a.rows * 4 * a.seq_len * 4 / 1e6  # one decompressed float32 input shard
    label = {base: f"1x ({a.base_shards} shards)", big: f"{a.scale}x ({a.base_shards * a.scale} shards)"}
    results = {}
    print(f"# {os.cpu_count()} CPUs; shards of {a.rows} x {a.seq_len} float32 one-hot "
          f"({shard_mb:.1f} MB decompressed); best of {a.repeat} timings", flush=True)
    rows = []

    def measure(name, src, kind, workers=1, repeat=1):
        dst = work / f"out.{kind}" if kind in ("zarr", "wds") else None
        args = [kind, src, "--workers", workers] + (["--dst", dst] if dst else [])
        r = run_case(*args, "--repeat", repeat, sample_memory=False)
        memory = run_case(*args, "--repeat", repeat, sample_memory=True)  # more chances to catch the peak
        r["peak_rss"], r["peak_tree_pss"] = memory["peak_rss"], memory["peak_tree_pss"]
        if dst:
            r["bytes"] = dir_bytes(dst)
        results[(name, src)] = r
        rows.append((name, label[src], r))
        print(f"  {name:<22} {label[src]:<16} {r['seconds']:7.2f} s  cpu {r['cpu_seconds']:7.2f} s  peak RSS {r['peak_rss'] / 1e6:7.0f} MB"
              f"  tree PSS {r['peak_tree_pss'] / 1e6:7.0f} MB", flush=True)
        return r

    headroom_before = parallel_headroom()
    for src in (base, big):
        measure("np.load every shard", src, "read", repeat=a.repeat)
        measure("load + concatenate", src, "concat")
        measure("npz_to_zarr -w1", src, "zarr", 1, repeat=a.repeat)
        measure("npz_to_zarr -w2", src, "zarr", 2, repeat=a.repeat)
        measure("npz_to_wds -w1", src, "wds", 1, repeat=a.repeat)
        measure("npz_to_wds -w2", src, "wds", 2, repeat=a.repeat)

    print("\n| case | data | wall (s) | CPU (s) | peak RSS, largest process (MB) | peak PSS, process tree (MB) |")
    print("|---|---|---:|---:|---:|---:|")
    for name, data, r in rows:
        print(f"| {name} | {data} | {r['seconds']:.2f} | {r['cpu_seconds']:.2f} | {r['peak_rss'] / 1e6:.0f} "
              f"| {r['peak_tree_pss'] / 1e6:.0f} |")

    def get(name, src, key):
        return results[(name, src)][key]

    read_big = get("np.load every shard", big, "seconds")
    npz_bytes = dir_bytes(big / "train")
    print(f"\n| check ({a.scale}x data) | value | target |")
    print("|---|---:|---|")
    for kind in ("zarr", "wds"):
        name1, name2 = f"npz_to_{kind} -w1", f"npz_to_{kind} -w2"
        rss_ratio = get(name1, big, "peak_rss") / get(name1, base, "peak_rss")
        print(f"| {kind}: peak RSS {a.scale}x / 1x (workers 1) | {rss_ratio:.2f} | <= 1.2 |")
        rss_ratio2 = get(name2, big, "peak_tree_pss") / get(name2, base, "peak_tree_pss")
        print(f"| {kind}: peak tree PSS {a.scale}x / 1x (workers 2) | {rss_ratio2:.2f} | <= 1.2 |")
        over = get(name1, big, "peak_rss") / 1e6 - shard_mb
        print(f"| {kind}: peak RSS - one decompressed shard | {over:.0f} MB | <= 300 MB |")
        print(f"| {kind}: wall time / np.load wall time (workers 1) | {get(name1, big, 'seconds') / read_big:.2f} "
              "| <= 1.5 |")
        print(f"| {kind}: CPU time / np.load CPU time (workers 1) | "
              f"{get(name1, big, 'cpu_seconds') / get('np.load every shard', big, 'cpu_seconds'):.2f} | <= 1.5 |")
        print(f"| {kind}: speedup workers 2 vs 1 | {get(name1, big, 'seconds') / get(name2, big, 'seconds'):.2f} "
              f"| >= 1.6 |")
        print(f"| {kind}: bytes on disk / npz bytes | {get(name1, big, 'bytes') / npz_bytes:.3f} "
              f"({get(name1, big, 'bytes') / 1e6:.1f} / {npz_bytes / 1e6:.1f} MB) | report |")
    headroom = (headroom_before + parallel_headroom()) / 2
    print(f"| machine: 2 CPU-bound processes vs 1 (before/after the cases) | {headroom:.2f} | 2.0 if idle |")
    concat_ratio = get("load + concatenate", big, "peak_rss") / get("load + concatenate", base, "peak_rss")
    print(f"| seed baseline: peak RSS {a.scale}x / 1x | {concat_ratio:.2f} | grows with the data |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
