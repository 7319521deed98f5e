"""A split's rows and ids, whichever format holds them: the one place that picks the reader
(store.py describes a store and knows neither reader; each reader knows only its format)."""
from __future__ import annotations

import numpy as np

from .store import StoreInfo
from .wds_source import WdsSource, read_wds_ids
from .zarr_source import ZarrSource


def open_source(info: StoreInfo, split: str):
    """The row reader of one split: `.read(ranges)` -> (codes pieces, labels), checked."""
    return ZarrSource(info, split) if info.kind == "zarr" else WdsSource(info, split)


def read_ids(info: StoreInfo, split: str, stop: int | None = None) -> np.ndarray:
    """The split's row ids (str) in row order, all of them or the first `stop`, checked like
    any other read (WebDataset: the whole ids.txt against its CRC-32)."""
    if info.kind == "zarr":
        return ZarrSource(info, split).ids(stop)
    return read_wds_ids(info, split, stop)
