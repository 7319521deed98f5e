"""DNA sequences with ids from a table or a FASTA file, read one record at a time.

    table  TSV or CSV with a header row (comma when the name has .csv, else tab; gzip detected
           by content). The caller names the sequence column, the id column (else a row's id
           is `<file name>:<row>`, counting data rows from 0) and any other columns it wants.
    FASTA  `>id description` then the sequence on one or more lines; the id is the first word.

convert.table_to_npz (to npz shards) and maize_ddp.predict (straight to predictions) both read
through here, so a sequence means the same to both: A, C, G, T or N in any case (lowercase is
soft-masking), nothing else; and both fit lengths with one rule, `fit_length`.
Memory does not grow with the file: records are yielded as they are read.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from maize_ddp.codes import ascii_to_codes
from maize_ddp.errors import Error
from maize_ddp.store_format import id_problem
from maize_ddp.textio import gzip_errors_as, open_maybe_gzip

ALIGNMENTS = ("left", "right", "centre")
SEPARATORS = ((";", "semicolon"), ("\t", "tab"), (",", "comma"))  # to explain a header read as one column
_VALID = np.zeros(256, dtype=bool)
_VALID[np.frombuffer(b"ACGTNacgtn", np.uint8)] = True
csv.field_size_limit(1 << 30)  # a sequence column may hold megabases


class SequenceError(Error, ValueError):
    """The file cannot be read as a sequence table or FASTA; the message names the file."""


@dataclass
class Record:
    """One sequence as read: its place in the file (for messages), id, raw sequence text and
    the other columns asked for, as text."""

    where: str  # "FILE: line N"
    row: int  # data row (table) or record (FASTA), from 0
    id: str
    seq: str
    columns: dict[str, str] = field(default_factory=dict)
    problem: str | None = None  # why the row is unusable as read (a wrong field count), if it is


def is_fasta(path) -> bool:
    """Whether the file's first non-blank character is '>'; a file of nothing but blanks is an error."""
    with gzip_errors_as(SequenceError, path), open_maybe_gzip(path) as handle:
        for line in handle:
            if line.strip():
                return line.lstrip().startswith(">")
    raise SequenceError(f"{path}: is empty: no FASTA record and no table header")


def read_records(path, *, seq_col: str | None = None, id_col: str | None = None,
                 columns: Sequence[str] = ()) -> Iterator[Record]:
    """Records of a FASTA file, or of a table (then `seq_col` is required)."""
    if is_fasta(path):
        if columns:
            raise SequenceError(f"{path}: a FASTA file has no columns ({', '.join(columns)}); "
                                "give labels in a table (see --labels)")
        return fasta_records(path)
    if not seq_col:
        raise SequenceError(f"{path}: a table needs --seq-col, the column holding the sequences")
    return table_records(path, seq_col=seq_col, id_col=id_col, columns=columns)


def delimiter_of(path) -> str:
    return "," if ".csv" in Path(path).name.lower() else "\t"


def table_records(path, *, seq_col: str | None, id_col: str | None = None,
                  columns: Sequence[str] = ()) -> Iterator[Record]:
    """A table's rows; without seq_col (a labels table) every record's sequence is empty. A row
    whose field count differs from the header's comes with `problem` saying so."""
    name = Path(path).name
    with gzip_errors_as(SequenceError, path), open_maybe_gzip(path) as handle:
        # A TSV has no quoting: a field that starts with '"' (a note like "5 inch) is text, not
        # the start of a quoted field that would swallow the rows after it.
        comma = delimiter_of(path) == ","
        reader = csv.reader(handle, delimiter=delimiter_of(path), quoting=csv.QUOTE_MINIMAL if comma else csv.QUOTE_NONE)
        header = next(reader, None)
        if not header:
            raise SequenceError(f"{path}: empty file (expected a header row naming the columns)")
        header = [h.strip() for h in header]
        index = {}
        for col in dict.fromkeys(c for c in (seq_col, id_col, *columns) if c):
            if col not in header:
                shown = ", ".join(header[:12]) + (", ..." if len(header) > 12 else "")
                kind = "comma" if delimiter_of(path) == "," else "tab"
                hint = next((f"; the header looks {name}-separated: a file whose name holds .csv is read as "
                             "comma-separated, any other as tab-separated" for sep, name in SEPARATORS
                             if len(header) == 1 and sep in header[0]), "")
                raise SequenceError(f"{path}: no column {col!r} (the {kind}-separated header has: {shown}){hint}")
            index[col] = header.index(col)
        row = 0
        for fields in reader:
            if not any(f.strip() for f in fields):
                continue  # a blank line, or a spreadsheet's empty row (",,,,")
            where = f"{path}: line {reader.line_num}"
            if len(fields) != len(header):
                yield Record(where, row, "", "", problem=f"has {len(fields)} fields, the header {len(header)}")
            else:
                row_id = fields[index[id_col]].strip() if id_col else f"{name}:{row}"
                yield Record(where, row, row_id, fields[index[seq_col]].strip() if seq_col else "",
                             {c: fields[index[c]].strip() for c in columns})
            row += 1


