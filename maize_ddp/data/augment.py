"""Basenji-style augmentations on uint8 codes, seeded so a resumed epoch replays them exactly.

Both are off by default. Labels are left alone: for gene-level targets the expression of a
gene does not depend on the strand it is read from or on a shift of a few bases.
"""
from __future__ import annotations

import numpy as np

from ..codes import N_CODE, reverse_complement


def batch_rng(seed: int, epoch: int, rank: int, batch: int) -> np.random.Generator:
    """The generator of one batch's augmentations: a function of its place in training only."""
    return np.random.default_rng([seed, epoch, rank, batch, 1])  # 1: augmentation stream


def random_reverse_complement(codes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Reverse-complement each row with probability 1/2."""
    flip = rng.random(len(codes)) < 0.5
    out = codes.copy()
    out[flip] = reverse_complement(codes[flip])
    return out


def shift(codes: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Move row i right by shifts[i] bases (left if negative); bases shifted in are N."""
    length = codes.shape[1]
    source = np.arange(length) - shifts[:, None]  # out[i, p] = codes[i, p - shifts[i]]
    out = np.take_along_axis(codes, np.clip(source, 0, length - 1), axis=1)
    out[(source < 0) | (source >= length)] = N_CODE
    return out


def random_shift(codes: np.ndarray, max_shift: int, rng: np.random.Generator) -> np.ndarray:
    """Shift each row by a uniform integer in [-max_shift, max_shift], padding with N."""
    return shift(codes, rng.integers(-max_shift, max_shift + 1, size=len(codes)))


def augment(codes: np.ndarray, rng: np.random.Generator, *, reverse_complement: bool,
            max_shift: int) -> np.ndarray:
    if reverse_complement:
        codes = random_reverse_complement(codes, rng)
    if max_shift:
        codes = random_shift(codes, max_shift, rng)
    return codes
