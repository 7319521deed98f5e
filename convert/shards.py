"""The input side of the converters: find npz shards, check them, read them one at a time.

A conversion makes two passes over the sources, each touching one shard at a time:

1. scan  (`scan_shard`): sha256 of the file, the shape of `arr_0` from its .npy header (no
   decompression), `arr_1` in full (labels are small) and the optional row `ids`. This validates every shard, counts
   the rows each one keeps (after `--drop-nonfinite`) and accumulates label statistics, so
   every output shard's global row range is known before anything is written.
2. read  (`read_shard`): `arr_0` decompressed and turned into uint8 base codes, with each
   kept row's id: the shard's `ids` entry (a gene id, say), else `<file>:<row>`, the file as
   recorded in the store's `sources` and the row in that file.

Both passes are plain functions of one shard, results taken in source order (which makes the
output independent of the number of workers): the scan runs in threads (`scan_and_plan`), the
read in worker processes (`convert.workers.WorkerPool`). Nothing here holds more than one input
shard per process.
"""
from __future__ import annotations

import hashlib
import math
import os
import re
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from maize_ddp.codes import OneHotError, arr0_to_codes
from maize_ddp.errors import Error
from maize_ddp.id_hashes import IdHashes
from maize_ddp.npz_shards import arr0_layout, seq_len_of
from maize_ddp.store_format import SplitMeta, StoreError, StoreMeta, check_ids

SPLIT_ORDER = ("train", "val", "test")  # other split folder names follow, sorted
SPLIT_NAME = re.compile(r"^[A-Za-z0-9_-]+$")  # becomes a Zarr node name and a tar file name
NUMERIC_KINDS = "biuf"  # bool, int, uint, float
HASH_BLOCK = 1 << 20
DECODE_BLOCK = 1 << 20  # bytes of one-hot decoded at a time: fits in a core's L2 cache


class ConvertError(Error):
    """Bad input or an unwritable output; the message names the file and the problem."""


@dataclass(frozen=True)
class Source:
    """One npz file of one split."""

    split: str
    path: Path
    file: str  # path relative to SRC, as recorded in the store's `sources`

    def __fspath__(self) -> str:  # an input path, for the output's overlap check
        return str(self.path)


class Sources(list):
    """find_sources' list of Source, plus warnings about the files it passed over."""

    def __init__(self, items=(), warnings=()):
        super().__init__(items)
        self.warnings = list(warnings)


APPLEDOUBLE = "._"  # macOS metadata beside each file copied from a Mac: not an npz


def find_sources(src, split: str | None = None) -> Sources:
    """The npz shards under SRC in conversion order: split by split, file names sorted."""
    src = Path(src)
    if not src.exists():
        raise ConvertError(f"{src}: no such directory")
    if not src.is_dir():
        raise ConvertError(f"{src}: not a directory")
    skipped = []

    def npz_files(folder: Path) -> list[Path]:
        files = []
        for p in folder.iterdir():
            if p.suffix != ".npz":
                continue
            if p.name.startswith(APPLEDOUBLE):
                skipped.append(p)
            elif p.is_file():
                files.append(p)
            elif p.is_symlink() and not p.exists():  # a shard the user meant to convert
                raise ConvertError(f"{p}: a symlink to {os.readlink(p)}, which does not exist")
        return sorted(files, key=lambda p: p.name)

    def found(items: list[Source]) -> Sources:
        return Sources(items, [f"{src}: skipped {len(skipped)} macOS metadata file(s) named ._*.npz, "
                               f"e.g. {skipped[0]}"] if skipped else [])

    if split is not None:
        _check_split_name(split, src)
        files = npz_files(src)
        if not files:
            raise ConvertError(f"{src}: no .npz files")
        return found([Source(split, p, p.name) for p in files])

    folders = {d.name: files for d in src.iterdir()
               if d.is_dir() and not d.name.startswith(".") and (files := npz_files(d))}
    if not folders:
        if npz_files(src):
            raise ConvertError(f"{src}: holds .npz files but no train/ val/ test/ folders "
                               "(pass --split NAME to convert it as one split)")
        raise ConvertError(f"{src}: empty (no train/ val/ test/ folders with .npz files)")
    order = [s for s in SPLIT_ORDER if s in folders] + sorted(set(folders) - set(SPLIT_ORDER))
    for name in order:
        _check_split_name(name, src / name)
    return found([Source(name, p, f"{name}/{p.name}") for name in order for p in folders[name]])


