"""The store contract shared by the writers (convert/) and the readers (maize_ddp.data, inspect).

Besides the version and the alphabet, it holds how a store proves its integrity:

- Every data file (a Zarr shard file, a tar shard) is recorded at write time with its size and
  CRC-32. Opening a store checks that each recorded file exists with its size (a stat per
  file); `inspect --verify` and the WebDataset reader, which reads a tar whole anyway, also
  check the CRC.
- Zarr reads a missing chunk as the array's fill value without a word. The fill values are
  therefore ones no written row can hold, MISSING_CODE for sequences and NaN for labels, and
  every read checks codes <= N and finite labels: a missing chunk is an error, not a row of As.
- Zarr chunks also carry a CRC-32C (a codec), so a damaged chunk fails to decode.

Numpy only: the converters import this without paying for torch.
"""
from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from maize_ddp.codes import ALPHABET
from maize_ddp.errors import Error

FORMAT = "maize_ddp/2"
MAX_CODE = len(ALPHABET) - 1  # N
MISSING_CODE = 255  # Zarr fill value of seq: no written base has it
MAX_ID_CHARS = 200  # ids travel as fixed-width strings: one huge id would widen every row
CRC_BLOCK = 1 << 20


FLOAT32_MAX = float(np.finfo(np.float32).max)  # labels are stored as float32: larger ones become inf


class StoreError(Error, ValueError):
    """The path is not a readable maize_ddp store, is damaged, or does not fit what was asked."""


def require(meta, key: str, where: str):
    """meta[key], or a StoreError naming where it is missing (`where` names the file)."""
    if not isinstance(meta, dict) or key not in meta:
        raise StoreError(f"{where}: missing metadata {key!r} (written by an older converter or another tool? "
                         "convert the data again)")
    return meta[key]


@dataclass(frozen=True)
class StoreMeta:
    """A store's own metadata: Zarr's root group attributes, the top of WebDataset's manifest.json.
    Each format adds its `splits` (Zarr: their names; WebDataset: their entries)."""

    seq_len: int
    num_targets: int
    sources: tuple = ()  # {"split", "file", "bytes", "sha256", "rows"} per input shard, in row order
    # How the rows were made: {"generator", "settings"} from the npz folder's summary.json (or
    # synth's truth.json), with genome_to_npz's window geometry; None for another tool's npz.
    # Interpretation reads the window's landmarks, variant scoring the exact geometry, from it.
    origin: dict | None = None

    def to_dict(self) -> dict:
        return {"format": FORMAT, "alphabet": ALPHABET, "seq_len": self.seq_len, "num_targets": self.num_targets,
                "sources": list(self.sources), "origin": self.origin}

    @classmethod
    def from_dict(cls, d: dict, where: str) -> "StoreMeta":
        fmt = require(d, "format", where)
        if fmt != FORMAT:
            raise StoreError(f"{where}: store format {fmt!r}, this maize_ddp reads {FORMAT!r} "
                             "(convert the data again with this version's convert/)")
        if d.get("alphabet", ALPHABET) != ALPHABET:
            raise StoreError(f"{where}: alphabet {d['alphabet']!r}, expected {ALPHABET!r}")
        origin = d.get("origin")
        if origin is not None and not (isinstance(origin, dict) and isinstance(origin.get("settings"), dict)):
            raise StoreError(f"{where}: origin is {origin!r}; expected {{\"generator\", \"settings\"}} or null")
        return cls(int(require(d, "seq_len", where)), int(require(d, "num_targets", where)),
                   tuple(d.get("sources", ())), origin)


@dataclass(frozen=True)
class SplitMeta:
    """A split's metadata in both formats: its rows and per-target label statistics (float64 over
    the rows, population std). Each format adds where the rows lie and its file records."""

    n: int
    label_mean: tuple[float, ...]
    label_std: tuple[float, ...]

    def to_dict(self) -> dict:
        return {"n": self.n, "label_mean": list(self.label_mean), "label_std": list(self.label_std)}

    @classmethod
    def from_dict(cls, d: dict, where: str, num_targets: int) -> "SplitMeta":
        meta = cls(int(require(d, "n", where)), tuple(float(v) for v in require(d, "label_mean", where)),
                   tuple(float(v) for v in require(d, "label_std", where)))
        if len(meta.label_mean) != num_targets or len(meta.label_std) != num_targets:
            raise StoreError(f"{where}: label_mean/label_std have {len(meta.label_mean)}/{len(meta.label_std)} "
                             f"entries for {num_targets} targets")
        return meta


