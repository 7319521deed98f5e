"""npz shards -> WebDataset tar shards plus manifest.json (format maize_ddp/2).

    python -m convert.npz_to_wds SRC DST.wds [--split NAME] [--workers N]
        [--shard-samples N] [--shard-bytes SIZE] [--overwrite] [--drop-nonfinite] [--quiet]

Writes DST.wds/{split}/{split}-000000.tar, ... with members KEY.seq.npy (uint8 [L]) and
KEY.y.npy (float32 [T]); KEY is the row index in the split, 10 digits. Row ids, which vary in
length, go beside the tars, one a line in row order, in DST.wds/{split}/ids.txt. Inputs and
errors are those of convert.npz_to_zarr (see docs/convert.md).

Every sample of a split has the same two member sizes, so a sample's tar bytes are a fixed
template with the key, the checksums and the payloads filled in. Workers build those bytes for
whole input shards with numpy (tarfile would take ~20 us a member in Python); this process
only appends them to the current tar file and starts the next one every `rows_per_tar` rows.
The files are byte-identical whatever the number of workers (mtime 0, owner 0, mode 0644).
"""
from __future__ import annotations

import argparse
import io
import json
import re
import tarfile
from pathlib import Path

import numpy as np

from maize_ddp.process_exit import exit_process
from maize_ddp.store_format import FORMAT, RecordedFile, row_crc32s

from . import driver
from .driver import at_least_one
from .output import converter_parser, run_cli
from .shards import ConvertError, read_shard

KEY_DIGITS = 10
BLOCK = 512
RECORD = 20 * BLOCK  # tar files are padded to a multiple of the classic 10 KiB record
# ~8 MiB per tar (~1800 samples of 3020 bp): enough shards for ranks x loader workers
# on a few-GB dataset, and large sequential reads.
DEFAULT_SHARD_BYTES = 8 * 1024 * 1024


