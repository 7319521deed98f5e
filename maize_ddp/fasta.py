"""Streaming FASTA reader: one chromosome in memory at a time, plain or gzip (incl. bgzip).

A genome FASTA can be several gigabases; holding it whole would make memory grow with the
genome. Reading record by record keeps the peak at about twice the largest chromosome
(the text buffer plus its uint8 codes), and records nobody asked for are skipped without
being kept at all. Gzip is detected from the file's magic bytes, not its name, so
`genome.fa`, `genome.fa.gz` and bgzip output all just work.
"""
from __future__ import annotations

import os
from typing import Callable, Iterator

import numpy as np

from maize_ddp.codes import ascii_to_codes
from maize_ddp.errors import Error
from maize_ddp.textio import gzip_errors_as, open_maybe_gzip

_WHITESPACE = b" \t\r\n"


class FastaError(Error, ValueError):
    """The FASTA file is malformed; the message names the file and the problem."""


def iter_chromosomes(
    path: str | os.PathLike, keep: Callable[[str], bool] = lambda name: True
) -> Iterator[tuple[str, np.ndarray | None]]:
    """Yield (name, codes) for each record in file order; codes is None when keep(name) is False.

    `name` is the header's first word (`>chr1 some description` -> `chr1`), as GFF seqids are.
    Codes are uint8 (A=0 C=1 G=2 T=3, anything else N=4); soft-masked lowercase counts as ACGT.
    """
    seen: set[str] = set()
    name: str | None = None
    buf: bytearray | None = None
    with gzip_errors_as(FastaError, path), open_maybe_gzip(path, text=False) as handle:
        for line_no, line in enumerate(handle, 1):
            if line.startswith(b">"):
                if name is not None:
                    yield name, _finish(buf)
                words = line[1:].split()
                if not words:
                    raise FastaError(f"{path}: line {line_no}: FASTA header without a name")
                name = words[0].decode("utf-8", errors="replace")
                if name in seen:
                    raise FastaError(f"{path}: line {line_no}: chromosome {name!r} appears twice")
                seen.add(name)
                buf = bytearray() if keep(name) else None
            elif name is None:
                if line.strip():
                    shown = line[:40].decode("utf-8", errors="replace").rstrip()
                    raise FastaError(f"{path}: not a FASTA file (line {line_no} is {shown!r}, expected '>name')")
            elif buf is not None:
                buf += line.translate(None, _WHITESPACE)
    if name is None:
        raise FastaError(f"{path}: no FASTA records found")
    yield name, _finish(buf)


def _finish(buf: bytearray | None) -> np.ndarray | None:
    if buf is None:
        return None
    codes = ascii_to_codes(buf)
    # The generator keeps `buf` alive while the caller works on this chromosome; emptying it
    # now keeps the peak at one copy of the chromosome (codes), not two (text + codes).
    buf.clear()
    return codes
