"""The seed's npz shards, written in one place: OUT/{split}/{split}-00000.npz, each holding

    arr_0  one-hot [N, 4, L] (or [N, L, 4]); an N base is an all-zero column
    arr_1  labels [N] for one target, else [N, T]
    ids    the rows' ids, str [N] (optional; the converters then name rows <file>:<row>)

convert.synth and convert.genome_to_npz write them; convert.shards reads (and checks) them for
the converters, maize_ddp.predict for predictions; both tell the layout with onehot_layout.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from maize_ddp.codes import codes_to_onehot


def onehot_layout(shape: tuple) -> str | None:
    """"N4L" or "NL4" from arr_0's shape, by which axis has the 4 channels; [N, 4, L] wins when
    both do (L = 4), as the seed's layout. None: no channel axis of 4."""
    if len(shape) != 3:
        return None
    return "N4L" if shape[1] == 4 else "NL4" if shape[2] == 4 else None


def shard_path(out, split: str, k: int) -> Path:
    """The k-th shard of a split; names sort in row order."""
    return Path(out) / split / f"{split}-{k:05d}.npz"


def write_shard(path, codes: np.ndarray, labels: np.ndarray, ids=None, *, layout: str = "N4L",
                dtype="float32", compress: bool = True) -> Path:
    """Write uint8 codes [N, L] as one-hot, labels ([N] or [N, T], as given) and ids."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"arr_0": codes_to_onehot(codes, layout, dtype=np.dtype(dtype)),
              "arr_1": np.asarray(labels, dtype=np.float32)}
    if ids is not None:
        arrays["ids"] = np.asarray(ids, dtype=str)
    (np.savez_compressed if compress else np.savez)(path, **arrays)
    return path
