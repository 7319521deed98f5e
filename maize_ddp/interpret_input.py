"""The rows an attribution command reads: ids and base codes in blocks, from a store split or an
npz folder, plus what the data record about their origin (window landmarks).

`open_rows` is the one place an input kind is recognised: a store, an npz folder, or a sequence
table or FASTA file read as maize_ddp.predict reads it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from maize_ddp.errors import Error
from maize_ddp.origin import read_origin

BLOCK_ROWS = 1024


class InputError(Error, ValueError):
    pass


@dataclass
class RowSource:
    where: str  # for messages: the store and split, or the folder
    origin: dict | None  # the dataset's origin (maize_ddp.origin), None when not recorded
    blocks: Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]]  # -> (ids str [b], codes uint8 [b, L])
    split: str | None = None  # the store's split read; None for npz folders, tables and FASTA


def open_rows(data, split: str, seq_len: int, **table) -> RowSource:
    """A store's split, an npz folder, or a sequence table / FASTA file (`table`: seq_col,
    id_col and align, as maize_ddp.predict takes them)."""
    data = Path(data)
    if (data / "zarr.json").exists() or (data / "manifest.json").exists():
        return _store_rows(data, split, seq_len)
    if data.is_dir():
        return _npz_rows(data, seq_len)
    if data.is_file():
        return _sequence_rows(data, seq_len, **table)
    raise InputError(f"{data}: no such store (.zarr/.wds), folder of .npz shards, table or FASTA file")


def _sequence_rows(path: Path, seq_len: int, seq_col=None, id_col=None, align=None) -> RowSource:
    from maize_ddp.predict import PredictError, sequence_batches

    def blocks():
        try:
            for rows, codes in sequence_batches(path, seq_len, BLOCK_ROWS, seq_col=seq_col, id_col=id_col,
                                                align=align):
                yield np.array([r[0] for r in rows], dtype=str), codes.numpy()
        except PredictError as e:
            raise InputError(str(e)) from None
    return RowSource(str(path), None, blocks)  # arbitrary sequences: no window landmarks


def _store_rows(path: Path, split: str, seq_len: int) -> RowSource:
    from maize_ddp.data.store import open_source, open_store, read_ids

    info = open_store(path)
    info.check(split=split, seq_len=seq_len)
    n = info.splits[split].n

    def blocks():
        ids = read_ids(info, split)
        source = open_source(info, split)
        for start in range(0, n, BLOCK_ROWS):
            stop = min(start + BLOCK_ROWS, n)
            pieces, _ = source.read([(start, stop)])
            yield ids[start:stop], np.concatenate(pieces)
    origin = info.meta.origin if info.meta is not None else None
    return RowSource(f"{path} split {split!r}", origin, blocks, split)


def _npz_rows(folder: Path, seq_len: int) -> RowSource:
    from maize_ddp.predict import PredictError, npz_batches

    def blocks():
        try:  # predict's reader: ([(id, file, row)] * B, codes [B, L]), as its table reader's ([(id,)], codes)
            for rows, codes in npz_batches(folder, seq_len, BLOCK_ROWS):
                yield np.array([r[0] for r in rows], dtype=str), codes.numpy()
        except PredictError as e:
            raise InputError(str(e)) from None
    return RowSource(str(folder), read_origin(folder), blocks)


def rows_with_ids(source: RowSource, wanted: list[str]) -> tuple[list[str], np.ndarray]:
    """The rows of the given ids, in the order asked; every id must be there, once."""
    seen = set()
    for i in wanted:
        if i in seen:
            raise InputError(f"--ids: {i!r} is given twice")
        seen.add(i)
    found: dict[str, np.ndarray] = {}
    for ids, codes in source.blocks():
        hit = np.flatnonzero(np.isin(ids, wanted))
        for k in hit:
            found[str(ids[k])] = codes[k]
    missing = [i for i in wanted if i not in found]
    if missing:
        more = f" (and {len(missing) - 3} more)" if len(missing) > 3 else ""
        elsewhere = " (in another split? see --split)" if source.split else ""
        raise InputError(f"{source.where}: no row with id {', '.join(repr(m) for m in missing[:3])}{more}{elsewhere}")
    return list(wanted), np.stack([found[i] for i in wanted])