@dataclass(frozen=True)
class FileRecord:
    """A data file of a store as its writer left it."""

    path: str  # relative to the store root
    bytes: int
    crc32: int

    def to_dict(self) -> dict:
        return {"path": self.path, "bytes": self.bytes, "crc32": self.crc32}

    @classmethod
    def from_dict(cls, d: dict, where: str) -> "FileRecord":
        try:
            return cls(str(d["path"]), int(d["bytes"]), int(d["crc32"]))
        except (KeyError, TypeError, ValueError):
            raise StoreError(f"{where}: a file record without path/bytes/crc32 (written by an older "
                             "converter? convert the data again)") from None


def crc32_file(path) -> int:
    crc = 0
    with open(path, "rb") as fh:
        while block := fh.read(CRC_BLOCK):
            crc = zlib.crc32(block, crc)
    return crc


def record_file(root, rel: str) -> FileRecord:
    path = Path(root) / rel
    return FileRecord(rel, path.stat().st_size, crc32_file(path))


class RecordedFile:
    """A data file written front to back, its size and CRC-32 counted as it goes."""

    def __init__(self, root, rel: str):
        self.rel, self.bytes, self.crc = rel, 0, 0
        self.fh = open(Path(root) / rel, "wb")

    def write(self, data) -> None:
        self.fh.write(data)
        self.bytes += memoryview(data).nbytes
        self.crc = zlib.crc32(data, self.crc)

    def close(self) -> FileRecord:
        self.fh.close()
        return FileRecord(self.rel, self.bytes, self.crc)


def check_present(root, records) -> None:
    """Each recorded file exists with its recorded size: cheap enough for every open."""
    for r in records:
        path = Path(root) / r.path
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            raise StoreError(f"{path}: missing (the store records it; the store is damaged: "
                             "restore it or convert the data again)") from None
        except OSError as e:
            raise StoreError(f"{path}: cannot read ({e.strerror or e})") from None
        if size != r.bytes:
            raise StoreError(f"{path}: {size} bytes, the store recorded {r.bytes} (truncated or "
                             "replaced: restore it or convert the data again)")


def check_checksum(root, record: FileRecord) -> None:
    path = Path(root) / record.path
    try:
        crc = crc32_file(path)
    except OSError as e:
        raise StoreError(f"{path}: cannot read ({e.strerror or e})") from None
    if crc != record.crc32:
        raise StoreError(f"{path}: CRC-32 {crc:08x}, the store recorded {record.crc32:08x} "
                         "(the file is damaged: restore it or convert the data again)")


# Characters an id may not hold: the TSV separators and every line break str.splitlines() knows
# (outputs are read back line by line), and U+FFFD, which a byte that is not UTF-8 became on
# reading: kept, the id would no longer match the user's table.
ID_FORBIDDEN = "\t\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029\ufffd"


def id_problem(text: str) -> str | None:
    """Why `text` cannot be a row id, or None."""
    if not text:
        return "empty id"
    if len(text) > MAX_ID_CHARS:
        return f"id {text[:40]!r}... is longer than {MAX_ID_CHARS} characters"
    bad = next((c for c in text if c in ID_FORBIDDEN), None)
    if bad == "\ufffd":
        return f"id {text!r} holds a byte that is not UTF-8 (shown as U+FFFD): save the file as UTF-8"
    if bad is not None:
        return (f"id {text!r} holds a tab or line break ({bad!r}; ids are the first column of tab-separated "
                "outputs)")
    return None


def check_ids(ids: np.ndarray, where) -> np.ndarray:
    """A shard's row ids as str [N], checked: non-empty, at most MAX_ID_CHARS, no tab or line
    break (ids are the first column of tab-separated outputs), none repeated."""
    if ids.ndim != 1 or ids.dtype.kind not in "US":
        raise StoreError(f"{where}: ids is {ids.dtype}{list(ids.shape)}; expected a 1-D string array")
    ids = ids.astype(str)
    length = np.char.str_len(ids)
    bad = (length == 0) | (length > MAX_ID_CHARS)
    for char in ID_FORBIDDEN:
        bad |= np.char.find(ids, char) >= 0
    if bad.any():
        row = int(np.argmax(bad))
        shown = str(ids[row]) if length[row] <= 40 else str(ids[row])[:40] + "..."
        raise StoreError(f"{where}: ids row {row} is {shown!r}: ids must be 1 to {MAX_ID_CHARS} characters, "
                         "without tabs, line breaks or bytes that are not UTF-8")
    unique, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        k = int(np.argmax(counts > 1))
        rows = np.flatnonzero(ids == unique[k])
        raise StoreError(f"{where}: id {str(unique[k])!r} is on rows {rows[0]} and {rows[1]}"
                         + (f" (and {len(rows) - 2} more)" if len(rows) > 2 else ""))
    return ids.astype(f"<U{max(int(length.max(initial=0)), 1)}")  # no wider than the longest