def _check_split_name(name: str, where: Path) -> None:
    if not SPLIT_NAME.match(name):
        raise ConvertError(f"{where}: split name {name!r} must use only letters, digits, '_' and '-'")


# ---------------------------------------------------------------- label statistics


@dataclass
class LabelMoments:
    """Count, mean and sum of squared deviations per target (float64), mergeable (Chan et al.).

    Merging per-shard moments in source order gives the same bits whatever the worker count.
    """

    n: int
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def empty(cls, num_targets: int) -> "LabelMoments":
        return cls(0, np.zeros(num_targets), np.zeros(num_targets))

    @classmethod
    def of(cls, y: np.ndarray) -> "LabelMoments":
        if len(y) == 0:
            return cls.empty(y.shape[1])
        mean = y.mean(axis=0, dtype=np.float64)
        return cls(len(y), mean, ((y - mean) ** 2).sum(axis=0))

    def merge(self, other: "LabelMoments") -> "LabelMoments":
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        n = self.n + other.n
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.n / n)
        m2 = self.m2 + other.m2 + delta ** 2 * (self.n * other.n / n)
        return LabelMoments(n, mean, m2)

    @property
    def std(self) -> np.ndarray:  # population std, as the format asks
        return np.sqrt(self.m2 / self.n) if self.n else np.zeros_like(self.m2)


# ---------------------------------------------------------------- pass 1: scan


@dataclass
class ShardScan:
    """What the scan learned about one source; all that planning needs."""

    source: Source
    bytes: int
    sha256: str
    rows_in: int  # rows in the file
    rows: int  # rows kept (rows_in minus non-finite labels dropped)
    seq_len: int = 0
    layout: str = ""
    num_targets: int = 0
    moments: LabelMoments | None = field(default=None, repr=False)
    has_ids: bool = False  # the shard carries an `ids` member
    id_chars: int = 0  # the longest id, given or made

    @property
    def decoded_bytes(self) -> int:
        """What read_shard returns for this shard: codes, labels and ids (UTF-32)."""
        return self.rows_in * (self.seq_len + 4 * self.num_targets + 4 * self.id_chars)

    @property
    def path(self) -> Path:
        return self.source.path

    @property
    def dropped(self) -> int:
        return self.rows_in - self.rows

    def record(self) -> dict:
        """The entry of the store's `sources` list."""
        s = self.source
        return {"split": s.split, "file": s.file, "bytes": self.bytes, "sha256": self.sha256,
                "rows": self.rows}


def sha256_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def scan_shard(source: Source, drop_nonfinite: bool = False) -> ShardScan:
    path = source.path
    with _reading(path):
        size = path.stat().st_size
        sha = sha256_file(path)
        with zipfile.ZipFile(path) as z:
            _require_members(z, path)
            shape, dtype = _member_header(z, "arr_0.npy")
            with z.open("arr_1.npy") as f:
                y = np.lib.format.read_array(f, allow_pickle=False)
            ids = _read_ids(z, path)
    if len(shape) not in (2, 3) or (len(shape) == 2 and dtype.kind != "u"):
        raise ConvertError(f"{path}: arr_0 is {dtype}{list(shape)}; expected one-hot [N, 4, L] or [N, L, 4], "
                           "or uint8 base codes [N, L]")
    if dtype.kind not in NUMERIC_KINDS:
        raise ConvertError(f"{path}: arr_0 has dtype {dtype}; expected a float, integer or bool one-hot array")
    if y.ndim not in (1, 2) or y.dtype.kind not in NUMERIC_KINDS:
        raise ConvertError(f"{path}: arr_1 is {y.dtype}{list(y.shape)}; expected numeric labels [N] or [N, T]")
    rows = shape[0]
    if y.shape[0] != rows:
        raise ConvertError(f"{path}: arr_0 has {rows} rows but arr_1 has {y.shape[0]}")
    if ids is not None and len(ids) != rows:
        raise ConvertError(f"{path}: ids has {len(ids)} entries for {rows} rows")
    id_chars = int(np.char.str_len(ids).max(initial=0)) if ids is not None else len(f"{source.file}:{max(rows - 1, 0)}")
    scan = ShardScan(source, size, sha, rows, rows, has_ids=ids is not None, id_chars=id_chars)
    if rows == 0:
        return scan  # skipped with a warning by plan_sources; its shapes do not matter
    layout = arr0_layout(shape, dtype)
    if layout is None:
        raise ConvertError(f"{path}: arr_0 has shape {list(shape)}: no channel axis of 4 "
                           "(expected [N, 4, L] or [N, L, 4])")
    seq_len = seq_len_of(shape, layout)
    if seq_len == 0:
        raise ConvertError(f"{path}: arr_0 has shape {list(shape)}: sequences of length 0")
    y = labels_2d(y)
    if y.shape[1] == 0:
        raise ConvertError(f"{path}: arr_1 has shape {list(y.shape)}: no targets")
    finite = np.isfinite(y).all(axis=1)
    bad = rows - int(finite.sum())
    if bad and not drop_nonfinite:
        first = int(np.argmin(finite))
        raise ConvertError(f"{path}: arr_1 has non-finite labels (NaN or inf) in {bad} rows, first at row "
                           f"{first}; pass --drop-nonfinite to drop those rows")
    scan.rows = rows - bad
    scan.seq_len, scan.layout, scan.num_targets = seq_len, layout, y.shape[1]
    scan.moments = LabelMoments.of(y[finite] if bad else y)
    return scan