class SampleLayout:
    """The bytes of one sample (two tar members), as a template plus where the parts go."""

    def __init__(self, seq_len: int, num_targets: int):
        self.seq_len, self.num_targets = seq_len, num_targets
        seq_npy = _npy_header(np.zeros(seq_len, np.uint8))
        y_npy = _npy_header(np.zeros(num_targets, np.float32))
        seq_member = _member_bytes("0" * KEY_DIGITS + ".seq.npy", seq_npy, seq_len)
        y_member = _member_bytes("0" * KEY_DIGITS + ".y.npy", y_npy, 4 * num_targets)
        self.template = np.frombuffer(seq_member + y_member, np.uint8)
        self.size = len(self.template)
        self.headers = (0, len(seq_member))  # offsets of the two tar headers
        self.seq_at = BLOCK + len(seq_npy)
        self.y_at = len(seq_member) + BLOCK + len(y_npy)
        # Checksum of each header with its key digits all "0" and its checksum field blank.
        self.base_sums = [int(_blank_checksum(self.template[h:h + BLOCK]).sum(dtype=np.int64))
                          for h in self.headers]

    def pack(self, codes: np.ndarray, labels: np.ndarray, first_row: int) -> np.ndarray:
        """uint8 [n, size]: the tar bytes of rows first_row .. first_row + n - 1."""
        n = len(codes)
        if first_row + n > 10 ** KEY_DIGITS:
            raise ConvertError(f"more than {10 ** KEY_DIGITS} rows in one split")
        out = np.empty((n, self.size), np.uint8)
        out[:] = self.template
        out[:, self.seq_at:self.seq_at + self.seq_len] = codes
        out[:, self.y_at:self.y_at + 4 * self.num_targets] = (
            np.ascontiguousarray(labels, dtype="<f4").view(np.uint8).reshape(n, 4 * self.num_targets))
        rows = np.arange(first_row, first_row + n, dtype=np.int64)
        digits = (rows[:, None] // 10 ** np.arange(KEY_DIGITS - 1, -1, -1)) % 10
        digit_sum = digits.sum(axis=1)
        for header, base in zip(self.headers, self.base_sums):
            out[:, header:header + KEY_DIGITS] = digits + ord("0")
            checksum = base + digit_sum  # each digit adds its value to the "0" it replaces
            octal = (checksum[:, None] >> (3 * np.arange(5, -1, -1))) & 7
            out[:, header + 148:header + 154] = octal + ord("0")  # "%06o\0 " as tarfile writes
        return out


def _npy_header(example: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, example)
    return buf.getvalue()[:-example.nbytes]


def _member_bytes(name: str, npy_header: bytes, payload_size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = len(npy_header) + payload_size
    info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = 0, 0o644, 0, 0, "", ""
    header = info.tobuf(format=tarfile.USTAR_FORMAT)
    body = npy_header + bytes(payload_size)
    return header + body + bytes(-len(body) % BLOCK)


def _blank_checksum(header: np.ndarray) -> np.ndarray:
    blank = header.copy()
    blank[148:156] = ord(" ")
    return blank


class TarSequence:
    """One split's tar files: sample bytes appended in row order, a new file every N rows,
    and its ids, one a line in row order, in {split}/ids.txt. Each file's size and CRC-32 are
    recorded in the manifest."""

    def __init__(self, root: Path, split: str, rows_per_tar: int):
        self.root, self.split, self.rows_per_tar = root, split, rows_per_tar
        (root / split).mkdir()
        self.shards: list[dict] = []
        self.file: RecordedFile | None = None
        self.rows = 0  # rows of the split written so far
        self.ids = RecordedFile(root, f"{split}/ids.txt")
        self.row_crc32 = RecordedFile(root, f"{split}/rows.crc32")

    def append(self, samples: np.ndarray, ids: np.ndarray, row_crc32: np.ndarray) -> None:
        self.ids.write("".join(f"{i}\n" for i in ids.tolist()).encode())
        self.row_crc32.write(row_crc32.astype("<u4").tobytes())
        done = 0
        while done < len(samples):
            if self.file is None:
                path = f"{self.split}/{self.split}-{len(self.shards):06d}.tar"
                self.file = RecordedFile(self.root, path)
                self.shards.append({"path": path, "n": 0, "first_row": self.rows})
            shard = self.shards[-1]
            take = min(self.rows_per_tar - shard["n"], len(samples) - done)
            self.file.write(samples[done:done + take])
            shard["n"] += take
            self.rows += take
            done += take
            if shard["n"] == self.rows_per_tar:
                self._close_tar()

    def _close_tar(self) -> None:
        if self.file is not None:
            end = 2 * BLOCK  # end-of-archive marker, then pad to a whole record
            self.file.write(bytes(end + -(self.file.bytes + end) % RECORD))
            record = self.file.close()
            self.file = None
            self.shards[-1].update(bytes=record.bytes, crc32=record.crc32)

    def close(self) -> dict:
        """The split's manifest entries: shards, ids and the rows' CRC-32s."""
        self._close_tar()
        return {"shards": self.shards, "ids": self.ids.close().to_dict(),
                "row_crc32": self.row_crc32.close().to_dict()}


def pack_shard(scan, first_row: int, layout: SampleLayout, drop_nonfinite: bool):
    """Worker job: read one input shard and return its samples' tar bytes, its rows' CRC-32s
    (store_format.row_crc32s) and its ids."""
    codes, labels, ids = read_shard(scan, drop_nonfinite)
    return layout.pack(codes, labels, first_row), row_crc32s(scan.source.split, first_row, codes, labels), ids


def rows_per_tar(layout: SampleLayout, shard_samples: int | None, shard_bytes: int | None) -> int:
    if shard_samples is None and shard_bytes is None:
        shard_bytes = DEFAULT_SHARD_BYTES
    limits = []
    if shard_samples is not None:
        limits.append(shard_samples)
    if shard_bytes is not None:
        limits.append(shard_bytes // layout.size)
    return max(1, min(limits))


class WdsWriter:
    """The WebDataset format for convert.driver: workers pack whole shards into tar bytes (and
    return their ids); this process appends them to the split's tars (TarSequence)."""

    kind = "wds"
    worker = staticmethod(pack_shard)

    def __init__(self, shard_samples: int | None = None, shard_bytes: int | None = None):
        at_least_one("--shard-samples", shard_samples)
        at_least_one("--shard-bytes", shard_bytes)
        self.shard_samples, self.shard_bytes = shard_samples, shard_bytes

    def layout(self, plan) -> None:
        self.sample = SampleLayout(plan.seq_len, plan.num_targets)
        self.per_tar = rows_per_tar(self.sample, self.shard_samples, self.shard_bytes)

    def result_bytes(self, plan) -> int:
        return max(s.rows_in * (self.sample.size + 4 + 4 * s.id_chars) for s in plan.scans)  # tar bytes, CRC, id

    def job(self, scan, first_row: int, drop_nonfinite: bool) -> tuple:
        return scan, first_row, self.sample, drop_nonfinite

    def open(self, tmp, plan) -> None:
        self.root, self.plan = tmp, plan
        self.tars = {name: TarSequence(tmp, name, self.per_tar) for name in plan.splits}

    def append(self, scan, payload: tuple, ids) -> None:
        samples, row_crc32 = payload
        self.tars[scan.source.split].append(samples, ids, row_crc32)

    def close(self) -> dict:
        plan = self.plan
        manifest = {**plan.store_meta().to_dict(),
                    "splits": {name: {**plan.split_meta(name).to_dict(), **self.tars[name].close()}
                               for name in plan.splits}}
        (self.root / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        return {"rows_per_tar": self.per_tar}


def convert(src, dst, *, split=None, workers=1, shard_samples=None, shard_bytes=None, overwrite=False,
            drop_nonfinite=False, quiet=True) -> dict:
    """Convert SRC's npz shards into the WebDataset store DST; return a summary dict."""
    return driver.convert(WdsWriter(shard_samples, shard_bytes), src, dst, split=split, workers=workers,
                          overwrite=overwrite, drop_nonfinite=drop_nonfinite, quiet=quiet)


def parse_size(text: str) -> int:
    """'64M', '1.5G', '100000' -> bytes (K, M, G are powers of 1024)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]?)i?B?\s*", text, re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 64M)")
    return int(float(m.group(1)) * 1024 ** " KMG".index(m.group(2).upper() or " "))


def main(argv=None) -> int:
    p = converter_parser("python -m convert.npz_to_wds",
                         f"Convert npz shards into WebDataset tar shards ({FORMAT}).",
                         "output folder, e.g. DATA.wds")
    p.add_argument("--shard-samples", type=int, help="samples per tar file")
    p.add_argument("--shard-bytes", type=parse_size,
                   help="target tar file size, e.g. 64M (default 8M when neither is given)")
    return run_cli(convert, vars(p.parse_args(argv)))


if __name__ == "__main__":
    exit_process(main())
