"""Tiny npz datasets in the seed's layout (SRC/{split}/*.npz, arr_0 one-hot, arr_1 labels) for tests.

`make_dataset` returns what a converter must produce: per split, the uint8 codes and float32
labels [N, T] of every row in source order.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from maize_ddp.codes import N_CODE


def random_codes(rng, rows: int, seq_len: int) -> np.ndarray:
    codes = rng.integers(0, 4, size=(rows, seq_len)).astype(np.uint8)
    codes[rng.random((rows, seq_len)) < 0.05] = N_CODE
    return codes


def encode(codes: np.ndarray, layout: str = "N4L", dtype="float32", uniform_n: bool = False) -> np.ndarray:
    """One-hot of codes; N is an all-zero column, or a uniform 0.25 column if uniform_n."""
    onehot = np.eye(5, 4, dtype=np.float64)[codes]  # [N, L, 4]
    if uniform_n:
        onehot[codes == N_CODE] = 0.25
    if layout == "N4L":
        onehot = onehot.transpose(0, 2, 1)
    return np.ascontiguousarray(onehot.astype(dtype))


def write_shard(path, arr_0=None, arr_1=None, compressed: bool = True, **extra) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {k: v for k, v in (("arr_0", arr_0), ("arr_1", arr_1)) if v is not None}
    (np.savez_compressed if compressed else np.savez)(path, **arrays, **extra)
    return path


def make_dataset(root, shards=None, *, seq_len=40, num_targets=1, layout="N4L", dtype="float32",
                 labels_1d=None, uniform_n=False, seed=0, compressed=True) -> dict:
    """Write SRC/{split}/{split}_{i:03d}.npz; shards maps split -> rows per shard.

    Returns {split: (codes [N, L] uint8, labels [N, T] float32)}. A 1-D arr_1 is written for one
    target unless labels_1d is False.
    """
    shards = shards or {"train": [13, 7, 20], "val": [9], "test": [5, 6]}
    labels_1d = num_targets == 1 if labels_1d is None else labels_1d
    rng = np.random.default_rng(seed)
    expected = {}
    for split, sizes in shards.items():
        all_codes, all_y = [], []
        for i, rows in enumerate(sizes):
            codes = random_codes(rng, rows, seq_len)
            y = rng.normal(size=(rows, num_targets)).astype(np.float32)
            write_shard(Path(root) / split / f"{split}_{i:03d}.npz",
                        encode(codes, layout, dtype, uniform_n), y[:, 0] if labels_1d else y,
                        compressed=compressed)
            all_codes.append(codes)
            all_y.append(y)
        expected[split] = (np.concatenate(all_codes), np.concatenate(all_y))
    return expected


def label_stats(y: np.ndarray) -> tuple[list, list]:
    y = y.astype(np.float64)
    return y.mean(axis=0).tolist(), y.std(axis=0).tolist()
