"""Gene windows with a variant in them, cut exactly as convert.genome_to_npz cut the data.

The reference window is genome_to_npz's own `extract_window`. The alternate window applies the
allele to the + strand and cuts each region again around its anchor:

- A window is one or two regions (genome_windows.WindowGeometry.regions), each anchored at a
  fixed base boundary: the TSS region at the TSS, the TTS region at the TTS (on + the TSS region
  is [TSS - tss_upstream, TSS + tss_downstream), anchored at the TSS base; on - mirrored).
- An allele that changes the length (an indel) shifts only the bases on its side of the anchor,
  away from it: the region keeps its length by taking more bases, or fewer, at its far end.
  So an insertion 100 bp upstream of the TSS pushes the outermost upstream bases out of the
  window; the TSS and everything downstream of it stay where they were.
- An allele that replaces the anchor base itself keeps the anchor at the same offset into the
  allele (clipped to the allele's length).
- A SNP changes one base in place: the alternate window is extract_window on the mutated genome.

Then, as for the data, each region is reverse-complemented for a - strand gene and the spacer
of N put between them. Bases beyond a chromosome end are N (the data were built with
--edge pad, or the gene is not scored: see variants.py).
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

from maize_ddp.genome_windows import WindowGeometry, assemble_window, extract_window, slice_with_n
from maize_ddp.gff import Gene


def anchors(gene: Gene, geometry: WindowGeometry) -> list[int]:
    """Per region (in genome_to_npz's order), the + strand coordinate of its anchor boundary:
    the region's bases left of it are [a, anchor), right of it [anchor, b)."""
    s0, e0 = gene.start - 1, gene.end
    if gene.strand == "+":
        marks = [s0, e0]  # TSS base starts the downstream part; the TTS base ends the upstream part
    else:
        marks = [e0, s0]
    return marks[:len(geometry.regions(gene))]


def alt_window(chrom: np.ndarray, gene: Gene, geometry: WindowGeometry, p: int, ref_len: int,
               alt: np.ndarray) -> np.ndarray:
    """The gene's window with chrom[p:p + ref_len] replaced by `alt` (codes), by the rule above."""
    pieces = []
    for (a, b), c in zip(geometry.regions(gene), anchors(gene, geometry)):
        if p >= b or p + ref_len <= a:
            pieces.append(slice_with_n(chrom, a, b)[0])  # the variant is in the other region
            continue
        pad = max(ref_len, len(alt)) + 1
        lo = a - pad
        seg = slice_with_n(chrom, lo, b + pad)[0]
        mutated = np.concatenate([seg[:p - lo], alt, seg[p - lo + ref_len:]])
        if c <= p:
            anchor = c - lo
        elif c >= p + ref_len:
            anchor = c - lo + len(alt) - ref_len
        else:  # the allele replaces the anchor base
            anchor = p - lo + min(c - p, len(alt))
        pieces.append(mutated[anchor - (c - a):anchor + (b - c)])
    return assemble_window(pieces, gene, geometry)


def ref_window(chrom: np.ndarray, gene: Gene, geometry: WindowGeometry) -> np.ndarray:
    return extract_window(chrom, gene, geometry)


def window_position(gene: Gene, geometry: WindowGeometry, p: int, ref_len: int) -> tuple[str, int]:
    """(region name, position in the window) of the variant's 5'-most base in the window on the
    gene's strand (the REF allele's first base on +, its last on -), clipped to its region."""
    regions = geometry.regions(gene)
    offset = 0
    for k, (a, b) in enumerate(regions):
        name = "tss" if k == 0 else "tts"
        if a < p + ref_len and p < b:
            if gene.strand == "+":
                return name, offset + max(p, a) - a
            return name, offset + b - min(p + ref_len, b)
        offset += (b - a) + geometry.spacer
    raise ValueError("the variant is not in this gene's window")


@dataclass
class ChromosomeWindows:
    """The kept genes' regions on one chromosome, sorted, for overlap queries."""

    starts: list[int]
    ends: list[int]
    genes: list[Gene]
    widest: int

    @classmethod
    def of(cls, genes: list[Gene], geometry: WindowGeometry) -> "ChromosomeWindows":
        spans = sorted(((a, b, g) for g in genes for a, b in geometry.regions(g)), key=lambda t: (t[0], t[1]))
        return cls([s[0] for s in spans], [s[1] for s in spans], [s[2] for s in spans],
                   max((b - a for a, b, _ in spans), default=0))

    def genes_at(self, p: int, ref_len: int) -> list[Gene]:
        """Genes with a region overlapping [p, p + ref_len), each once, in position order."""
        lo = bisect.bisect_left(self.starts, p - self.widest)
        hi = bisect.bisect_left(self.starts, p + max(ref_len, 1))
        found, seen = [], set()
        for k in range(lo, hi):
            if self.ends[k] > p and self.starts[k] < p + max(ref_len, 1) and self.genes[k].gene_id not in seen:
                seen.add(self.genes[k].gene_id)
                found.append(self.genes[k])
        return found
