"""What a trained run reads: ids and base codes, from a store split, a folder of npz shards, a
sequence table or a FASTA file, plus what the data record about their origin (window landmarks).

`open_rows` is the one place an input kind is recognised; predict, interpret, motifs, design and
the Python API (maize_ddp.Run) read through it. A bad input is one InputError naming the file
and the row.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from maize_ddp import errors
from maize_ddp.codes import OneHotError, arr0_to_codes
from maize_ddp.errors import Error
from maize_ddp.id_hashes import IdHashes
from maize_ddp.npz_shards import arr0_layout
from maize_ddp.origin import read_origin
from maize_ddp.sequences import fit_length, length_problem, read_records, sequence_problem, to_codes
from maize_ddp.store_format import StoreError, check_ids

BLOCK_ROWS = 1024


class InputError(Error, ValueError):
    pass


@dataclass
class RowSource:
    where: str  # for messages: the store and split, or the folder
    origin: dict | None  # the dataset's origin (maize_ddp.origin), None when not recorded
    blocks: Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]]  # -> (ids str [b], codes uint8 [b, L])
    split: str | None = None  # the store's split read; None for npz folders, tables and FASTA


def kind_of(data) -> str:
    """"store" (Zarr or WebDataset), "npz" (a folder of shards) or "sequences" (a table or FASTA)."""
    data = Path(data)
    if (data / "zarr.json").is_file() or (data / "manifest.json").is_file():
        return "store"
    if data.is_dir():
        return "npz"
    if data.is_file():
        return "sequences"
    raise InputError(f"{data}: no such store (.zarr/.wds), folder of .npz shards, table or FASTA file")


def open_rows(data, split: str, seq_len: int, **table) -> RowSource:
    """A store's split, an npz folder, or a sequence table / FASTA file (`table`: seq_col,
    id_col and align, as maize_ddp.predict takes them)."""
    data = Path(data)
    kind = kind_of(data)
    if kind == "store":
        return _store_rows(data, split, seq_len)
    if kind == "npz":
        return _npz_rows(data, seq_len)
    return _sequence_rows(data, seq_len, **table)


def _sequence_rows(path: Path, seq_len: int, seq_col=None, id_col=None, align=None) -> RowSource:
    def blocks():
        for rows, codes in sequence_batches(path, seq_len, BLOCK_ROWS, seq_col=seq_col, id_col=id_col, align=align):
            yield np.array([r[0] for r in rows], dtype=str), codes.numpy()
    return RowSource(str(path), None, blocks)  # arbitrary sequences: no window landmarks


def _store_rows(path: Path, split: str, seq_len: int) -> RowSource:
    from maize_ddp.data import open_source, open_store, read_ids

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
    def blocks():  # ([(id, file, row)] * B, codes [B, L]) as predict writes them; ids and codes here
        for rows, codes in npz_batches(folder, seq_len, BLOCK_ROWS):
            yield np.array([r[0] for r in rows], dtype=str), codes.numpy()
    return RowSource(str(folder), read_origin(folder), blocks)


def unique_ids(wanted) -> list[str]:
    """The ids asked for (--ids) as text, each once: an id given twice is an error."""
    wanted = [str(i) for i in wanted]
    seen = set()
    for i in wanted:
        if i in seen:
            raise InputError(f"--ids: {i!r} is given twice")
        seen.add(i)
    return wanted


def rows_with_ids(source: RowSource, wanted: list[str]) -> tuple[list[str], np.ndarray]:
    """The rows of the given ids, in the order asked; every id must be there, once."""
    wanted = unique_ids(wanted)
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


def split_holding(data, wanted: list[str], say=lambda line: print(line, file=sys.stderr, flush=True)) -> str:
    """The split of a store that holds every id asked for (`say` says which when not test), for
    the commands' --ids without --split; not a store: test, which the reader ignores."""
    from maize_ddp.data import open_store, read_ids

    path = Path(data)
    if not path.exists() or kind_of(path) != "store":
        return "test"
    info = open_store(path)
    where: dict[str, str] = {}
    for name in sorted(info.splits, key=lambda s: (s != "test", s != "val", s)):
        for i in set(wanted) & set(read_ids(info, name).tolist()):
            where.setdefault(i, name)
    missing = [i for i in wanted if i not in where]
    if missing:
        raise InputError(f"--ids: {missing[0]!r} is in no split of {path}")
    splits = sorted(set(where.values()))
    if len(splits) > 1:
        by_split = {s: [i for i in wanted if where[i] == s] for s in splits}
        shown = "; ".join(f"{len(ids)} in {s} ({', '.join(map(repr, ids[:2]))}{', ...' if len(ids) > 2 else ''})"
                          for s, ids in by_split.items())
        raise InputError(f"--ids: the ids are in several splits ({shown}); choose one with --split")
    if splits[0] != "test":
        say(f"[maize_ddp] --ids: found in split {splits[0]!r} of {path}")
    return splits[0]