def _read_ids(z: zipfile.ZipFile, path: Path) -> np.ndarray | None:
    """The shard's `ids` member, checked (maize_ddp.store_format.check_ids), or None."""
    if "ids.npy" not in z.namelist():
        return None
    with z.open("ids.npy") as f:
        try:
            ids = np.lib.format.read_array(f, allow_pickle=False)
        except ValueError as e:
            raise ConvertError(f"{path}: ids is not a plain string array ({e})") from None
    try:
        return check_ids(ids, path)
    except StoreError as e:
        raise ConvertError(str(e)) from None


def labels_2d(y: np.ndarray) -> np.ndarray:
    """arr_1 as float32 [N, T]; a 1-D arr_1 is one target."""
    return (y[:, None] if y.ndim == 1 else y).astype(np.float32, copy=False)


def _require_members(z: zipfile.ZipFile, path: Path) -> None:
    names = z.namelist()
    for key in ("arr_0", "arr_1"):
        if f"{key}.npy" not in names:
            have = ", ".join(n.removesuffix(".npy") for n in names) or "nothing"
            raise ConvertError(f"{path}: missing {key} (the npz holds: {have})")


def _member_header(z: zipfile.ZipFile, member: str) -> tuple[tuple, np.dtype]:
    """Shape and dtype from a .npy member's header: decompresses only its first bytes."""
    with z.open(member) as f:
        shape, _, dtype = _read_npy_header(f)
    return shape, dtype


def _read_npy_header(f) -> tuple[tuple, bool, np.dtype]:
    """Shape, Fortran order and dtype; leaves f at the first byte of the data."""
    version = np.lib.format.read_magic(f)
    read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                   (2, 0): np.lib.format.read_array_header_2_0}.get(version)
    if read_header is None:
        raise ValueError(f"unsupported .npy version {version}")
    return read_header(f)


class _reading:
    """Turn anything that goes wrong while reading one npz into a ConvertError naming it."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        return self

    def __exit__(self, kind, err, tb):
        if err is None or isinstance(err, ConvertError):
            return False
        if isinstance(err, (zipfile.BadZipFile, zlib.error, EOFError, ValueError, KeyError,
                            NotImplementedError, RuntimeError)):
            raise ConvertError(f"{self.path}: not a valid npz file ({_reason(err)})") from None
        if isinstance(err, OSError):
            raise ConvertError(f"{self.path}: cannot read ({err.strerror or err})") from None
        return False


def _reason(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


# ---------------------------------------------------------------- plan


@dataclass
class Plan:
    """Every source scanned and checked: row counts, shapes and label statistics per split."""

    scans: list[ShardScan]
    seq_len: int
    num_targets: int
    splits: dict[str, list[ShardScan]]
    warnings: list[str]

    def n(self, split: str) -> int:
        return sum(s.rows for s in self.splits[split])

    def moments(self, split: str) -> LabelMoments:
        total = LabelMoments.empty(self.num_targets)
        for s in self.splits[split]:
            if s.moments is not None:
                total = total.merge(s.moments)
        return total

    def split_meta(self, split: str) -> SplitMeta:
        m = self.moments(split)
        return SplitMeta(self.n(split), tuple(m.mean.tolist()), tuple(m.std.tolist()))

    def store_meta(self) -> StoreMeta:
        # `origin` is set by convert.driver from SRC's generator description (maize_ddp.origin)
        return StoreMeta(self.seq_len, self.num_targets, tuple(self.sources()), getattr(self, "origin", None))

    def first_rows(self) -> list[int]:
        """Each scan's first row inside its split (after drops)."""
        starts, seen = [], {}
        for s in self.scans:
            starts.append(seen.get(s.source.split, 0))
            seen[s.source.split] = starts[-1] + s.rows
        return starts

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.scans)

    @property
    def largest_shard_rows(self) -> int:
        return max(s.rows_in for s in self.scans)

    @property
    def largest_decoded_bytes(self) -> int:
        return max(s.decoded_bytes for s in self.scans)

    @property
    def id_chars(self) -> int:
        return max(s.id_chars for s in self.scans)

    @property
    def dropped(self) -> int:
        return sum(s.dropped for s in self.scans)

    @property
    def source_bytes(self) -> int:
        return sum(s.bytes for s in self.scans)

    def sources(self) -> list[dict]:
        return [s.record() for s in self.scans]

    def all_warnings(self) -> list[str]:
        return self.warnings + [f"{s.path}: dropped {s.dropped} rows with non-finite labels"
                                for s in self.scans if s.dropped]


