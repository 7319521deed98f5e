"""Row reads from a WebDataset split, by row range, straight out of the tar files.

The shards stay standard WebDataset (KEY.seq.npy / KEY.y.npy members, KEY = row index).
To read any contiguous row range without streaming the shard from its start, each shard is
indexed once per process on first use: a walk over its tar headers records where every
member's payload starts. The payloads are then sliced out of one contiguous read with numpy,
without a generic decoder. Equally spaced members (the normal case: same-size members written
in order) shrink to (first, step), so the index does not grow with the data.

Integrity: opening the store checked each tar's size; here every tar header's own checksum
and `.npy` headers are checked, and every read checks codes <= N, finite labels, and each row
against its recorded CRC-32 ({split}/rows.crc32: 4 bytes a row, tied to the row's place), so a
changed payload byte or a tar from elsewhere is refused by whoever reads it. The whole tar's
CRC-32 is left to `inspect --verify`: a training reader reads a few blocks of most tars, and
checking whole tars there would read the dataset once more per worker and rank.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from maize_ddp.store_format import check_checksum, check_codes, check_labels, check_rows

from .store import Shard, StoreError, StoreInfo

TAR_BLOCK = 512


def tar_members(path) -> list[tuple[str, int, int]]:
    """(name, payload offset, size) of the regular files in a tar, in file order.

    tarfile takes ~60-250 us a member (pax headers are slow to parse); reading the 512-byte
    headers directly takes a few. Handles ustar names with prefix, pax 'path'/'size' records
    and GNU long names, which covers tarfile's and webdataset's writers.
    """
    members = []
    fd = os.open(path, os.O_RDONLY)
    try:
        offset, override = 0, {}
        while True:
            header = os.pread(fd, TAR_BLOCK, offset)
            if len(header) < TAR_BLOCK or header[0] == 0:  # end-of-archive zero block
                return members
            size = _checked_size(header, path, offset)
            kind = header[156:157]
            data = offset + TAR_BLOCK
            offset = data + -(-size // TAR_BLOCK) * TAR_BLOCK
            if kind == b"x":  # pax header: records for the next member
                override.update(_pax_records(os.pread(fd, size, data)))
            elif kind == b"L":  # GNU long name for the next member
                override["path"] = os.pread(fd, size, data).rstrip(b"\0").decode()
            elif kind in (b"0", b"\0", b"7"):
                name = header[0:100].split(b"\0", 1)[0].decode()
                prefix = header[345:500].split(b"\0", 1)[0].decode()
                name = override.get("path", f"{prefix}/{name}" if prefix else name)
                if "size" in override:
                    size = int(override["size"])
                    offset = data + -(-size // TAR_BLOCK) * TAR_BLOCK
                members.append((name, data, size))
                override = {}
            else:  # directories, links, global pax headers: not samples
                override = {}
    finally:
        os.close(fd)


def _checked_size(header: bytes, path, offset: int) -> int:
    """The member size from a tar header whose own checksum holds (the sum of its bytes with
    the checksum field counted as spaces)."""
    try:
        stored = int(header[148:156].strip(b"\0 ") or b"-1", 8)
        size = int(header[124:136].strip(b"\0 ") or b"0", 8)
    except ValueError:
        stored = size = -1
    computed = sum(header[:148]) + 8 * ord(" ") + sum(header[156:])
    if stored != computed or size < 0:
        raise StoreError(f"{path}: damaged tar header at byte {offset} (restore the file or convert "
                         "the data again)")
    return size


def _pax_records(body: bytes) -> dict[str, str]:
    records, i = {}, 0
    while i < len(body) and body[i:i + 1] != b"\0":
        space = body.index(b" ", i)
        length = int(body[i:space])
        key, _, value = body[space + 1:i + length - 1].partition(b"=")
        records[key.decode()] = value.decode()
        i += length
    return records


def _npy_header(fd: int, offset: int, path) -> tuple[int, tuple, np.dtype]:
    """(header length, shape, dtype) of the .npy payload at offset."""
    head = io.BytesIO(os.pread(fd, 4096, offset))
    try:
        version = np.lib.format.read_magic(head)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(head)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(head)
    except ValueError as e:
        raise StoreError(f"{path}: not an .npy payload at byte {offset} ({e})") from None
    return head.tell(), shape, dtype


class ShardIndex:
    """Where each row's seq and y payloads lie in one tar shard."""

    def __init__(self, path: Path, shard: Shard, seq_len: int, num_targets: int):
        self.path = path
        self.first_row = shard.first_row
        seq_at = np.full(shard.n, -1, dtype=np.int64)
        y_at = np.full(shard.n, -1, dtype=np.int64)
        sizes = {"seq.npy": set(), "y.npy": set()}
        for name, offset, size in tar_members(path):
            key, _, field = name.rpartition("/")[2].partition(".")
            if field not in sizes:
                continue
            row = int(key) - shard.first_row if key.isdigit() else -1
            if not 0 <= row < shard.n:
                raise StoreError(f"{path}: member {name} is not a row of this shard "
                                 f"(rows {shard.first_row}..{shard.first_row + shard.n - 1})")
            (seq_at if field == "seq.npy" else y_at)[row] = offset
            sizes[field].add(size)
        for field, at in (("seq.npy", seq_at), ("y.npy", y_at)):
            if (at < 0).any():
                row = shard.first_row + int(np.argmax(at < 0))
                raise StoreError(f"{path}: row {row} has no {field} member")
            if len(sizes[field]) != 1:
                raise StoreError(f"{path}: {field} members differ in size; expected one shape per split")
        fd = os.open(path, os.O_RDONLY)
        try:
            seq_head, seq_shape, seq_dtype = _npy_header(fd, int(seq_at[0]), path)
            y_head, y_shape, y_dtype = _npy_header(fd, int(y_at[0]), path)
        finally:
            os.close(fd)
        if seq_dtype != np.uint8 or seq_shape != (seq_len,):
            raise StoreError(f"{path}: seq.npy is {seq_dtype}{list(seq_shape)}, expected uint8[{seq_len}]")
        if y_dtype.kind != "f" or int(np.prod(y_shape)) != num_targets:
            raise StoreError(f"{path}: y.npy is {y_dtype}{list(y_shape)}, expected float32[{num_targets}]")
        self.seq_bytes = seq_len
        self.y_dtype = y_dtype
        self.y_bytes = y_dtype.itemsize * num_targets
        self._seq_at = _compact(seq_at + seq_head)
        self._y_at = _compact(y_at + y_head)

    def read(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows lo..hi-1 of this shard (local numbering), from one contiguous read."""
        seq_at, y_at = _lookup(self._seq_at, lo, hi), _lookup(self._y_at, lo, hi)
        begin = int(min(seq_at.min(), y_at.min()))
        end = int(max(seq_at.max() + self.seq_bytes, y_at.max() + self.y_bytes))
        try:
            fd = os.open(self.path, os.O_RDONLY)
            try:
                buf = np.frombuffer(os.pread(fd, end - begin, begin), dtype=np.uint8)
            finally:
                os.close(fd)
        except OSError as e:
            raise StoreError(f"{self.path}: cannot read ({e.strerror or e})") from None
        if len(buf) != end - begin:
            raise StoreError(f"{self.path}: ends at byte {begin + len(buf)}, before row {self.first_row + hi - 1} "
                             "(truncated while in use?)")
        codes = sliding_window_view(buf, self.seq_bytes)[seq_at - begin]
        y = sliding_window_view(buf, self.y_bytes)[y_at - begin].view(self.y_dtype)
        check_codes(codes, self.path, first_row=self.first_row + lo)
        check_labels(y, self.path, first_row=self.first_row + lo)
        return codes, y.astype(np.float32, copy=False)


def _compact(offsets: np.ndarray):
    """An equally spaced offset table becomes (first, step)."""
    if len(offsets) > 1 and (np.diff(offsets) == offsets[1] - offsets[0]).all():
        return int(offsets[0]), int(offsets[1] - offsets[0])
    if len(offsets) == 1:
        return int(offsets[0]), 0
    return offsets


def _lookup(offsets, lo: int, hi: int) -> np.ndarray:
    if isinstance(offsets, tuple):
        first, step = offsets
        return first + step * np.arange(lo, hi, dtype=np.int64)
    return offsets[lo:hi]


class WdsSource:
    def __init__(self, info: StoreInfo, split: str):
        self._root = Path(info.path)
        self._seq_len, self._num_targets = info.seq_len, info.num_targets
        self._shards = info.splits[split].shards
        self._split, crc_file = split, info.splits[split].row_crc32_file
        self._crc_path = self._root / crc_file.path if crc_file else None
        self._first_rows = np.array([s.first_row for s in self._shards], dtype=np.int64)
        self._index: dict[int, ShardIndex] = {}

    def _shard(self, k: int) -> ShardIndex:
        if k not in self._index:
            self._index[k] = self._indexed(k)
        return self._index[k]

    def _indexed(self, k: int) -> ShardIndex:
        path = self._root / self._shards[k].path
        try:
            return ShardIndex(path, self._shards[k], self._seq_len, self._num_targets)
        except StoreError:
            raise
        except (OSError, ValueError, UnicodeDecodeError) as e:  # a pax record or name that does not parse
            raise StoreError(f"{path}: unreadable tar ({type(e).__name__}: {e})") from None

    def _recorded_crc32(self, start: int, stop: int) -> np.ndarray:
        try:
            fd = os.open(self._crc_path, os.O_RDONLY)
            try:
                data = os.pread(fd, 4 * (stop - start), 4 * start)
            finally:
                os.close(fd)
        except OSError as e:
            raise StoreError(f"{self._crc_path}: cannot read ({e.strerror or e})") from None
        if len(data) != 4 * (stop - start):
            raise StoreError(f"{self._crc_path}: ends before row {stop - 1} (truncated while in use?)")
        return np.frombuffer(data, dtype="<u4")

    def read(self, ranges) -> tuple[list[np.ndarray], np.ndarray]:
        """Rows [start, stop) of each range, in order: codes as uint8 [rows, L] pieces, labels
        float32 [R, T]. A range may span tars."""
        pieces = []
        for start, stop in ranges:
            row = start
            while row < stop:
                k = int(np.searchsorted(self._first_rows, row, side="right")) - 1
                shard = self._shards[k]
                hi = min(stop, shard.first_row + shard.n)
                codes, y = self._shard(k).read(row - shard.first_row, hi - shard.first_row)
                if self._crc_path is not None:
                    check_rows(self._recorded_crc32(row, hi), self._split, row, codes, y, self._root / shard.path)
                pieces.append((codes, y))
                row = hi
        return [codes for codes, _ in pieces], np.concatenate([y for _, y in pieces])


def read_wds_ids(info: StoreInfo, split: str, stop: int | None = None) -> np.ndarray:
    """A WebDataset split's ids.txt, checked whole against its CRC-32 (or its first `stop` lines)."""
    meta = info.splits[split]
    record = meta.ids_file
    path = info.path / record.path
    if stop is not None:  # a glimpse (inspect): the first lines only
        with open(path, "rb") as fh:
            return np.array([fh.readline().decode().rstrip("\n") for _ in range(min(stop, meta.n))], dtype=str)
    check_checksum(info.path, record)
    lines = path.read_bytes().decode().split("\n")[:-1]
    if len(lines) != meta.n:
        raise StoreError(f"{path}: {len(lines)} ids for {meta.n} rows")
    return np.array(lines, dtype=str)