def fasta_records(path) -> Iterator[Record]:
    """FASTA records one at a time; a record's lines are joined, whitespace dropped."""
    with gzip_errors_as(SequenceError, path), open_maybe_gzip(path) as handle:
        head, where, parts, row = None, "", [], 0
        for line_no, line in enumerate(handle, 1):
            if line.startswith(">"):
                if head is not None:
                    yield Record(where, row, head, "".join(parts))
                    row += 1
                words = line[1:].split()
                head, where, parts = (words[0] if words else ""), f"{path}: line {line_no}", []
            elif head is None:
                if line.strip():
                    raise SequenceError(f"{path}: line {line_no}: expected a FASTA header ('>id')")
            else:
                parts.append("".join(line.split()))
        if head is None:
            raise SequenceError(f"{path}: no FASTA records found")
        yield Record(where, row, head, "".join(parts))


def sequence_problem(record: Record) -> str | None:
    """Why the record cannot be used as a sequence, or None."""
    if record.problem:
        return record.problem
    problem = id_problem(record.id)
    if problem:
        return problem
    if not record.seq:
        return f"id {record.id!r}: empty sequence"
    if not record.seq.isascii():
        at = next(i for i, c in enumerate(record.seq) if not c.isascii())
        return f"id {record.id!r}: sequence has {record.seq[at]!r} at position {at + 1} (only A, C, G, T, N)"
    valid = _VALID[np.frombuffer(record.seq.encode("ascii"), np.uint8)]
    if not valid.all():
        at = int(np.argmin(valid))
        return f"id {record.id!r}: sequence has {record.seq[at]!r} at position {at + 1} (only A, C, G, T, N)"
    return None


def to_codes(seq: str) -> np.ndarray:
    """A checked sequence (see sequence_problem) as uint8 codes."""
    return ascii_to_codes(seq)


def fit_length(codes: np.ndarray, length: int, align: str) -> np.ndarray:
    """Trim or pad (with N) to `length` bases, keeping the sequence's left end, right end or
    centre in place. Reporter constructs are anchored at one end (a core promoter ends at the
    TSS + 5: align right), so which bases survive a trim matters."""
    n = len(codes)
    if n == length:
        return codes
    out = np.full(length, 4, dtype=np.uint8)
    if align == "left":
        keep = min(n, length)
        out[:keep] = codes[:keep]
    elif align == "right":
        keep = min(n, length)
        out[length - keep:] = codes[n - keep:]
    elif align == "centre":
        if n > length:
            start = (n - length) // 2
            out[:] = codes[start:start + length]
        else:
            start = (length - n) // 2
            out[start:start + n] = codes
    else:
        raise ValueError(f"align must be one of {ALIGNMENTS}, got {align!r}")
    return out


def length_problem(record: Record, got: int, want: int, what: str, fix: str) -> str:
    """The message for a sequence whose length is not the one every row must have."""
    return f"{record.where}: id {record.id!r} is {got} bp but {what} {want} bp; {fix} (see docs/tables.md)"

