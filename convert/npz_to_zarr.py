"""npz shards -> one Zarr v3 group of uint8 base codes, float32 labels and row ids (format maize_ddp/2).

    python -m convert.npz_to_zarr SRC DST.zarr [--split NAME] [--workers N]
        [--chunk-rows C] [--shard-rows S] [--overwrite] [--drop-nonfinite] [--quiet]

SRC holds train/ val/ test/ folders of .npz shards (arr_0 one-hot, arr_1 labels, optional
ids), or, with --split NAME, the shards of one split. Shards are read one at a time (see convert.shards), so
memory does not depend on the dataset's size. See docs/convert.md for flags, errors and choices.

Worker processes decode input shards (convert.workers); this process alone writes, buffering rows up to
each Zarr shard's boundary so every shard is written exactly once, in row order. The store
is therefore the same bytes whatever the number of workers.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec, ZstdCodec
from zarr.storage import LocalStore

from maize_ddp.process_exit import exit_process
from maize_ddp.store_format import FORMAT, MISSING_CODE, place_crc32s, record_file

from . import driver
from .driver import at_least_one
from .output import converter_parser, run_cli
from .shards import ConvertError, read_shard

# ~512 KiB of codes per chunk: the reader's unit (a whole chunk per read, shuffled in
# memory); blosc-zstd decodes such a chunk at > 1 GB/s and compresses it as well as larger ones.
CHUNK_BYTES = 512 * 1024
CHUNKS_PER_SHARD = 16  # ~8 MiB of codes per shard file: few files, small write buffer


def default_chunk_rows(seq_len: int) -> int:
    return max(1, round(CHUNK_BYTES / seq_len))


def codecs():
    """Blosc zstd level 1: as small as levels 3-9 on DNA codes (bit-shuffled: 3 bits carry
    all the information) and 3-20x faster to write; byte-shuffle groups the labels' exponents.
    A CRC-32C of each compressed chunk (4 bytes) makes a damaged chunk fail to decode."""
    seq = (BloscCodec(cname="zstd", clevel=1, shuffle="bitshuffle", typesize=1), Crc32cCodec())
    y = (BloscCodec(cname="zstd", clevel=1, shuffle="shuffle", typesize=4), Crc32cCodec())
    ids = (ZstdCodec(level=1), Crc32cCodec())  # after the vlen-utf8 serializer
    return seq, y, ids


class ShardBuffer:
    """Rows of one split gathered up to a Zarr shard boundary, then written in one call.

    Zarr rewrites a whole shard for each partial write; writing only whole shards (and the
    final partial one) makes each shard one write, by one writer.
    """

    def __init__(self, split: str, seq, y, ids, shard_rows: int, chunk_rows: int, id_chars: int):
        self.split, self.seq, self.y, self.ids, self.chunk_rows = split, seq, y, ids, chunk_rows
        self.chunk_crc32 = {"seq": [], "y": [], "id": []}  # per chunk, tied to its place (store_format)
        rows = min(shard_rows, seq.shape[0])
        self.codes_buf = np.empty((rows, seq.shape[1]), np.uint8)
        self.y_buf = np.empty((rows, y.shape[1]), np.float32)
        self.ids_buf = np.empty(rows, f"<U{max(id_chars, 1)}")
        self.filled = 0
        self.start = 0  # first row of the buffer in the split

    def append(self, codes: np.ndarray, labels: np.ndarray, ids: np.ndarray) -> None:
        done = 0
        while done < len(codes):
            take = min(len(self.codes_buf) - self.filled, len(codes) - done)
            self.codes_buf[self.filled:self.filled + take] = codes[done:done + take]
            self.y_buf[self.filled:self.filled + take] = labels[done:done + take]
            self.ids_buf[self.filled:self.filled + take] = ids[done:done + take]
            self.filled += take
            done += take
            if self.filled == len(self.codes_buf):
                self.flush()

    def flush(self) -> None:
        if self.filled:
            stop = self.start + self.filled
            self.seq[self.start:stop] = self.codes_buf[:self.filled]
            self.y[self.start:stop] = self.y_buf[:self.filled]
            self.ids[self.start:stop] = self.ids_buf[:self.filled]
            first_chunk = self.start // self.chunk_rows  # a buffer starts on a shard, so on a chunk
            for name, buf in (("seq", self.codes_buf), ("y", self.y_buf), ("id", self.ids_buf)):
                self.chunk_crc32[name] += place_crc32s(self.split, name, first_chunk, self.chunk_rows,
                                                       buf[:self.filled])
            self.start, self.filled = stop, 0


class ZarrWriter:
    """The Zarr format for convert.driver: workers decode shards to codes, labels and ids;
    this process buffers them to shard boundaries (ShardBuffer)."""

    kind = "zarr"
    worker = staticmethod(read_shard)

    def __init__(self, chunk_rows: int | None = None, shard_rows: int | None = None):
        at_least_one("--chunk-rows", chunk_rows)
        at_least_one("--shard-rows", shard_rows)
        if chunk_rows and shard_rows and shard_rows % chunk_rows:
            raise ConvertError(f"--shard-rows ({shard_rows}) must be a multiple of --chunk-rows ({chunk_rows})")
        self.chunk_rows, self.shard_rows = chunk_rows, shard_rows

    def layout(self, plan) -> None:
        self.chunk = self.chunk_rows or default_chunk_rows(plan.seq_len)
        self.shard = self.shard_rows or self.chunk * CHUNKS_PER_SHARD
        if self.shard % self.chunk:
            raise ConvertError(f"--shard-rows ({self.shard}) must be a multiple of the rows per chunk "
                               f"({self.chunk}; set it with --chunk-rows)")

    def result_bytes(self, plan) -> int:
        return plan.largest_decoded_bytes

    def job(self, scan, first_row: int, drop_nonfinite: bool) -> tuple:
        return scan, drop_nonfinite

    def open(self, tmp, plan) -> None:
        self.root, self.splits = tmp, list(plan.splits)
        self.buffers = _create_store(tmp, plan, self.chunk, self.shard)

    def append(self, scan, payload: tuple, ids) -> None:
        codes, labels = payload
        self.buffers[scan.source.split].append(codes, labels, ids)

    def close(self) -> dict:
        for buffer in self.buffers.values():
            buffer.flush()
        record_data_files(self.root, self.splits, {name: b.chunk_crc32 for name, b in self.buffers.items()})
        return {"chunk_rows": self.chunk, "shard_rows": self.shard}


def convert(src, dst, *, split=None, workers=1, chunk_rows=None, shard_rows=None, overwrite=False,
            drop_nonfinite=False, quiet=True) -> dict:
    """Convert SRC's npz shards into the Zarr v3 store DST; return a summary dict."""
    return driver.convert(ZarrWriter(chunk_rows, shard_rows), src, dst, split=split, workers=workers,
                          overwrite=overwrite, drop_nonfinite=drop_nonfinite, quiet=quiet)