def scan_and_plan(sources: Sources, src, workers: int, drop_nonfinite: bool,
                  on_scan: Callable[[ShardScan], None] = lambda scan: None) -> Plan:
    """Pass 1 over every source in `workers` threads, then the checks across shards.

    Threads, not processes: hashing, inflating the labels and reading headers release the
    GIL, and the scan's results fix the size of the read pass's shared result slots, which
    must exist before its worker processes are forked.
    """
    scans = []
    with ThreadPoolExecutor(workers) as threads:
        try:
            for scan in threads.map(scan_shard, sources, [drop_nonfinite] * len(sources)):
                scans.append(scan)
                on_scan(scan)
        except BaseException:
            threads.shutdown(cancel_futures=True)
            raise
    return plan_sources(scans, src, getattr(sources, "warnings", []))


def plan_sources(scans: list[ShardScan], src, warnings: list[str] = ()) -> Plan:
    """Check that the shards agree with each other, and gather them by split."""
    ref = None
    warnings = list(warnings)
    for s in scans:
        if s.rows_in == 0:
            warnings.append(f"{s.path}: empty shard (0 rows), skipped")
            continue
        if ref is None:
            ref = s
        elif s.seq_len != ref.seq_len:
            raise ConvertError(f"{s.path}: sequence length {s.seq_len} differs from {ref.seq_len} "
                               f"in {ref.path}")
        elif s.num_targets != ref.num_targets:
            raise ConvertError(f"{s.path}: arr_1 has {s.num_targets} targets but {ref.path} has "
                               f"{ref.num_targets}")
    if ref is None:
        raise ConvertError(f"{src}: every shard is empty (0 rows)")
    splits: dict[str, list[ShardScan]] = {}
    for s in scans:
        splits.setdefault(s.source.split, []).append(s)
    for name, members in splits.items():
        if sum(s.rows for s in members) == 0:
            raise ConvertError(f"{members[0].path.parent}: split {name!r} has no rows left to convert")
    for s in scans:
        if s.rows_in == 0:  # give skipped shards the common shapes: they yield 0 rows of them
            s.seq_len, s.num_targets, s.layout = ref.seq_len, ref.num_targets, ref.layout
            s.moments = LabelMoments.empty(ref.num_targets)
    return Plan(scans, ref.seq_len, ref.num_targets, splits, warnings)


# ---------------------------------------------------------------- pass 2: read


