"""A VCF read one line at a time (plain, gzip or bgzip): just what variant scoring needs.

Only the first five columns are read (CHROM, POS, ID, REF, ALT); samples and INFO are ignored,
so a diversity panel's VCF costs no more memory than a list of sites. A line that cannot be a
variant is a VcfError naming the file and line, which the caller reports or counts.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator

from maize_ddp.textio import gzip_errors_as, open_maybe_gzip
from maize_ddp.errors import Error

BASES = re.compile(r"^[ACGTNacgtn]+$")


class VcfError(Error, ValueError):
    """A malformed VCF line; the message is 'FILE: line N: problem'."""


@dataclass(frozen=True)
class Site:
    line: int
    chrom: str
    pos: int  # 1-based, as VCF writes it
    id: str  # the ID column ('.' when none)
    ref: str  # upper case
    alts: tuple[str, ...]  # as written (upper case for sequence alleles)


def symbolic(allele: str) -> bool:
    """<DEL>, a breakend, '*' (a deletion upstream) or '.': no sequence to put in a window."""
    return not BASES.match(allele)


def read_sites(path) -> Iterator[Site | VcfError]:
    """Each data line as a Site, or as the VcfError it raises: the caller decides whether a bad
    line stops the run or is counted (--skip-invalid), and the stream goes on either way."""
    with gzip_errors_as(VcfError, path), open_maybe_gzip(path) as handle:
        for line_no, line in enumerate(handle, 1):
            if line.startswith("#") or not line.strip():  # meta lines, the #CHROM header
                continue
            try:
                yield parse_line(line, line_no, path)
            except VcfError as e:
                yield e


def parse_line(line: str, line_no: int, path) -> Site:
    cols = line.rstrip("\r\n").split("\t")
    where = f"{path}: line {line_no}"
    if len(cols) < 5:
        raise VcfError(f"{where}: {len(cols)} tab-separated columns; a VCF line has at least "
                       "CHROM, POS, ID, REF, ALT")
    chrom, pos_text, vid, ref, alt = cols[:5]
    try:
        pos = int(pos_text)
    except ValueError:
        raise VcfError(f"{where}: POS {pos_text!r} is not an integer") from None
    if pos < 1:
        raise VcfError(f"{where}: POS {pos} (VCF positions start at 1)")
    if not chrom:
        raise VcfError(f"{where}: empty CHROM")
    if not BASES.match(ref):
        raise VcfError(f"{where}: REF {ref[:20]!r} is not a sequence of A, C, G, T, N")
    alts = tuple(a.upper() if not symbolic(a) else a for a in alt.split(","))
    if any(not a for a in alts):
        raise VcfError(f"{where}: an empty ALT allele in {alt!r}")
    return Site(line_no, chrom, pos, vid, ref.upper(), alts)