def _create_store(root_path, plan, chunk: int, shard: int) -> dict[str, ShardBuffer]:
    seq_codec, y_codec, id_codec = codecs()
    root = zarr.open_group(LocalStore(root_path), mode="a", zarr_format=3,
                           attributes={**plan.store_meta().to_dict(), "splits": list(plan.splits)})
    # Every chunk is written, even one equal to the fill value: checking for those is a pass
    # over the data that took half of zarr's write time. The fill values are ones no row can
    # hold, so a chunk that goes missing reads back as an error, not as rows of As and zeros.
    config = {"write_empty_chunks": True}
    buffers = {}
    for name in plan.splits:
        group = root.create_group(name, attributes=plan.split_meta(name).to_dict())
        n = plan.n(name)
        seq = group.create_array("seq", shape=(n, plan.seq_len), dtype="uint8",
                                 chunks=(chunk, plan.seq_len), shards=(shard, plan.seq_len),
                                 compressors=seq_codec, fill_value=MISSING_CODE, dimension_names=("row", "pos"), config=config)
        y = group.create_array("y", shape=(n, plan.num_targets), dtype="float32",
                               chunks=(chunk, plan.num_targets), shards=(shard, plan.num_targets),
                               compressors=y_codec, fill_value=float("nan"), dimension_names=("row", "target"), config=config)
        # "" cannot be an id (the converters refuse it): the fill value of a missing chunk
        ids = group.create_array("id", shape=(n,), dtype=str, chunks=(chunk,), shards=(shard,),
                                 compressors=id_codec, fill_value="", dimension_names=("row",), config=config)
        buffers[name] = ShardBuffer(name, seq, y, ids, shard, chunk, plan.id_chars)
    return buffers


def record_data_files(root_path, splits, chunk_crc32: dict) -> None:
    """Record every shard file of each split (size and CRC-32) in the split's attributes, so a
    reader can tell a complete store from one that lost a file, and each chunk's place CRC
    (store_format.place_crc32), so a reader can tell a chunk from one that belongs elsewhere."""
    root_path = Path(root_path)
    root = zarr.open_group(LocalStore(root_path), mode="a", zarr_format=3)
    for name in splits:
        files = sorted(str(p.relative_to(root_path)) for array in ("seq", "y", "id")
                       for p in (root_path / name / array).rglob("*") if p.is_file() and p.name != "zarr.json")
        root[name].attrs.update({"files": [record_file(root_path, rel).to_dict() for rel in files],
                                 "chunk_crc32": chunk_crc32[name]})


def main(argv=None) -> int:
    p = converter_parser("python -m convert.npz_to_zarr",
                         f"Convert npz shards into a Zarr v3 store ({FORMAT}).",
                         "output store, e.g. DATA.zarr")
    p.add_argument("--chunk-rows", type=int, help="rows per chunk (default: ~512 KiB of codes)")
    p.add_argument("--shard-rows", type=int, help=f"rows per shard file (default: {CHUNKS_PER_SHARD} chunks)")
    return run_cli(convert, vars(p.parse_args(argv)))


if __name__ == "__main__":
    exit_process(main())
