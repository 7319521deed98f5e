"""Show what a maize_ddp store holds, and optionally check every row of it.

    python -m convert.inspect PATH [--verify] [--sources SRC]

PATH is a Zarr v3 store (DATA.zarr) or a WebDataset store (DATA.wds). Prints the splits, rows,
seq_len, targets, label statistics, codecs, bytes on disk and compression ratios.

Opening checks that every data file the writer recorded exists with its size. --verify also
checks each file's CRC-32, then re-reads every row through the trainer's readers, a few MB
at a time: codes must be 0..4 (a missing Zarr chunk reads as 255), labels finite, row counts
and label mean/std must match the metadata (and, for tar shards, keys must run 0..n-1 in
order). The first bad file is named. --sources SRC also re-reads the npz files the store was made from, checks
their sha256 and compares every decoded row with the store. Exit status 1 if anything differs.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Iterator

import numpy as np

from maize_ddp.data import StoreInfo, open_source, open_store, read_ids
from maize_ddp.errors import run_main
from maize_ddp.origin import describe as describe_origin
from maize_ddp.process_exit import exit_process
from maize_ddp.store_format import check_checksum

from .output import dir_bytes
from .shards import (ConvertError, LabelMoments, Source, read_shard, scan_shard,
                     sha256_file)

READ_BYTES = 8 << 20  # codes per verify read: a few Zarr chunks or tar shards at a time


class VerifyError(ConvertError):
    """The store's rows disagree with its metadata or with its sources."""


# ---------------------------------------------------------------- reading a store


def codecs(info: StoreInfo) -> list[str]:
    if info.kind == "wds":
        per_tar = [s.n for m in info.splits.values() for s in m.shards]
        return [f"uncompressed tar shards, {len(per_tar)} files, up to {max(per_tar, default=0)} samples each; "
                "members KEY.seq.npy uint8 [L], KEY.y.npy float32 [T]"]
    if not info.splits:
        return []
    import zarr

    first = zarr.open_group(info.path, mode="r")[next(iter(info.splits))]
    lines = []
    for name in ("seq", "y"):
        a = first[name]
        comp = ", ".join(_codec_text(c) for c in a.compressors) or "none"
        shards = f", shards of {a.shards[0]} rows" if a.shards else ""
        lines.append(f"{name}: {a.dtype} chunks of {a.chunks[0]} rows "
                     f"({a.chunks[0] * int(np.prod(a.chunks[1:])) * a.dtype.itemsize / 1024:.0f} KiB)"
                     f"{shards}, {comp}")
    return lines


