"""Gene windows cut from a chromosome: the geometry around the TSS and TTS, and the bases of a
gene's window read 5'->3' on its strand. One definition for the data (convert.genome_to_npz)
and for what reads a genome again with a trained model (maize_ddp.variants).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from maize_ddp.codes import N_CODE, reverse_complement
from maize_ddp.errors import Error
from maize_ddp.gff import Gene


class WindowError(Error, ValueError):
    """A window geometry no window can be cut with."""


@dataclass(frozen=True)
class WindowGeometry:
    """Lengths (bp) around the TSS and TTS; promoter_only keeps just the TSS region."""

    tss_upstream: int = 1000
    tss_downstream: int = 500
    tts_upstream: int = 500
    tts_downstream: int = 1000
    spacer: int = 20
    promoter_only: bool = False

    def __post_init__(self):
        for name in ("tss_upstream", "tss_downstream", "tts_upstream", "tts_downstream", "spacer"):
            if getattr(self, name) < 0:
                raise WindowError(f"window geometry: {name} must be >= 0, got {getattr(self, name)}")
        if self.length == 0:
            raise WindowError("window geometry: the window is empty (all lengths are 0)")

    @property
    def length(self) -> int:
        tss = self.tss_upstream + self.tss_downstream
        if self.promoter_only:
            return tss
        return tss + self.spacer + self.tts_upstream + self.tts_downstream

    def regions(self, gene: Gene) -> list[tuple[int, int]]:
        """0-based half-open + strand intervals, TSS region first (5'->3' order of the gene)."""
        s0, e0 = gene.start - 1, gene.end  # the gene as a 0-based half-open interval
        if gene.strand == "+":
            tss = (s0 - self.tss_upstream, s0 + self.tss_downstream)
            tts = (e0 - self.tts_upstream, e0 + self.tts_downstream)
        else:  # mirror image: the gene's 5' end is at e0, its 3' end at s0
            tss = (e0 - self.tss_downstream, e0 + self.tss_upstream)
            tts = (s0 - self.tts_downstream, s0 + self.tts_upstream)
        return [tss] if self.promoter_only else [tss, tts]


def slice_with_n(chrom: np.ndarray, start: int, end: int) -> tuple[np.ndarray, int]:
    """chrom[start:end] with N standing in for bases beyond either end; also returns how many."""
    inside = chrom[max(start, 0):min(end, len(chrom))]
    before, after = max(0, -start), max(0, end - len(chrom))
    if before or after:
        inside = np.concatenate([np.full(before, N_CODE, np.uint8), inside, np.full(after, N_CODE, np.uint8)])
    return inside, before + after


def bases_off_chromosome(regions: list[tuple[int, int]], chrom_len: int) -> int:
    return sum(max(0, -a) + max(0, b - chrom_len) for a, b in regions)


def extract_window(chrom: np.ndarray, gene: Gene, geometry: WindowGeometry) -> np.ndarray:
    """The gene's window as uint8 codes [L], reading 5'->3' on the gene's strand."""
    return assemble_window([slice_with_n(chrom, a, b)[0] for a, b in geometry.regions(gene)], gene, geometry)


def assemble_window(pieces: list[np.ndarray], gene: Gene, geometry: WindowGeometry) -> np.ndarray:
    """The window from its regions' + strand bases (as geometry.regions orders them)."""
    if gene.strand == "-":
        # Reverse-complementing each region in place equals cutting the whole window on +
        # ([TTS region] N.. [TSS region]) and reverse-complementing it: the spacer is all N.
        pieces = [reverse_complement(p) for p in pieces]
    spacer = np.full(geometry.spacer, N_CODE, np.uint8)
    window = pieces[0] if len(pieces) == 1 else np.concatenate([pieces[0], spacer, pieces[1]])
    assert len(window) == geometry.length
    return window
