"""Open a store's metadata: which kind it is, its shape, its splits, and checks against a model.

Only metadata is read here (zarr.json / manifest.json), and every data file the writer recorded
is checked to exist with its size; row data are read (and checked) by the sources. Every
problem becomes a StoreError whose one-line message names the path.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from maize_ddp.store_format import (FORMAT, MISSING_CODE, FileRecord, SplitMeta, StoreError, StoreMeta,
                                    check_present, require)


@dataclass(frozen=True)
class Shard:
    """One WebDataset tar: rows first_row .. first_row + n - 1 of its split."""

    path: str  # relative to the .wds folder
    n: int
    first_row: int


@dataclass(frozen=True)
class SplitInfo:
    n: int
    label_mean: list[float]
    label_std: list[float]
    # Layout, for the readers: rows per Zarr chunk (Zarr), or the tar shards (WebDataset).
    chunk_rows: int | None = field(default=None, repr=False)
    shards: tuple[Shard, ...] = field(default=(), repr=False)
    files: tuple[FileRecord, ...] = field(default=(), repr=False)  # every data file, as written
    ids_file: FileRecord | None = field(default=None, repr=False)  # WebDataset's ids.txt (also in files)
    # WebDataset's rows.crc32 (also in files; store_format.row_crc32s); None in older stores
    row_crc32_file: FileRecord | None = field(default=None, repr=False)
    # Zarr: each chunk's place CRC per array (store_format.place_crc32); None in older stores
    chunk_crc32: dict | None = field(default=None, repr=False)


@dataclass(frozen=True)
class StoreInfo:
    kind: str  # "zarr" or "wds"
    path: Path
    seq_len: int
    num_targets: int
    splits: dict[str, SplitInfo]
    attrs: dict = field(default_factory=dict, repr=False)  # the root metadata as stored
    meta: StoreMeta | None = field(default=None, repr=False)  # the same, parsed (meta.origin: how rows were made)

    def check(self, split: str | None = None, seq_len: int | None = None,
              num_targets: int | None = None) -> None:
        """Raise StoreError unless the store has `split` and the model's seq_len / num_targets."""
        if split is not None and split not in self.splits:
            have = ", ".join(sorted(self.splits)) or "none"
            raise StoreError(f"{self.path}: no split {split!r} (the store has: {have})")
        if seq_len is not None and seq_len != self.seq_len:
            raise StoreError(f"{self.path}: the model expects seq_len {seq_len}, "
                             f"the store has seq_len {self.seq_len}")
        if num_targets is not None and num_targets != self.num_targets:
            raise StoreError(f"{self.path}: the model expects {num_targets} targets, "
                             f"the store has {self.num_targets}")


def open_store(path) -> StoreInfo:
    """Recognise a maize_ddp Zarr v3 group or WebDataset folder by its metadata file."""
    path = Path(path)
    if not path.exists():
        raise StoreError(f"{path}: no such file or directory")
    if (path / "manifest.json").is_file():
        return _open_wds(path)
    if (path / "zarr.json").is_file():
        return _open_zarr(path)
    if (path / ".zgroup").is_file() or (path / ".zarray").is_file():
        raise StoreError(f"{path}: a Zarr v2 store; format {FORMAT} is Zarr v3 "
                         "(convert the data again with convert.npz_to_zarr)")
    raise StoreError(f"{path}: neither a maize_ddp Zarr store (no zarr.json) "
                     "nor a WebDataset store (no manifest.json)")






