"""The seed's npz shards, written in one place: OUT/{split}/{split}-00000.npz, each holding

    arr_0  one-hot [N, 4, L] (or [N, L, 4]); an N base is an all-zero column;
           or uint8 base codes [N, L] (A=0 C=1 G=2 T=3 N=4), 16x smaller, as table_to_npz writes
    arr_1  labels [N] for one target, else [N, T]
    ids    the rows' ids, str [N] (optional; the converters then name rows <file>:<row>)

convert.synth, convert.genome_to_npz and convert.table_to_npz write them (ShardWriter);
convert.shards reads (and checks) them for the converters, maize_ddp.predict for predictions;
both tell the layout with arr0_layout.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from maize_ddp.codes import codes_to_onehot


LAYOUTS = ("N4L", "NL4", "codes")


def arr0_layout(shape: tuple, dtype: np.dtype) -> str | None:
    """"N4L" or "NL4" from a 3-D arr_0's shape, by which axis has the 4 channels ([N, 4, L] wins
    when both do (L = 4), as the seed's layout); "codes" for a 2-D unsigned-integer arr_0.
    None: neither."""
    if len(shape) == 2:
        return "codes" if np.dtype(dtype).kind == "u" else None
    if len(shape) != 3:
        return None
    return "N4L" if shape[1] == 4 else "NL4" if shape[2] == 4 else None


def seq_len_of(shape: tuple, layout: str) -> int:
    return shape[2] if layout == "N4L" else shape[1]


def shard_path(out, split: str, k: int) -> Path:
    """The k-th shard of a split; names sort in row order."""
    return Path(out) / split / f"{split}-{k:05d}.npz"


def write_shard(path, codes: np.ndarray, labels: np.ndarray, ids=None, *, layout: str = "N4L",
                dtype="float32", compress: bool = True) -> Path:
    """Write uint8 codes [N, L] (as one-hot, or as they are for layout "codes"), labels ([N] or
    [N, T], as given) and ids."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    x = np.asarray(codes, np.uint8) if layout == "codes" else codes_to_onehot(codes, layout, dtype=np.dtype(dtype))
    arrays = {"arr_0": x,
              "arr_1": np.asarray(labels, dtype=np.float32)}
    if ids is not None:
        arrays["ids"] = np.asarray(ids, dtype=str)
    (np.savez_compressed if compress else np.savez)(path, **arrays)
    return path


class ShardWriter:
    """Buffers one split's rows and writes `{split}-{k:05d}.npz` each time shard_size rows fill."""

    def __init__(self, out, split: str, shard_size: int, *, layout: str = "N4L", dtype: str = "float32",
                 compress: bool = False):
        self.out, self.split, self.shard_size = Path(out), split, shard_size
        self.layout, self.dtype, self.compress = layout, dtype, compress
        self.codes: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []
        self.ids: list[str] = []
        self.rows = self.shards = 0

    def add(self, codes: np.ndarray, label: np.ndarray, row_id: str) -> int:
        """Buffer one row; returns its index inside the split."""
        self.codes.append(codes)
        self.labels.append(label)
        self.ids.append(row_id)
        self.rows += 1
        if len(self.codes) == self.shard_size:
            self.flush()
        return self.rows - 1

    def flush(self) -> None:
        if not self.codes:
            return
        write_shard(shard_path(self.out, self.split, self.shards), np.stack(self.codes), np.stack(self.labels),
                    self.ids, layout=self.layout, dtype=self.dtype, compress=self.compress)
        self.shards += 1
        self.codes, self.labels, self.ids = [], [], []
