"""A set of row ids kept as 64-bit hashes, 8 bytes an id: how converters refuse a repeated id
without holding every id of a split (or a table) in memory.

The hashes sit in a few sorted arrays of doubling sizes (a log-structured merge): a batch is
looked up with a binary search in each and then merged in, so adding N ids costs
O(N log N) in all, where one sorted array re-merged at every batch would cost O(N^2).
Two different ids share a 64-bit hash with odds ~N^2 / 2^65: 1 in 10^7 for 10^6 rows.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


class IdHashes:
    def __init__(self):
        self.levels: list[np.ndarray] = []  # sorted, disjoint; sizes decrease along the list

    def add(self, ids: Sequence[str]) -> np.ndarray:
        """Add a batch of ids; returns a bool mask of those seen before (in an earlier batch or
        earlier in this one). Repeats are not added again."""
        hashes = np.fromiter((hash(i) for i in ids), np.int64, len(ids))
        repeat = np.zeros(len(hashes), bool)
        for level in self.levels:
            at = np.searchsorted(level, hashes).clip(max=len(level) - 1)
            repeat |= level[at] == hashes
        _, first = np.unique(hashes, return_index=True)
        within = np.ones(len(hashes), bool)
        within[first] = False
        repeat |= within
        new = np.unique(hashes[~repeat])
        if len(new):
            self.levels.append(new)
        while len(self.levels) > 1 and len(self.levels[-1]) >= len(self.levels[-2]):
            top = self.levels.pop()
            self.levels[-1] = np.union1d(self.levels[-1], top)
        return repeat

    def __len__(self) -> int:
        return sum(len(level) for level in self.levels)