def blocks(info: StoreInfo, split: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(codes [b, L], labels [b, T]) blocks covering rows 0..n-1 of the split, in order, read
    through the trainer's own readers, so every check they make is made here too."""
    meta = info.splits[split]
    step = max(1, READ_BYTES // info.seq_len)
    if meta.chunk_rows:  # whole Zarr chunks
        step = -(-step // meta.chunk_rows) * meta.chunk_rows
    source = open_source(info, split)
    for start in range(0, meta.n, step):
        pieces, labels = source.read([(start, min(start + step, meta.n))])
        yield np.concatenate(pieces), labels


def _codec_text(codec) -> str:
    d = codec.to_dict()
    cfg = d.get("configuration", {})
    if d.get("name") == "blosc":
        return f"blosc {cfg.get('cname')} clevel {cfg.get('clevel')} {cfg.get('shuffle')}"
    return d.get("name", type(codec).__name__) + (f" {cfg}" if cfg else "")


# ---------------------------------------------------------------- report


def describe(info: StoreInfo) -> str:
    m = info.attrs
    sources = m.get("sources", [])
    source_bytes = sum(s.get("bytes", 0) for s in sources)
    kind = "Zarr v3 store" if info.kind == "zarr" else "WebDataset store"
    files = sum(len(split.files) for split in info.splits.values())
    lines = [f"{info.path}: {kind}, format {m['format']}, alphabet {m.get('alphabet')}",
             f"seq_len {info.seq_len}, {info.num_targets} target{'s' if info.num_targets != 1 else ''}, "
             f"splits {', '.join(info.splits)}, {len(sources)} source files, {files} data files"]
    lines.append(f"{'split':<8}{'rows':>10}{'on disk':>12}{'ratio':>8}{'vs one-hot':>12}   label mean / std")
    for name, split in info.splits.items():
        n = split.n
        disk = dir_bytes(info.path / name)
        raw = n * (info.seq_len + 4 * info.num_targets)  # uint8 codes + float32 labels
        onehot = n * (16 * info.seq_len + 4 * info.num_targets)  # float32 one-hot + labels
        stats = _stats_text(split.label_mean, split.label_std)
        lines.append(f"{name:<8}{n:>10}{_mb(disk):>12}{raw / max(disk, 1):>7.1f}x{onehot / max(disk, 1):>11.1f}x   {stats}")
    firsts = [f"{name} {read_ids(info, name, stop=1)[0]}" for name, split in info.splits.items() if split.n]
    lines.append("first ids: " + ", ".join(firsts))
    lines += ["codecs: " + c for c in codecs(info)]
    lines.append(describe_origin(info.meta.origin if info.meta else None))
    total = dir_bytes(info.path)
    line = f"total: {_mb(total)} on disk"
    if source_bytes:
        line += f"; npz sources {_mb(source_bytes)} ({source_bytes / max(total, 1):.2f}x the store)"
    lines.append(line)
    return "\n".join(lines)


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _stats_text(mean, std, most=4) -> str:
    pairs = [f"{a:.4g} / {b:.4g}" for a, b in zip(mean, std)]
    if len(pairs) > most:
        pairs = pairs[:most] + [f"... ({len(pairs)} targets)"]
    return "; ".join(pairs)


# ---------------------------------------------------------------- verify


def verify_files(info: StoreInfo) -> None:
    """Every data file's CRC-32 against the store's record: the first bad file is named."""
    for split in info.splits.values():
        for record in split.files:
            check_checksum(info.path, record)


def verify(info: StoreInfo) -> list[str]:
    """Re-read every row through the readers (codes 0..N, finite labels) and every id; return
    one line per split, raise on the first problem. verify_files comes first."""
    report = []
    for name, split in info.splits.items():
        moments = LabelMoments.empty(info.num_targets)
        rows = 0
        for _, labels in blocks(info, name):
            moments = moments.merge(LabelMoments.of(labels))
            rows += len(labels)
        if rows != split.n:
            raise VerifyError(f"{info.path}: {name} holds {rows} rows, the metadata says {split.n}")
        ids = read_ids(info, name)
        if len(np.unique(ids)) != len(ids):
            raise VerifyError(f"{info.path}: {name} has repeated row ids")
        for what, got, want in (("label_mean", moments.mean, split.label_mean),
                                ("label_std", moments.std, split.label_std)):
            if not np.allclose(got, want, rtol=1e-6, atol=1e-9):
                raise VerifyError(f"{info.path}: {name} {what} is {_floats(got)} over the rows, "
                                  f"the metadata says {_floats(want)}")
        report.append(f"verify: {name}: {rows} rows ok ({len(split.files)} files match their CRC-32, "
                      "codes 0..4, labels finite, ids unique, n and label stats match)")
    return report


def _floats(values) -> str:
    return "[" + ", ".join(f"{float(v):.6g}" for v in values) + "]"


class RowStream:
    """Take exactly k rows at a time from a stream of (codes, labels) blocks."""

    def __init__(self, blocks: Iterator):
        self.blocks = blocks
        self.codes = self.labels = None
        self.at = 0

    def take(self, k: int):
        parts_c, parts_y = [], []
        while k:
            if self.codes is None or self.at == len(self.codes):
                block = next(self.blocks, None)
                if block is None:
                    break
                (self.codes, self.labels), self.at = block, 0
                continue
            n = min(k, len(self.codes) - self.at)
            parts_c.append(self.codes[self.at:self.at + n])
            parts_y.append(self.labels[self.at:self.at + n])
            self.at += n
            k -= n
        if not parts_c:
            return np.empty((0, 0), np.uint8), np.empty((0, 0), np.float32)
        return np.concatenate(parts_c), np.concatenate(parts_y)


def verify_sources(info: StoreInfo, src) -> str:
    """Compare every row with the npz files listed in the store's `sources`, in order."""
    src = Path(src)
    sources = info.attrs.get("sources") or []
    if not sources:
        raise VerifyError(f"{info.path}: the store records no sources")
    streams = {name: RowStream(blocks(info, name)) for name in info.splits}
    ids = {name: read_ids(info, name) for name in info.splits}
    at = dict.fromkeys(info.splits, 0)
    for entry in sources:
        path = src / entry["file"]
        if not path.is_file():
            raise VerifyError(f"{path}: source listed in the store is missing")
        if sha256_file(path) != entry["sha256"]:
            raise VerifyError(f"{path}: sha256 differs from the one recorded in the store (the file changed)")
        scan = scan_shard(Source(entry["split"], path, entry["file"]), drop_nonfinite=True)
        if scan.rows_in and scan.rows != entry["rows"]:
            raise VerifyError(f"{path}: {scan.rows} rows with finite labels, the store recorded {entry['rows']}")
        if not scan.rows_in:
            continue
        codes, labels, want_ids = read_shard(scan, drop_nonfinite=True)
        split = entry["split"]
        if not np.array_equal(ids[split][at[split]:at[split] + len(want_ids)], want_ids):
            raise VerifyError(f"{path}: ids differ from the store's {split} rows")
        at[split] += len(want_ids)
        got_codes, got_labels = streams[entry["split"]].take(len(codes))
        if got_codes.shape != codes.shape or not np.array_equal(got_codes, codes):
            raise VerifyError(f"{path}: sequences differ from the store's {entry['split']} rows")
        if got_labels.shape != labels.shape or not np.array_equal(got_labels, labels):
            raise VerifyError(f"{path}: labels differ from the store's {entry['split']} rows")
    for name, stream in streams.items():
        extra, _ = stream.take(1)
        if len(extra):
            raise VerifyError(f"{info.path}: {name} has rows beyond those of its sources")
    return f"verify: {len(sources)} source files match (sha256, rows, ids, sequences and labels)"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m convert.inspect",
                                description="Show what a maize_ddp store (.zarr or .wds) holds.")
    p.add_argument("path", help="a store made by convert.npz_to_zarr or convert.npz_to_wds")
    p.add_argument("--verify", action="store_true", help="re-read and check every row")
    p.add_argument("--sources", metavar="SRC", help="with --verify: compare every row with the npz files in SRC")
    a = p.parse_args(argv)

    def work() -> None:
        info = open_store(a.path)
        if a.verify or a.sources:
            verify_files(info)  # before anything reads the files, so the first bad one is named
        print(describe(info), flush=True)
        if a.verify or a.sources:
            for line in verify(info):
                print(line, flush=True)
            if a.sources:
                print(verify_sources(info, a.sources), flush=True)
    return run_main(work)


if __name__ == "__main__":
    exit_process(main())
