"""Which genome chromosome a VCF's chromosome name means.

VCFs, FASTAs and GFFs of one assembly often name chromosomes differently: `1`, `chr1`, `Chr1`,
`chromosome_1`, or a RefSeq accession (`NC_003070.9`, whose FASTA header says "... chromosome
1 ..."). A name is resolved, in order, by the user's map (`--chrom-map FILE`: two columns, VCF
name and genome name), as it is, by the same name without a `chr`/`chromosome` prefix and leading
zeros, case ignored, and by the chromosome number a FASTA header gives the accession. A name that
two genome chromosomes could mean is an error, never a guess.
"""
from __future__ import annotations

import re
from pathlib import Path

from maize_ddp.errors import Error
from maize_ddp.textio import open_maybe_gzip

PREFIX = re.compile(r"^(?:chromosome|chrom|chr)[\s_\-]*", re.IGNORECASE)
HEADER_NUMBER = re.compile(r"\bchromosome[\s_:]+([A-Za-z0-9]+)", re.IGNORECASE)


class ChromNameError(Error, ValueError):
    pass


def key(name: str) -> str:
    """`Chr01`, `chr1`, `CHROMOSOME_1` and `1` all become "1"; `ChrC` becomes "c"."""
    bare = PREFIX.sub("", name.strip()).lower()
    return bare.lstrip("0") or bare


def read_map(path) -> dict[str, str]:
    """A --chrom-map file: VCF name, genome name per line (tab or spaces); # comments."""
    mapping = {}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ChromNameError(f"{path}: cannot read the chromosome map ({e})") from None
    for n, line in enumerate(lines, 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) != 2:
            raise ChromNameError(f"{path}: line {n}: expected two names (VCF, genome), found {len(words)}")
        mapping[words[0]] = words[1]
    return mapping


def fasta_numbers(path) -> dict[str, str]:
    """Each FASTA record name -> the chromosome number its header gives ("chromosome 1"), if any."""
    found = {}
    with open_maybe_gzip(path) as fh:
        for line in fh:
            if line.startswith(">"):
                name, _, description = line[1:].strip().partition(" ")
                m = HEADER_NUMBER.search(description)
                if m:
                    found[name] = key(m[1])
    return found


class ChromNames:
    """Resolves VCF names to the genome's (`genome`: the names genes sit on), caching each answer."""

    def __init__(self, genome: set[str], fasta=None, chrom_map: dict[str, str] | None = None, where="the genome"):
        self.genome, self.fasta, self.where = set(genome), fasta, where
        self.user = dict(chrom_map or {})
        self.resolved: dict[str, str | None] = {}
        self._numbers: dict[str, str] | None = None
        self.notes: list[str] = []  # one line per name resolved other than as it is

    def __call__(self, name: str) -> str | None:
        if name not in self.resolved:
            self.resolved[name] = self._resolve(name)
        return self.resolved[name]

    def _resolve(self, name: str) -> str | None:
        if name in self.user:
            return self._noted(name, self.user[name], "--chrom-map")
        if name in self.genome:
            return name
        found = sorted(g for g in self.genome if key(g) == key(name))
        how = "the same name"
        if not found and self.fasta is not None:
            if self._numbers is None:
                self._numbers = fasta_numbers(self.fasta)
            found = sorted(g for g in self.genome if self._numbers.get(g) == key(name))
            how = f"chromosome {key(name)} in its FASTA header"
        if len(found) > 1:
            raise ChromNameError(f"VCF chromosome {name!r} could be any of {', '.join(found)} in {self.where}; "
                                 "say which with --chrom-map FILE (two columns: VCF name, genome name)")
        return self._noted(name, found[0], how) if found else None

    def _noted(self, name: str, genome_name: str, how: str) -> str:
        self.notes.append(f"VCF chromosome {name!r} is {genome_name!r} ({how})")
        return genome_name