def read_shard(scan: ShardScan, drop_nonfinite: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Codes uint8 [rows, L], labels float32 [rows, T] and ids (str [rows]) of the rows this
    shard keeps."""
    path = scan.path
    if scan.rows_in == 0:  # an empty shard: skipped
        return (np.empty((0, scan.seq_len), np.uint8), np.empty((0, scan.num_targets), np.float32),
                np.empty(0, str))
    with _reading(path):
        with zipfile.ZipFile(path) as z:
            with z.open("arr_1.npy") as f:
                y = labels_2d(np.lib.format.read_array(f, allow_pickle=False))
            ids = _read_ids(z, path)
            if y.shape != (scan.rows_in, scan.num_targets) or (ids is not None) != scan.has_ids:
                raise ConvertError(f"{path}: changed while being converted")
            codes = _read_codes(z, scan)
    if ids is None:
        ids = default_ids(scan.source.file, scan.rows_in)
    if scan.dropped:
        keep = np.isfinite(y).all(axis=1)
        codes, y, ids = codes[keep], y[keep], ids[keep]
    return codes, np.ascontiguousarray(y), ids


class SplitIds:
    """Refuses an id seen before in the same split (IdHashes: 8 bytes a row, not the ids); a
    repeat is named from the shard where it recurs."""

    def __init__(self):
        self.seen: dict[str, IdHashes] = {}

    def add(self, scan: ShardScan, ids: np.ndarray) -> None:
        repeats = self.seen.setdefault(scan.source.split, IdHashes()).add(ids.tolist())
        if repeats.any():  # ids inside one shard are unique already
            raise ConvertError(f"{scan.path}: id {str(ids[np.argmax(repeats)])!r} is also the id of a row in "
                               f"an earlier shard of split {scan.source.split!r}; ids must be unique")


def default_ids(file: str, rows: int) -> np.ndarray:
    """`<file>:<row>` for a shard without ids: unique, and it leads back to the input row."""
    return np.array([f"{file}:{row}" for row in range(rows)], dtype=str)  # no wider than the longest


def _read_codes(z: zipfile.ZipFile, scan: ShardScan) -> np.ndarray:
    """arr_0 as uint8 codes, inflated and decoded DECODE_BLOCK bytes of rows at a time.

    The one-hot shard itself (48 MB for 1000 x 3020 float32) is never held: each block is
    decoded while it is still in the CPU cache, which is 1.3x faster than decoding the whole
    array and scales better across worker processes, since they share the memory bus. (A
    Fortran-order array, rare in npz files, has no contiguous rows and is held once, whole.)
    """
    path = scan.path
    with z.open("arr_0.npy") as f:
        shape, fortran_order, dtype = _read_npy_header(f)
        length = seq_len_of(shape, scan.layout)
        if shape[0] != scan.rows_in or length != scan.seq_len:
            raise ConvertError(f"{path}: changed while being converted")
        if fortran_order:  # rows are not contiguous in the file: the shard is read whole, once
            whole = _read_whole(f, dtype.itemsize * math.prod(shape)).view(dtype).reshape(shape, order="F")
            per_block = _rows_per_block(shape, dtype)
            blocks = ((first, whole[first:first + per_block]) for first in range(0, shape[0], per_block))
        else:
            blocks = _row_blocks(f, shape, dtype)
        codes = np.empty((scan.rows_in, scan.seq_len), np.uint8)
        for first, x in blocks:
            try:
                codes[first:first + len(x)] = arr0_to_codes(x, scan.layout, first_row=first)
            except OneHotError as e:
                raise ConvertError(f"{path}: arr_0 {e}") from None
        f.read()  # to the end: zipfile checks the member's CRC there
    return codes


def _row_blocks(f, shape: tuple, dtype: np.dtype) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, rows) of a C-order array read from a stream, DECODE_BLOCK bytes at a time."""
    row_bytes = dtype.itemsize * math.prod(shape[1:])
    per_block = _rows_per_block(shape, dtype)
    for first in range(0, shape[0], per_block):
        n = min(per_block, shape[0] - first)
        data = f.read(n * row_bytes)
        if len(data) != n * row_bytes:
            raise EOFError(f"arr_0 ends at row {first + len(data) // row_bytes} of {shape[0]}")
        yield first, np.frombuffer(data, dtype).reshape((n,) + shape[1:])


def _read_whole(f, size: int) -> np.ndarray:
    """size bytes of a stream as one uint8 array, read a block at a time: f.read(size) would
    briefly hold them twice (its pieces, then their join)."""
    out = np.empty(size, np.uint8)
    at = 0
    while at < size:
        piece = f.read(min(DECODE_BLOCK, size - at))
        if not piece:
            raise EOFError(f"arr_0 ends after {at} of its {size} bytes")
        out[at:at + len(piece)] = np.frombuffer(piece, np.uint8)
        at += len(piece)
    return out


def _rows_per_block(shape: tuple, dtype: np.dtype) -> int:
    return max(1, DECODE_BLOCK // max(dtype.itemsize * math.prod(shape[1:]), 1))