def npz_batches(folder: Path, seq_len: int, batch_size: int):
    """Yield ([(id, file name, row)] * B, codes [B, L]) from every .npz under `folder`, in sorted
    order; a shard's ids are its `ids` member, else `<file>:<row>` as the converters name them."""
    files = sorted(f for f in folder.rglob("*.npz") if not f.name.startswith("._"))  # not macOS metadata
    if not files:
        raise InputError(f"{folder}: no .npz files found")
    seen = IdHashes()
    for f in files:
        try:
            with np.load(f) as z:
                x = z["arr_0"]
                ids = check_ids(z["ids"], f) if "ids" in z.files else None
        except StoreError as e:
            raise InputError(str(e)) from None
        except Exception as e:
            raise InputError(f"{f}: cannot read arr_0 or ids ({type(e).__name__}: {e})") from None
        layout = arr0_layout(x.shape, x.dtype)
        if layout is None:
            raise InputError(f"{f}: arr_0 is {x.dtype}{list(x.shape)}; expected one-hot [N, 4, L] or "
                               "[N, L, 4], or uint8 base codes [N, L]")
        try:
            codes = arr0_to_codes(x, layout)
        except OneHotError as e:
            raise InputError(f"{f}: {e}") from None
        if codes.shape[1] != seq_len:
            raise InputError(f"{f}: sequences are {codes.shape[1]} bp but the model was built for {seq_len}")
        name = f.relative_to(folder)
        if ids is None:
            ids = np.array([f"{name}:{row}" for row in range(len(codes))])
        if ids.shape != (len(codes),):
            raise InputError(f"{f}: ids has shape {list(ids.shape)} for {len(codes)} rows")
        repeats = seen.add(ids.tolist())  # unique within a shard already: across shards too
        if repeats.any():
            raise InputError(f"{f}: id {str(ids[np.argmax(repeats)])!r} is also the id of a row in an "
                               "earlier shard; ids must be unique")
        for start in range(0, len(codes), batch_size):
            rows = [(i, str(name), start + k) for k, i in enumerate(ids[start:start + batch_size].tolist())]
            yield rows, torch.from_numpy(codes[start:start + batch_size])



def check_sequence_file(path: Path) -> None:
    """A file given as --data must be a sequence table or FASTA, not a piece of another input."""
    if path.suffix == ".npz":
        raise InputError(f"{path}: an npz shard; pass the folder that holds the shards")
    if path.name in ("zarr.json", "manifest.json"):
        raise InputError(f"{path}: a store's metadata; pass the store folder, {path.parent}")



def sequence_batches(path: Path, seq_len: int, batch_size: int, *, seq_col=None, id_col=None, align=None):
    """Yield ([(id,)] * B, codes [B, L]) from a sequence table or FASTA, in file order. A bad
    sequence, a repeated id, (without --align) a length other than the model's, or no sequence
    at all is an error naming the file and the row."""
    check_sequence_file(path)
    seen = IdHashes()

    def checked(batch: list[np.ndarray], ids: list[str], wheres: list[str]):
        repeats = seen.add(ids)  # a batch at a time: per id it would cost 20x more
        if repeats.any():
            k = int(np.argmax(repeats))
            raise InputError(f"{wheres[k]}: id {ids[k]!r} appears on an earlier row; ids must be unique")
        return [(i,) for i in ids], torch.from_numpy(np.stack(batch))

    batch, ids, wheres, rows = [], [], [], 0
    try:
        for record in read_records(path, seq_col=seq_col, id_col=id_col):
            problem = sequence_problem(record)
            if problem:
                raise InputError(f"{record.where}: {problem}")
            codes = to_codes(record.seq)
            if align:
                codes = fit_length(codes, seq_len, align)
            elif len(codes) != seq_len:
                raise InputError(length_problem(record, len(codes), seq_len, "the model was built for",
                                                  "pass --align left|right|centre to pad with N or trim"))
            batch.append(codes)
            ids.append(record.id)
            wheres.append(record.where)
            rows += 1
            if len(batch) == batch_size:
                yield checked(batch, ids, wheres)
                batch, ids, wheres = [], [], []
        if batch:
            yield checked(batch, ids, wheres)
    except errors.Error as e:
        raise InputError(str(e)) from None
    if rows == 0:
        raise InputError(f"{path}: no sequences (only a header, or an empty file)")