def _open_zarr(path: Path) -> StoreInfo:
    import zarr

    try:
        root = zarr.open_group(path, mode="r")
    except Exception as e:  # zarr raises several types for a broken group
        raise StoreError(f"{_bad_metadata(path, path)}: cannot open as a Zarr v3 group ({e})") from None
    attrs = dict(root.attrs)
    store = StoreMeta.from_dict(attrs, f"{path}/zarr.json")
    seq_len, num_targets = store.seq_len, store.num_targets
    splits = {}
    for name in require(attrs, "splits", f"{path}/zarr.json"):
        try:
            group = root[name]
            seq, y = group["seq"], group["y"]
        except KeyError:
            raise StoreError(f"{path}: split {name!r} is listed but has no {name}/seq and {name}/y") from None
        except Exception as e:  # a damaged zarr.json below the root
            raise StoreError(f"{_bad_metadata(path / name, path)}: unreadable Zarr metadata ({e})") from None
        where = f"{path}/{name}/zarr.json"
        meta = dict(group.attrs)
        split = SplitMeta.from_dict(meta, where, num_targets)
        n = split.n
        if seq.shape != (n, seq_len) or y.shape != (n, num_targets) or seq.dtype != "uint8":
            raise StoreError(f"{path}: {name}/seq {seq.dtype}{list(seq.shape)} and {name}/y "
                             f"{list(y.shape)} do not match n={n}, seq_len={seq_len}, "
                             f"num_targets={num_targets}")
        files = tuple(FileRecord.from_dict(f, where) for f in require(meta, "files", where))
        try:
            ids = group["id"]
        except KeyError:
            raise StoreError(f"{path}: split {name!r} has no {name}/id (row ids; written by an older "
                             "converter? convert the data again)") from None
        if ids.shape != (n,):
            raise StoreError(f"{path}: {name}/id has shape {list(ids.shape)}, expected [{n}]")
        _check_fill_values(path, name, seq, y, ids)
        for array in (seq, y, ids):
            # one file per shard (or per chunk when unsharded), every one written
            rows = int((array.shards or array.chunks)[0])
            expected = -(-n // rows)
            have = sum(f.path.startswith(f"{name}/{array.basename}/") for f in files)
            if have != expected:
                raise StoreError(f"{path}: {name}/{array.basename} records {have} data files, "
                                 f"its shape needs {expected}")
        chunk_rows = int(seq.chunks[0])
        splits[name] = SplitInfo(n, list(split.label_mean), list(split.label_std), chunk_rows=chunk_rows,
                                 files=files, chunk_crc32=_chunk_crc32(group.attrs, n, chunk_rows,
                                                                       f"{path}/{name}/zarr.json"))
    return _checked(StoreInfo("zarr", path, seq_len, num_targets, splits, attrs, store))


def _chunk_crc32(attrs, n: int, chunk_rows: int, where: str) -> dict | None:
    found = attrs.get("chunk_crc32")
    if found is None:
        return None
    chunks = -(-n // chunk_rows)
    if not (isinstance(found, dict) and all(isinstance(found.get(a), list) and len(found[a]) == chunks
                                            for a in ("seq", "y", "id"))):
        raise StoreError(f"{where}: chunk_crc32 must list {chunks} checksums for each of seq, y and id")
    return {a: [int(c) for c in found[a]] for a in ("seq", "y", "id")}


def _bad_metadata(folder: Path, fallback: Path) -> Path:
    """The first zarr.json under folder that is not JSON, to name in the error (else fallback)."""
    for meta in sorted(folder.rglob("zarr.json")):
        try:
            json.loads(meta.read_text())
        except (OSError, ValueError):
            return meta
    return fallback


def _check_fill_values(path: Path, split: str, seq, y, ids) -> None:
    """A missing chunk reads as its array's fill value: only values no row can hold make that
    an error on read rather than rows of As, zero labels and blank ids."""
    fills = {"seq": (seq, MISSING_CODE), "y": (y, "NaN"), "id": (ids, "")}
    for name, (array, want) in fills.items():
        got = array.fill_value
        ok = np.isnan(got) if want == "NaN" else got == want
        if not ok:
            raise StoreError(f"{path}/{split}/{name}/zarr.json: fill value {got!r}, the format needs {want!r} "
                             "(a missing chunk would read back as data; convert the data again)")


def _checked(info: StoreInfo) -> StoreInfo:
    for split in info.splits.values():
        check_present(info.path, split.files)
    return info


def _open_wds(path: Path) -> StoreInfo:
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except (OSError, ValueError) as e:
        raise StoreError(f"{path}: unreadable manifest.json ({e})") from None
    where = f"{path}/manifest.json"
    store = StoreMeta.from_dict(manifest, where)
    seq_len, num_targets = store.seq_len, store.num_targets
    splits = {}
    for name, meta in require(manifest, "splits", where).items():
        split_where = f"{where} split {name!r}"
        split = SplitMeta.from_dict(meta, split_where, num_targets)
        entries = require(meta, "shards", split_where)
        shards = tuple(Shard(str(require(s, "path", f"{split_where} shards")), int(require(s, "n", f"{split_where} shards")),
                             int(require(s, "first_row", f"{split_where} shards")))
                       for s in entries)
        ids_file = FileRecord.from_dict(require(meta, "ids", split_where), f"{split_where} ids")
        crc_file = FileRecord.from_dict(meta["row_crc32"], f"{split_where} row_crc32") if "row_crc32" in meta else None
        files = tuple(FileRecord.from_dict(s, f"{split_where} shards") for s in entries) + (ids_file,)
        files += (crc_file,) if crc_file else ()
        _check_shards(path, name, split.n, shards)
        if crc_file and crc_file.bytes != 4 * split.n:
            raise StoreError(f"{where}: {name} row_crc32 records {crc_file.bytes} bytes for {split.n} rows")
        splits[name] = SplitInfo(split.n, list(split.label_mean), list(split.label_std), shards=shards, files=files,
                                 ids_file=ids_file, row_crc32_file=crc_file)
    return _checked(StoreInfo("wds", path, seq_len, num_targets, splits, manifest, store))


def _check_shards(path: Path, split: str, n: int, shards: tuple[Shard, ...]) -> None:
    """Shards must tile rows 0..n-1 in order: row identity depends on it."""
    row = 0
    for shard in shards:
        if shard.first_row != row:
            raise StoreError(f"{path}: {split} shard {shard.path} starts at row {shard.first_row}, "
                             f"expected {row}")
        row += shard.n
    if row != n:
        raise StoreError(f"{path}: {split} shards hold {row} rows, the manifest says n={n}")
