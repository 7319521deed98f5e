"""What a store's integrity checks cost the reader.

    python benchmarks/bench_integrity.py [--rows 16384] [--seq-len 3020] [--rounds 5] [--work DIR]

Builds a synthetic train split (convert.synth, the converters' defaults) and reads all of it
through the trainer's readers (maize_ddp.data.open_source, windows of the loader's size), with
the checks as shipped and with them switched off (codes <= N, finite labels, and the place
CRCs: Zarr's per-chunk and WebDataset's per-row CRC-32 tied to where the rows belong; Zarr's
chunk CRC-32C is a codec and stays on, tar header checksums are part of indexing), in
alternating rounds, each with a fresh reader as a new epoch's worker would have. Reports the
median CPU seconds per pass (this process's user + system time, which does not depend on how
busy the machine is) and their ratio, and the time of open_store, which stats every data file.
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from maize_ddp.data import open_source, open_store  # noqa: E402
from maize_ddp.data import wds_source, zarr_source  # noqa: E402

WINDOW_BYTES = 16 << 20  # about what one loader window reads


def build(work: Path, rows: int, seq_len: int) -> dict:
    from convert import npz_to_wds, npz_to_zarr, synth

    src = work / "src"
    if not src.exists():
        synth.generate(src, train=rows, val=0, test=0, seq_len=seq_len, shard_size=1024, dtype="uint8")
    stores = {}
    for kind, convert in (("zarr", npz_to_zarr.convert), ("wds", npz_to_wds.convert)):
        dst = work / f"data.{kind}"
        if not dst.exists():
            convert(src / "train", dst, split="train", workers=2)
        stores[kind] = dst
    return stores


@contextlib.contextmanager
def checks_off():
    """The readers' checks replaced by no-ops (they look them up in their own module)."""
    saved = [(m, name, getattr(m, name)) for m in (zarr_source, wds_source)
             for name in ("check_codes", "check_labels", "check_place", "check_rows") if hasattr(m, name)]
    for module, name, _ in saved:
        setattr(module, name, lambda *a, **k: None)
    try:
        yield
    finally:
        for module, name, fn in saved:
            setattr(module, name, fn)


def one_pass(path: Path) -> float:
    info = open_store(path)
    n, seq_len = info.splits["train"].n, info.seq_len
    step = max(1, WINDOW_BYTES // seq_len)
    source = open_source(info, "train")
    start = time.process_time()
    rows = 0
    for a in range(0, n, step):
        pieces, y = source.read([(a, min(a + step, n))])
        rows += sum(len(p) for p in pieces)
    assert rows == n
    return time.process_time() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=16384)
    p.add_argument("--seq-len", type=int, default=3020)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--work", type=Path, help="keep the generated stores here between runs")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        stores = build(a.work or Path(tmp), a.rows, a.seq_len)
        print(f"{a.rows} rows of {a.seq_len} bp, {a.rounds} alternating rounds, CPU seconds per pass "
              "(median)\n")
        print("| store | data files | open_store (ms) | checks on (s) | checks off (s) | on / off |")
        print("|---|---:|---:|---:|---:|---:|")
        for kind, path in stores.items():
            one_pass(path)  # warm the page cache
            on, off = [], []
            for _ in range(a.rounds):
                on.append(one_pass(path))
                with checks_off():
                    off.append(one_pass(path))
            t0 = time.perf_counter()
            info = open_store(path)
            open_ms = (time.perf_counter() - t0) * 1e3
            files = sum(len(s.files) for s in info.splits.values())
            m_on, m_off = statistics.median(on), statistics.median(off)
            print(f"| {kind} | {files} | {open_ms:.1f} | {m_on:.3f} | {m_off:.3f} | {m_on / m_off:.2f} |")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
