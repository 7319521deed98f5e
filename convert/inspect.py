"""Show what a maize_ddp store holds, and optionally check every row of it.

    python -m convert.inspect PATH [--verify] [--sources SRC]

PATH is a Zarr v3 store (DATA.zarr) or a WebDataset store (DATA.wds). Prints the splits, rows,
seq_len, targets, label statistics, codecs, bytes on disk and compression ratios.

--verify re-reads every row, one block at a time: codes must be 0..4, labels finite, row
counts and label mean/std must match the metadata (and, for tar shards, keys must run
0..n-1 in order). --sources SRC also re-reads the npz files the store was made from, checks
their sha256 and compares every decoded row with the store. Exit status 1 if anything differs.
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import tarfile
from pathlib import Path
from typing import Iterator

import numpy as np

from .output import dir_bytes
from .shards import (ConvertError, LabelMoments, Source, read_shard, scan_shard,
                     sha256_file)

FORMAT = "maize_ddp/1"


class VerifyError(ConvertError):
    """The store's rows disagree with its metadata or with its sources."""


# ---------------------------------------------------------------- opening a store


class Store:
    """Metadata of either kind of store, and its rows as a stream of blocks per split."""

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.exists():
            raise ConvertError(f"{self.path}: no such file or directory")
        if (self.path / "manifest.json").is_file():
            self.kind = "wds"
            try:
                self.meta = json.loads((self.path / "manifest.json").read_text())
            except (OSError, ValueError) as e:
                raise ConvertError(f"{self.path}/manifest.json: unreadable ({e})") from None
            self.split_meta = self.meta.get("splits", {})
        elif (self.path / "zarr.json").is_file():
            import zarr

            self.kind = "zarr"
            try:
                self.root = zarr.open_group(self.path, mode="r")
                self.meta = dict(self.root.attrs)
                self.split_meta = {name: dict(self.root[name].attrs) for name in self.meta.get("splits", [])}
            except (KeyError, ValueError, OSError) as e:
                raise ConvertError(f"{self.path}: not a readable Zarr v3 store ({e})") from None
        else:
            raise ConvertError(f"{self.path}: not a maize_ddp store (no zarr.json or manifest.json)")
        if self.meta.get("format") != FORMAT:
            raise ConvertError(f"{self.path}: format {self.meta.get('format')!r}, expected {FORMAT!r}")
        try:
            self.seq_len = int(self.meta["seq_len"])
            self.num_targets = int(self.meta["num_targets"])
            for name, m in self.split_meta.items():
                int(m["n"]), list(m["label_mean"]), list(m["label_std"])
        except (KeyError, TypeError, ValueError) as e:
            raise ConvertError(f"{self.path}: incomplete metadata ({e!r} missing or invalid)") from None

    @property
    def splits(self) -> list[str]:
        return list(self.split_meta)

    def split_bytes(self, split: str) -> int:
        return dir_bytes(self.path / split)

    def codecs(self) -> list[str]:
        if self.kind == "wds":
            per_tar = [s["n"] for m in self.split_meta.values() for s in m["shards"]]
            return [f"uncompressed tar shards, {len(per_tar)} files, up to {max(per_tar, default=0)} samples each; "
                    "members KEY.seq.npy uint8 [L], KEY.y.npy float32 [T]"]
        if not self.splits:
            return []
        lines = []
        first = self.root[self.splits[0]]
        for name in ("seq", "y"):
            a = first[name]
            comp = ", ".join(_codec_text(c) for c in a.compressors) or "none"
            shards = f", shards of {a.shards[0]} rows" if a.shards else ""
            lines.append(f"{name}: {a.dtype} chunks of {a.chunks[0]} rows "
                         f"({a.chunks[0] * int(np.prod(a.chunks[1:])) * a.dtype.itemsize / 1024:.0f} KiB)"
                         f"{shards}, {comp}")
        return lines

    def blocks(self, split: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(codes [b, L], labels [b, T]) blocks covering rows 0..n-1 of the split, in order."""
        if self.kind == "zarr":
            seq, y = self.root[split]["seq"], self.root[split]["y"]
            if seq.shape != (int(self.split_meta[split]["n"]), self.seq_len) or y.shape[0] != seq.shape[0]:
                raise VerifyError(f"{self.path}: {split}/seq {list(seq.shape)} and {split}/y {list(y.shape)} "
                                  f"disagree with n={self.split_meta[split]['n']}, seq_len={self.seq_len}")
            step = seq.shards[0] if seq.shards else seq.chunks[0]
            for start in range(0, seq.shape[0], step):
                yield np.asarray(seq[start:start + step]), np.asarray(y[start:start + step])
            return
        row = 0
        for shard in self.split_meta[split]["shards"]:
            if shard["first_row"] != row:
                raise VerifyError(f"{self.path}: {shard['path']} starts at row {shard['first_row']}, expected {row}")
            codes, labels = _read_tar(self.path / shard["path"], row, shard["n"], self.seq_len, self.num_targets)
            row += shard["n"]
            yield codes, labels


def _codec_text(codec) -> str:
    d = codec.to_dict()
    cfg = d.get("configuration", {})
    if d.get("name") == "blosc":
        return f"blosc {cfg.get('cname')} clevel {cfg.get('clevel')} {cfg.get('shuffle')}"
    return d.get("name", type(codec).__name__) + (f" {cfg}" if cfg else "")


def _read_tar(path: Path, first_row: int, n: int, seq_len: int, num_targets: int):
    """Every sample of one tar shard, checking keys, member pairs, dtypes and shapes.

    tarfile, not the writer's fixed layout: this also checks stores written by other tools.
    """
    codes = np.empty((n, seq_len), np.uint8)
    labels = np.empty((n, num_targets), np.float32)
    expected = [(f"{first_row + i:010d}", part) for i in range(n) for part in ("seq.npy", "y.npy")]
    i = 0
    try:
        with tarfile.open(path, mode="r|") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, _, part = member.name.rpartition("/")[2].partition(".")
                if part not in ("seq.npy", "y.npy"):
                    continue  # other fields a sample may carry (KEY.txt, ...)
                if i >= len(expected) or (key, part) != expected[i]:
                    want = ".".join(expected[i]) if i < len(expected) else "no more members"
                    raise VerifyError(f"{path}: member {member.name}, expected {want}")
                value = np.load(io.BytesIO(tar.extractfile(member).read()), allow_pickle=False)
                row = i // 2
                if part == "seq.npy":
                    if value.dtype != np.uint8 or value.shape != (seq_len,):
                        raise VerifyError(f"{path}: {member.name} is {value.dtype}{list(value.shape)}, "
                                          f"expected uint8[{seq_len}]")
                    codes[row] = value
                else:
                    if value.dtype != np.float32 or value.shape != (num_targets,):
                        raise VerifyError(f"{path}: {member.name} is {value.dtype}{list(value.shape)}, "
                                          f"expected float32[{num_targets}]")
                    labels[row] = value
                i += 1
    except (tarfile.TarError, OSError, ValueError, EOFError) as e:
        raise VerifyError(f"{path}: unreadable tar shard ({e})") from None
    if i != len(expected):
        raise VerifyError(f"{path}: {i // 2} samples, the manifest says {n}")
    return codes, labels


# ---------------------------------------------------------------- report


def describe(store: Store) -> str:
    m = store.meta
    sources = m.get("sources", [])
    source_bytes = sum(s.get("bytes", 0) for s in sources)
    kind = "Zarr v3 store" if store.kind == "zarr" else "WebDataset store"
    lines = [f"{store.path}: {kind}, format {m['format']}, alphabet {m.get('alphabet')}",
             f"seq_len {store.seq_len}, {store.num_targets} target{'s' if store.num_targets != 1 else ''}, "
             f"splits {', '.join(store.splits)}, {len(sources)} source files"]
    lines.append(f"{'split':<8}{'rows':>10}{'on disk':>12}{'ratio':>8}{'vs one-hot':>12}   label mean / std")
    for name in store.splits:
        sm = store.split_meta[name]
        n = int(sm["n"])
        disk = store.split_bytes(name)
        raw = n * (store.seq_len + 4 * store.num_targets)  # uint8 codes + float32 labels
        onehot = n * (16 * store.seq_len + 4 * store.num_targets)  # float32 one-hot + labels
        stats = _stats_text(sm["label_mean"], sm["label_std"])
        lines.append(f"{name:<8}{n:>10}{_mb(disk):>12}{raw / max(disk, 1):>7.1f}x{onehot / max(disk, 1):>11.1f}x   {stats}")
    lines += ["codecs: " + c for c in store.codecs()]
    total = dir_bytes(store.path)
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


def verify(store: Store) -> list[str]:
    """Re-read every row; return one line per split, raise VerifyError on the first problem."""
    report = []
    for name in store.splits:
        sm = store.split_meta[name]
        moments = LabelMoments.empty(store.num_targets)
        rows = 0
        for codes, labels in store.blocks(name):
            if codes.size and codes.max() > 4:
                bad = int(np.argmax((codes > 4).any(axis=1)))
                raise VerifyError(f"{store.path}: {name} row {rows + bad} has codes above 4 (N)")
            if not np.isfinite(labels).all():
                bad = int(np.argmin(np.isfinite(labels).all(axis=1)))
                raise VerifyError(f"{store.path}: {name} row {rows + bad} has a non-finite label")
            moments = moments.merge(LabelMoments.of(labels))
            rows += len(codes)
        if rows != int(sm["n"]):
            raise VerifyError(f"{store.path}: {name} holds {rows} rows, the metadata says {sm['n']}")
        for what, got, want in (("label_mean", moments.mean, sm["label_mean"]),
                                ("label_std", moments.std, sm["label_std"])):
            if not np.allclose(got, want, rtol=1e-6, atol=1e-9):
                raise VerifyError(f"{store.path}: {name} {what} is {list(got)} over the rows, "
                                  f"the metadata says {want}")
        report.append(f"verify: {name}: {rows} rows ok (codes 0..4, labels finite, n and label stats match)")
    return report


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


def verify_sources(store: Store, src) -> str:
    """Compare every row with the npz files listed in the store's `sources`, in order."""
    src = Path(src)
    sources = store.meta.get("sources") or []
    if not sources:
        raise VerifyError(f"{store.path}: the store records no sources")
    streams = {name: RowStream(store.blocks(name)) for name in store.splits}
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
        codes, labels = read_shard(scan, drop_nonfinite=True)
        got_codes, got_labels = streams[entry["split"]].take(len(codes))
        if got_codes.shape != codes.shape or not np.array_equal(got_codes, codes):
            raise VerifyError(f"{path}: sequences differ from the store's {entry['split']} rows")
        if got_labels.shape != labels.shape or not np.array_equal(got_labels, labels):
            raise VerifyError(f"{path}: labels differ from the store's {entry['split']} rows")
    for name, stream in streams.items():
        extra, _ = stream.take(1)
        if len(extra):
            raise VerifyError(f"{store.path}: {name} has rows beyond those of its sources")
    return f"verify: {len(sources)} source files match (sha256, rows, sequences and labels)"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m convert.inspect",
                                description="Show what a maize_ddp store (.zarr or .wds) holds.")
    p.add_argument("path", help="a store made by convert.npz_to_zarr or convert.npz_to_wds")
    p.add_argument("--verify", action="store_true", help="re-read and check every row")
    p.add_argument("--sources", metavar="SRC", help="with --verify: compare every row with the npz files in SRC")
    a = p.parse_args(argv)
    try:
        store = Store(a.path)
        print(describe(store))
        if a.verify or a.sources:
            for line in verify(store):
                print(line)
            if a.sources:
                print(verify_sources(store, a.sources))
    except ConvertError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
