"""Loader benchmark: throughput, memory and shuffle quality of maize_ddp.data.

    python benchmarks/bench_loader.py [--rows 32768] [--seq-len 3020] [--batch-size 64] [--work DIR]

Builds a synthetic train split with convert.synth and the real converters (default chunking:
the stores a user gets), then measures, codes only (no model):
  * samples/s of make_loader for Zarr and WebDataset with 0, 1 and 2 workers (one epoch after
    a warm-up epoch, pipeline refill included);
  * the ceilings: a uint8 tensor in RAM indexed by a random permutation, and the seed's way
    (float32 one-hot of every npz concatenated in RAM, indexed the same way), with its memory;
  * peak RSS of a training rank's loader, main process plus its 2 workers, over one epoch of
    the split and of the split 8 times over (8x more rows must cost <= 1.1x the memory);
  * shuffle quality at batch size 32: distinct source chunks (Zarr) / tar shards (WebDataset)
    per batch, and the correlation of consecutive batches' mean label, for the synthetic labels
    and for a worst case where the label is the row index (data sorted by label).
Prints a markdown table (docs/data.md, "Performance"); --out also writes the figures as JSON.
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

import numpy as np
import torch

from _npz import drop_ids_apart


def build_stores(work: Path, rows: int, seq_len: int) -> dict:
    from convert import npz_to_wds, npz_to_zarr, synth

    src = work / "src"
    if not src.exists():
        synth.generate(src, train=rows, val=0, test=0, seq_len=seq_len, shard_size=1024, dtype="uint8")
        drop_ids_apart(src)
    x8 = work / "src_x8" / "train"  # the same shards 8 times over, for the memory test
    if not x8.exists():
        x8.mkdir(parents=True)
        for copy in range(8):
            for f in sorted((src / "train").glob("*.npz")):
                os.symlink(f, x8 / f"{copy}_{f.name}")
    stores = {}
    for name, source in (("", src / "train"), ("_x8", x8)):
        for kind, convert in (("zarr", npz_to_zarr.convert), ("wds", npz_to_wds.convert)):
            dst = work / f"data{name}.{kind}"
            if not dst.exists():
                convert(source, dst, split="train", workers=2)
            stores[kind + name] = dst
    return stores


def cpu_seconds(pid) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def loader_rate(path, workers: int, batch_size: int) -> dict:
    """samples/s over one epoch after a warm-up epoch, and samples per CPU-second spent by the
    main process and its workers (what the rate would be per free core on a busy host)."""
    from maize_ddp.data import make_loader

    with make_loader(path, "train", batch_size=batch_size, num_workers=workers, seed=0) as loader:
        loader.set_epoch(0)
        for _ in loader:  # warm-up: worker start, first reads, WebDataset tar index
            pass
        pids = [os.getpid()] + [w.pid for w in loader._dataloader._iterator._workers] if workers else [os.getpid()]
        cpu = sum(map(cpu_seconds, pids))
        loader.set_epoch(1)
        start, n = time.perf_counter(), 0
        for codes, _ in loader:
            n += len(codes)
        seconds = time.perf_counter() - start
        cpu = sum(map(cpu_seconds, pids)) - cpu
    return {"samples_per_s": n / seconds, "samples_per_cpu_s": n / cpu, "load_avg_1min": os.getloadavg()[0]}


def rate(batches, seconds: float = 5.0) -> float:
    start, n = time.perf_counter(), 0
    for batch in batches:
        n += len(batch[0])
        if time.perf_counter() - start > seconds:
            break
    return n / (time.perf_counter() - start)


def ceilings(stores: dict, src: Path, batch_size: int) -> dict:
    import zarr
    from torch.utils.data import DataLoader, TensorDataset

    # One intra-op thread: on this VM two threads make a 200 KB gather ~10x slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    codes = torch.from_numpy(zarr.open_group(stores["zarr"], mode="r")["train"]["seq"][:])
    perm = torch.randperm(len(codes))
    uint8_rate = rate((codes[perm[i:i + batch_size]],) for i in range(0, len(codes), batch_size))
    del codes
    # The seed script: every npz's one-hot as float32, concatenated in RAM, then
    # TensorDataset + DataLoader(shuffle=True).
    onehot = torch.from_numpy(np.concatenate([np.load(f)["arr_0"].astype(np.float32)
                                              for f in sorted((src / "train").glob("*.npz"))]))
    labels = torch.zeros(len(onehot), 1)
    seed_rate = rate(DataLoader(TensorDataset(onehot, labels), batch_size=batch_size, shuffle=True))
    torch.set_num_threads(threads)
    return {"uint8_in_ram": uint8_rate, "seed_float32_onehot_in_ram": seed_rate,
            "seed_float32_onehot_bytes": onehot.numel() * 4}


def peak_rss_child(path: str, batch_size: int) -> None:
    """Run in a fresh process: one training epoch with 2 workers; print peak RSS, MiB."""
    from maize_ddp.data import make_loader

    def hwm(pid) -> int:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
        return 0

    with make_loader(path, "train", batch_size=batch_size, num_workers=2) as loader:
        loader.set_epoch(0)
        for _ in loader:
            pass
        workers = [w.pid for w in loader._dataloader._iterator._workers]
        print(json.dumps({"main": hwm(os.getpid()), "workers": [hwm(p) for p in workers]}))


def peak_rss(path: Path, batch_size: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--rss-child", str(path), "--batch-size", str(batch_size)],
                         check=True, capture_output=True, text=True).stdout
    rss = json.loads(out.strip().splitlines()[-1])
    return {**rss, "total": rss["main"] + sum(rss["workers"])}


def shuffle_quality(stores: dict, batch_size: int = 32) -> dict:
    from maize_ddp.data import make_loader, open_store

    result = {}
    for kind in ("zarr", "wds"):
        info = open_store(stores[kind]).splits["train"]
        if kind == "zarr":
            source_unit = lambda rows: rows // info.chunk_rows  # noqa: E731
        else:
            firsts = np.array([s.first_row for s in info.shards])
            source_unit = lambda rows: np.searchsorted(firsts, rows, side="right") - 1  # noqa: E731
        loader = make_loader(stores[kind], "train", batch_size=batch_size, with_rows=True)
        loader.set_epoch(0)
        units, label_means, row_means = [], [], []
        for _, y, rows in loader:
            units.append(len(set(source_unit(rows.numpy()).tolist())))
            label_means.append(float(y[:, 0].mean()))
            row_means.append(float(rows.double().mean()))

        def lag1(x):
            return float(np.corrcoef(x[:-1], x[1:])[0, 1])
        n = info.n
        rand_rows = np.random.default_rng(0).permutation(n)[: len(units) * batch_size].reshape(-1, batch_size)
        result[kind] = {
            "unit": "chunk" if kind == "zarr" else "tar shard",
            "units_in_split": int(source_unit(np.array([n - 1]))[0]) + 1,
            "distinct_units_per_batch": float(np.mean(units)),
            "distinct_units_per_batch_uniform": float(np.mean([len(set(source_unit(r).tolist())) for r in rand_rows])),
            "lag1_corr_mean_label": lag1(label_means),
            "lag1_corr_mean_label_sorted_worst_case": lag1(row_means),
        }
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=32768)
    p.add_argument("--seq-len", type=int, default=3020)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--work", type=Path, help="keeps the generated stores between runs")
    p.add_argument("--out", type=Path, help="also write the figures here as JSON")
    p.add_argument("--rss-child", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.rss_child:
        return peak_rss_child(a.rss_child, a.batch_size)
    work = a.work or Path(tempfile.mkdtemp(prefix="bench_loader_"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    stores = build_stores(work, a.rows, a.seq_len)
    print(f"stores ready in {time.perf_counter() - t0:.0f} s under {work}", file=sys.stderr)
    r = {"rows": a.rows, "seq_len": a.seq_len, "batch_size": a.batch_size, "cpus": os.cpu_count(),
         "throughput": {}, "rss_mib": {}}
    for kind in ("zarr", "wds"):
        for workers in (0, 1, 2):
            m = r["throughput"][f"{kind}_w{workers}"] = loader_rate(stores[kind], workers, a.batch_size)
            print(kind, workers, f"{m['samples_per_s']:.0f} samples/s", file=sys.stderr)
    r["throughput"].update(ceilings(stores, work / "src", a.batch_size))
    for kind in ("zarr", "wds"):
        for name in (kind, kind + "_x8"):
            r["rss_mib"][name] = peak_rss(stores[name], a.batch_size)
    r["shuffle"] = shuffle_quality(stores)
    if a.out:
        a.out.write_text(json.dumps(r, indent=2) + "\n")
    print(table(r))


def table(r: dict) -> str:
    t, rss = r["throughput"], r["rss_mib"]
    lines = [f"{r['rows']} rows x {r['seq_len']} bp, batch {r['batch_size']}, {r['cpus']} cores, codes only (no model)",
             "", "| reader | samples/s | samples per CPU-second (all its processes) | load average |",
             "| --- | ---: | ---: | ---: |"]
    for kind, label in (("zarr", "Zarr"), ("wds", "WebDataset")):
        for w in (0, 1, 2):
            m = t[f"{kind}_w{w}"]
            lines.append(f"| {label}, {w} worker{'s' if w != 1 else ''} | {m['samples_per_s']:,.0f} "
                         f"| {m['samples_per_cpu_s']:,.0f} | {m['load_avg_1min']:.1f} |")
    lines.append(f"| ceiling: uint8 tensor in RAM, batches of a random permutation | {t['uint8_in_ram']:,.0f} | | |")
    lines.append(f"| seed: float32 one-hot in RAM ({t['seed_float32_onehot_bytes'] / 2**30:.2f} GiB here), "
                 f"TensorDataset + DataLoader(shuffle) | {t['seed_float32_onehot_in_ram']:,.0f} | | |")
    lines += ["", f"| peak RSS, main + 2 workers (MiB) | {r['rows']} rows | {8 * r['rows']} rows | ratio |",
              "| --- | ---: | ---: | ---: |"]
    for kind, label in (("zarr", "Zarr"), ("wds", "WebDataset")):
        small, big = rss[kind]["total"], rss[kind + "_x8"]["total"]
        lines.append(f"| {label} | {small} | {big} | {big / small:.3f} |")
    lines += ["", "| shuffle, batch 32 | distinct source units per batch (uniform sampling) | lag-1 corr. of batch mean label | same, labels sorted by row (worst case) |",
              "| --- | ---: | ---: | ---: |"]
    for kind, label in (("zarr", "Zarr"), ("wds", "WebDataset")):
        s = r["shuffle"][kind]
        lines.append(f"| {label} ({s['units_in_split']} {s['unit']}s) | {s['distinct_units_per_batch']:.1f} "
                     f"({s['distinct_units_per_batch_uniform']:.1f}) | {s['lag1_corr_mean_label']:+.3f} "
                     f"| {s['lag1_corr_mean_label_sorted_worst_case']:+.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
