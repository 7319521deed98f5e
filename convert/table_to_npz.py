"""A table of sequences and measured activities (MPRA, STARR-seq, promoter libraries) -> npz shards.

    python -m convert.table_to_npz TABLE --seq-col sequence --label-col enrichment --id-col gene --out DIR
    python -m convert.table_to_npz SEQS.fa --labels TABLE --id-col name --label-col activity --out DIR

TABLE is TSV or CSV (gzip too; see maize_ddp.sequences); with a FASTA file, the labels (and any
split or group column) come from a table joined on --id-col. DIR gets the layout genome_to_npz
writes: {train,val,test}/{split}-00000.npz with arr_0 uint8 base codes [N, L] (no one-hot round
trip), arr_1 float32 labels [N, T] and ids, plus summary.json. Then convert.npz_to_zarr or
npz_to_wds turns DIR into a store. See docs/tables.md.

Splits: a split column (--split-col), else each row (or each --group-col value, so related
rows never straddle splits) goes to train/val/test by a seeded hash of its id (its sequence
when the table has no --id-col; or its group) and --split-fractions. A hash, not a shuffle: a
row's split depends on neither the table's order, nor its name, nor the other rows, and the
table is read once, streamed.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from maize_ddp.errors import Error
from maize_ddp.id_hashes import IdHashes
from maize_ddp.npz_shards import ShardWriter
from maize_ddp.process_exit import exit_process
from maize_ddp.store_format import FLOAT32_MAX
from maize_ddp.sequences import (ALIGNMENTS, Record, fit_length, is_fasta, length_problem, read_records,
                                 sequence_problem, table_records, to_codes)

from maize_ddp.outputs import atomic_output_dir, refuse_existing

from .output import run_command

SPLITS = ("train", "val", "test")
SPLIT_NAME = re.compile(r"^[A-Za-z0-9_-]+$")  # becomes a folder, a Zarr node and a tar name
MISSING = {"", "na", "nan", "null", "none", "."}
ID_BATCH = 4096  # rows checked for repeated ids together (IdHashes works on batches)


class TableError(Error, ValueError):
    """A row or an option the conversion cannot use; the message names the file and line."""


@dataclass
class TableSummary:
    out: str
    seq_len: int
    targets: list[str]
    split_mode: str
    rows: dict[str, int] = field(default_factory=dict)
    shards: dict[str, int] = field(default_factory=dict)
    table_rows: int = 0  # records read
    dropped: dict[str, int] = field(default_factory=dict)  # --drop-invalid: rows per reason
    dropped_examples: dict[str, str] = field(default_factory=dict)  # the first such row, as a message
    padded: int = 0
    trimmed: int = 0
    label_rows_unused: int = 0  # FASTA + --labels: label rows no sequence joined
    seconds: float = 0.0

    def lines(self) -> list[str]:
        total = sum(self.rows.values())
        splits = ", ".join(f"{s} {n}" for s, n in self.rows.items())
        lines = [f"wrote {total} sequences to {self.out} ({splits}) in {self.seconds:.1f} s",
                 f"  {self.seq_len} bp; {self.padded} padded, {self.trimmed} trimmed; split {self.split_mode}",
                 f"  {len(self.targets)} target(s): {', '.join(self.targets)}",
                 f"  read {self.table_rows} rows; dropped {sum(self.dropped.values())}"
                 + "".join(f"; {n} {reason}" for reason, n in self.dropped.items())]
        if self.label_rows_unused:
            lines.append(f"  {self.label_rows_unused} label rows match no sequence")
        lines += [f"  warning: split {s!r} is empty" for s, n in self.rows.items() if n == 0 and s in SPLITS]
        lines += [f"  warning: {n} rows went to split {s!r}, which the trainer does not read (it reads "
                  "train, val and test)" for s, n in self.rows.items() if s not in SPLITS]
        return lines


@dataclass(frozen=True)
class Splitter:
    """Which split a row goes to: its split column, else a seeded hash of its id or group."""

    split_col: str | None = None
    group_col: str | None = None
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    by_id: bool = True  # hash the row's id (from --id-col or FASTA), else its sequence
    val_groups: tuple = ()  # groups held out by name (--val-groups, --test-groups): leave-one-species-out
    test_groups: tuple = ()

    def __post_init__(self):
        if self.seed < 0:
            raise TableError(f"--seed must not be negative, not {self.seed}")
        if (self.val_groups or self.test_groups) and not self.group_col:
            raise TableError("--val-groups/--test-groups name groups of --group-col, which is not given")
        both = set(self.val_groups) & set(self.test_groups)
        if both:
            raise TableError(f"group {sorted(both)[0]!r} is named by both --val-groups and --test-groups")

    def expected(self) -> list[str]:
        """The splits this splitter means to fill: an empty one of these is an error."""
        if self.split_col:
            return ["train"]
        _, val, test = self.fractions
        return ["train"] + [s for s, f, groups in (("val", val, self.val_groups), ("test", test, self.test_groups))
                            if groups or f > 0]

    def columns(self) -> list[str]:
        return [c for c in (self.split_col, self.group_col) if c]

    def describe(self) -> str:
        if self.split_col:
            return f"from column {self.split_col!r}"
        by = f"group column {self.group_col!r}" if self.group_col else "row id" if self.by_id else "sequence"
        return f"by a hash of the {by}, seed {self.seed}, fractions " + "/".join(f"{f:g}" for f in self.fractions)

    def __call__(self, record: Record) -> tuple[str | None, str | None]:
        """(split, None), or (None, why not)."""
        if self.split_col:
            name = record.columns[self.split_col]
            if not SPLIT_NAME.match(name):
                return None, f"split {name!r} in column {self.split_col!r} is not a split name"
            return name, None
        if self.group_col:
            key = record.columns[self.group_col]
            if not key:
                return None, f"empty group in column {self.group_col!r}"
            if key in self.test_groups:
                return "test", None
            if key in self.val_groups:
                return "val", None
        else:
            # an id of the table's own, else the sequence: never `<file>:<row>`, which a renamed
            # or re-sorted copy of the table would change, moving rows between splits
            key = record.id if self.by_id else record.seq.upper()
        digest = hashlib.blake2b(f"{self.seed}\t{key}".encode(), digest_size=8).digest()
        u = int.from_bytes(digest, "little") / 2.0 ** 64
        train, val, test = self.fractions
        if self.test_groups and self.val_groups:
            return "train", None  # every other group trains
        if self.test_groups:  # the rest is shared between train and val as the fractions say
            return ("train" if u < train / (train + val) else "val"), None
        if self.val_groups:
            return ("train" if u < train / (train + test) else "test"), None
        return ("train" if u < train else "val" if u < train + val else "test"), None


def parse_labels(record: Record, label_cols: Sequence[str]) -> tuple[np.ndarray | None, str | None]:
    values = []
    for col in label_cols:
        text = record.columns[col]
        if text.lower() in MISSING:
            return None, f"missing label in column {col!r}"
        try:
            value = float(text)
        except ValueError:
            return None, f"label {text!r} in column {col!r} is not a number"
        if not math.isfinite(value):
            return None, f"label {text!r} in column {col!r} is not finite"
        if abs(value) > FLOAT32_MAX:
            return None, f"label {text!r} in column {col!r} is beyond float32's range (±3.4e38), as labels are stored"
        values.append(value)
    return np.array(values, np.float32), None


def joined_records(fasta, labels, id_col: str, columns: Sequence[str],
                   summary: TableSummary) -> Iterator[Record]:
    """FASTA records with their columns from the labels table (held as a dict: labels are small
    next to sequences)."""
    by_id: dict[str, dict[str, str]] = {}
    for r in table_records(labels, seq_col=None, id_col=id_col, columns=columns):
        if r.problem:
            raise TableError(f"{r.where}: {r.problem}")
        if r.id in by_id:
            raise TableError(f"{r.where}: id {r.id!r} appears twice in the labels table")
        by_id[r.id] = r.columns
    used = 0
    for r in read_records(fasta):
        found = by_id.get(r.id)
        if found is None:
            r.problem = f"id {r.id!r}: no row in {labels}"
        else:
            r.columns.update(found)
            used += 1
        yield r
    summary.label_rows_unused = len(by_id) - used


# summary.json counts dropped rows by kind: (words in the problem, kind)
PROBLEM_KINDS = [
    ("fields, the header", "wrong number of fields"), ("empty id", "empty id"), ("longer than", "id too long"),
    ("empty sequence", "empty sequence"), ("at position", "invalid base"),
    ("appears on an earlier row", "duplicate id"), ("missing label", "missing label"),
    ("is not a number", "non-numeric label"), ("is not finite", "non-finite label"),
    ("beyond float32's range", "label out of float32 range"), ("a tab or line break", "id with a line break"),
    ("not UTF-8", "id not UTF-8"),
    ("bp but", "length differs"), ("not a split name", "bad split name"), ("empty group", "empty group"),
    ("no row in", "no labels"),
]


def kind_of(problem: str) -> str:
    return next((kind for words, kind in PROBLEM_KINDS if words in problem), "other")


class Refusals:
    """A bad row: an error naming it, or with --drop-invalid a count by kind in the summary."""

    def __init__(self, drop_invalid: bool, summary: TableSummary):
        self.drop_invalid, self.summary = drop_invalid, summary

    def __call__(self, record: Record, problem: str) -> None:
        message = problem if problem.startswith(record.where) else f"{record.where}: {problem}"
        if not self.drop_invalid:
            raise TableError(message + " (or pass --drop-invalid to drop such rows)")
        kind = kind_of(problem)
        self.summary.dropped[kind] = self.summary.dropped.get(kind, 0) + 1
        self.summary.dropped_examples.setdefault(kind, message)


class SplitWriters:
    """Checked rows to their split's shards, ID_BATCH at a time: a batch's ids are checked
    against every earlier id (IdHashes) before any of its rows is written."""

    def __init__(self, out: Path, shard_size: int, refuse: Refusals):
        self.out, self.shard_size, self.refuse = out, shard_size, refuse
        self.writers = {s: ShardWriter(out, s, shard_size, layout="codes") for s in SPLITS}
        self.ids, self.pending = IdHashes(), []

    def add(self, record: Record, split: str, codes: np.ndarray, y: np.ndarray) -> None:
        self.pending.append((record, split, codes, y))
        if len(self.pending) == ID_BATCH:
            self.write_pending()

    def write_pending(self) -> None:
        repeats = self.ids.add([record.id for record, *_ in self.pending])
        for (record, split, codes, y), repeat in zip(self.pending, repeats):
            if repeat:
                self.refuse(record, f"id {record.id!r} appears on an earlier row")
                continue
            if split not in self.writers:  # a split column's own split names
                self.writers[split] = ShardWriter(self.out, split, self.shard_size, layout="codes")
            self.writers[split].add(codes, y, record.id)
        self.pending.clear()

    def close(self, summary: TableSummary) -> None:
        self.write_pending()
        for writer in self.writers.values():
            writer.flush()
        summary.rows = {s: w.rows for s, w in self.writers.items()}
        summary.shards = {s: w.shards for s, w in self.writers.items()}


def convert_table(
    table, out, *,
    seq_col: str | None = None,
    label_cols: Sequence[str] = (),
    id_col: str | None = None,
    labels=None,
    splitter: Splitter = Splitter(),
    length: int | None = None,
    align: str | None = None,
    drop_invalid: bool = False,
    shard_size: int = 10000,
    overwrite: bool = False,
    tss_position: int | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> TableSummary:
    """Write the npz dataset to `out` atomically; raise TableError on the first bad row unless
    drop_invalid, and on bad options before reading anything."""
    began = time.perf_counter()
    _check_options(table, labels, id_col, label_cols, splitter, length, align, shard_size)
    out = Path(out)
    inputs = [table] + ([labels] if labels else [])
    refuse_existing(out, overwrite, inputs, kind="summary.json")
    splitter = dataclasses.replace(splitter, by_id=bool(id_col))
    summary = TableSummary(str(out), length or 0, list(label_cols), splitter.describe())
    columns = list(dict.fromkeys([*label_cols, *splitter.columns()]))
    if labels:
        records = joined_records(table, labels, id_col, columns, summary)
    else:
        records = read_records(table, seq_col=seq_col, id_col=id_col, columns=columns)
    refuse = Refusals(drop_invalid, summary)
    with atomic_output_dir(out, overwrite, inputs, kind="summary.json") as tmp:
        rows = SplitWriters(tmp, shard_size, refuse)
        for record in records:
            summary.table_rows += 1
            checked = _checked_row(record, label_cols, splitter, summary, length, align)
            if isinstance(checked, str):
                refuse(record, checked)
            else:
                rows.add(record, *checked)
            if summary.table_rows % 100_000 == 0:
                log(f"{summary.table_rows:,} rows read")
        rows.close(summary)
        for split in splitter.expected():
            if not summary.rows.get(split):
                how = (f"; {splitter.describe()} left it empty: name groups with --val-groups/--test-groups, "
                       "or use more groups" if splitter.group_col else "")
                raise TableError(f"{table}: no row went to the {split} split ({summary.table_rows} rows read, "
                                 f"{sum(summary.dropped.values())} dropped){how}")
        if tss_position is not None and not 0 <= tss_position < summary.seq_len:
            raise TableError(f"--tss-position {tss_position}: outside the {summary.seq_len}-bp sequences")
        summary.seconds = time.perf_counter() - began
        settings = dict(table=str(table), labels=str(labels) if labels else None, seq_col=seq_col, id_col=id_col,
                        label_cols=list(label_cols), split_col=splitter.split_col, group_col=splitter.group_col,
                        split_fractions=list(splitter.fractions), seed=splitter.seed, length=length, align=align,
                        drop_invalid=drop_invalid, layout="codes")
        if tss_position is not None:  # maize_ddp.origin.landmarks: windows and figures in bp from the TSS
            settings["tss_position"] = tss_position
        # `generator` marks the folder as ours: --overwrite replaces nothing else.
        (tmp / "summary.json").write_text(json.dumps({"generator": "convert.table_to_npz", **asdict(summary),
                                                      "settings": settings}, indent=2) + "\n")
    return summary


def _checked_row(record: Record, label_cols, splitter: Splitter, summary: TableSummary, length, align):
    """(split, codes, labels) of a usable record, else the problem as a string."""
    problem = sequence_problem(record)
    if problem:
        return problem
    y, problem = parse_labels(record, label_cols)
    if problem:
        return f"id {record.id!r}: {problem}"
    split, problem = splitter(record)
    if problem:
        return f"id {record.id!r}: {problem}"
    codes = to_codes(record.seq)
    if length:
        summary.padded += len(codes) < length
        summary.trimmed += len(codes) > length
        codes = fit_length(codes, length, align)
    elif not summary.seq_len:
        summary.seq_len = len(codes)  # the first row fixes the length every row must have
    elif len(codes) != summary.seq_len:
        return length_problem(record, len(codes), summary.seq_len, "earlier rows are",
                              f"pass --length {summary.seq_len} --align left|right|centre to pad with N or trim")
    return split, codes, y


def _check_options(table, labels, id_col, label_cols, splitter, length, align, shard_size) -> None:
    if not label_cols:
        raise TableError("give at least one --label-col, the measured activity to learn")
    if labels and not id_col:
        raise TableError("--labels needs --id-col, the column joining the labels table to the FASTA ids")
    if labels and not is_fasta(table):
        raise TableError(f"{table}: --labels is for a FASTA file; this is a table (name --seq-col instead)")
    if (length is None) != (align is None):
        raise TableError("--length and --align go together: the length to pad or trim to, and which end to keep")
    if length is not None and length < 1:
        raise TableError(f"--length must be at least 1, got {length}")
    if align is not None and align not in ALIGNMENTS:
        raise TableError(f"--align must be one of {', '.join(ALIGNMENTS)}, got {align!r}")
    if shard_size < 1:
        raise TableError(f"--shard-size must be at least 1, got {shard_size}")
    if splitter.split_col and splitter.group_col:
        raise TableError("choose --split-col or --group-col, not both")
    f = splitter.fractions
    if len(f) != 3 or min(f) < 0 or abs(sum(f) - 1) > 1e-6 or f[0] == 0:
        raise TableError(f"--split-fractions needs 3 non-negative numbers summing to 1, train > 0; got {list(f)}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m convert.table_to_npz", description=__doc__.split("\n\n")[0])
    p.add_argument("table", type=Path, help="TSV/CSV (gzip ok) with a header row, or a FASTA file (see --labels)")
    p.add_argument("--out", required=True, type=Path, help="output folder (must not exist unless --overwrite)")
    p.add_argument("--seq-col", help="column holding the sequences (tables)")
    p.add_argument("--label-col", action="append", default=[], metavar="COL", required=True,
                   help="a measured activity; repeat for several targets (required)")
    p.add_argument("--id-col", help="column of row ids (default <file name>:<row>; FASTA: the header's first word)")
    p.add_argument("--labels", type=Path, help="with a FASTA file: the table holding --id-col and --label-col")
    spl = p.add_argument_group("split (default: a seeded hash of each row's id, 0.8 0.1 0.1)")
    spl.add_argument("--split-col", help="column naming each row's split (train, val, test)")
    spl.add_argument("--group-col", help="rows sharing this column's value (gene family, species, chromosome) "
                                         "go to the same split")
    spl.add_argument("--test-groups", nargs="+", default=[], metavar="GROUP",
                     help="these --group-col values are the test split (leave-one-species-out); the other groups "
                          "are hashed into train and val (default: none)")
    spl.add_argument("--val-groups", nargs="+", default=[], metavar="GROUP",
                     help="these --group-col values are the val split (default: none)")
    spl.add_argument("--split-fractions", nargs=3, type=float, default=(0.8, 0.1, 0.1),
                     metavar=("TRAIN", "VAL", "TEST"), help="shares of rows (or groups) hashed into each split "
                     "(default 0.8 0.1 0.1)")
    spl.add_argument("--seed", type=int, default=0, help="seeds the hash that assigns splits (default 0)")
    ln = p.add_argument_group("lengths (default: every sequence must have the first one's length)")
    ln.add_argument("--length", type=int, help="pad with N or trim every sequence to this many bases")
    ln.add_argument("--align", choices=ALIGNMENTS, help="which part a pad or trim keeps in place: the left "
                                                        "end, the right end or the centre")
    p.add_argument("--tss-position", type=int, metavar="P",
                   help="0-based position of the TSS in every (fitted) sequence, e.g. 165 for promoters "
                        "-165..+5: interpret's windows and figures are then in bp from it (default: not recorded)")
    p.add_argument("--drop-invalid", action="store_true",
                   help="drop bad rows (counted in summary.json) instead of stopping at the first")
    p.add_argument("--shard-size", type=int, default=10000, help="rows per npz shard (default 10000)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out that this tool wrote")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    a = build_parser().parse_args(argv)

    def work():
        return convert_table(
            a.table, a.out, seq_col=a.seq_col, label_cols=a.label_col, id_col=a.id_col, labels=a.labels,
            splitter=Splitter(a.split_col, a.group_col, tuple(a.split_fractions), a.seed,
                              val_groups=tuple(a.val_groups), test_groups=tuple(a.test_groups)),
            length=a.length, align=a.align, drop_invalid=a.drop_invalid, shard_size=a.shard_size,
            overwrite=a.overwrite, tss_position=a.tss_position, log=(lambda m: None) if a.quiet else (lambda m: print(m, file=sys.stderr)))
    return run_command(work, lambda summary: print("\n".join(summary.lines())))


if __name__ == "__main__":
    exit_process(main())