def place_crc32(split: str, array: str, chunk: int, rows) -> int:
    """The CRC-32 of one Zarr chunk's decoded rows, seeded with where the chunk belongs
    (split/array/index). Zarr's own per-chunk checksum proves a chunk is whole, not that it is
    the right one: a shard file swapped with another of the same size (or copied from another
    store of the same shape) decodes cleanly. This one ties the rows to their place: the writer
    records one per chunk (the split's `chunk_crc32` attribute) and every read checks it."""
    crc = zlib.crc32(f"{split}/{array}/{chunk}".encode())
    if array == "id":
        return zlib.crc32("\n".join(str(i) for i in rows).encode(), crc)
    return zlib.crc32(np.ascontiguousarray(rows).view(np.uint8).reshape(-1), crc)


def place_crc32s(split: str, array: str, first_chunk: int, chunk_rows: int, rows) -> list[int]:
    """place_crc32 of every chunk in `rows`, which start at chunk `first_chunk`."""
    return [place_crc32(split, array, first_chunk + i, rows[a:a + chunk_rows])
            for i, a in enumerate(range(0, len(rows), chunk_rows))]


def check_place(recorded: list[int] | None, split: str, array: str, first_chunk: int, chunk_rows: int, rows,
                where) -> None:
    """Chunks read back as the rows the writer put in this place, or a StoreError naming the file.
    A store without the record (written before it existed) is read as before."""
    if recorded is None:
        return
    for i, crc in enumerate(place_crc32s(split, array, first_chunk, chunk_rows, rows)):
        k = first_chunk + i
        if k >= len(recorded) or crc != recorded[k]:
            raise StoreError(f"{where}: chunk {k} (rows {k * chunk_rows}-{k * chunk_rows + chunk_rows - 1}) holds "
                             f"rows that belong elsewhere (a shard file swapped or copied from another store?): "
                             "restore it or convert the data again")


def row_crc32s(split: str, first_row: int, codes: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """uint32 [n]: per WebDataset row, zlib's CRC-32 of its seq payload (uint8 codes) then its y
    payload (float32, little-endian), started from the CRC-32 of "{split}/{row}": a changed byte
    and a row that is not the one written at this place (a tar swapped or copied from another
    store) both differ. The tar's own header checksums cover headers only."""
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    labels = np.ascontiguousarray(labels, dtype="<f4")
    return np.fromiter((zlib.crc32(labels[i], zlib.crc32(codes[i], zlib.crc32(f"{split}/{first_row + i}".encode())))
                        for i in range(len(codes))), dtype=np.uint32, count=len(codes))


def check_rows(recorded: np.ndarray, split: str, first_row: int, codes: np.ndarray, labels: np.ndarray,
               where) -> None:
    bad = np.flatnonzero(row_crc32s(split, first_row, codes, labels) != recorded)
    if len(bad):
        raise StoreError(f"{where}: row {first_row + int(bad[0])} does not match its recorded CRC-32 (a changed "
                         "byte, or a tar from elsewhere): restore it or convert the data again")


def check_codes(codes: np.ndarray, where, first_row: int = 0) -> None:
    """Every code is a base (0..N); MISSING_CODE marks a chunk that was never read from disk."""
    if codes.size and codes.max() > MAX_CODE:
        row = first_row + int(np.argmax((codes > MAX_CODE).any(axis=1)))
        what = "a missing chunk" if (codes == MISSING_CODE).any() else "base codes above 4"
        raise StoreError(f"{where}: {what} at row {row} (the store is damaged: restore it or "
                         "convert the data again)")


def check_labels(labels: np.ndarray, where, first_row: int = 0) -> None:
    if not np.isfinite(labels).all():
        row = first_row + int(np.argmin(np.isfinite(labels).reshape(len(labels), -1).all(axis=1)))
        raise StoreError(f"{where}: a non-finite label at row {row} (a missing chunk, or NaN/inf "
                         "written by another tool; the converters refuse or drop them)")
