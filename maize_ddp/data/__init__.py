"""Streaming data layer: open a Zarr or WebDataset store and iterate per-rank batches.

    info = open_store(path)                      # StoreInfo; StoreError for anything unreadable
    info.check(split="train", seq_len=L, num_targets=T)
    loader = make_loader(path, "train", batch_size=B, rank=r, world_size=W, num_workers=2)
    loader.set_epoch(epoch, start_batch=k)
    for codes, y in loader: ...                  # uint8 [B, L], float32 [B, T]

See docs/data.md for the sharding, shuffle and resume rules.
"""
from .sources import open_source, read_ids
from .store import Shard, SplitInfo, StoreError, StoreInfo, open_store

__all__ = ["open_store", "open_source", "read_ids", "StoreInfo", "SplitInfo", "Shard", "StoreError", "make_loader",
           "BatchLoader"]


def __getattr__(name):
    # The loader needs torch; opening and reading a store does not (convert.inspect uses them).
    if name in ("make_loader", "BatchLoader"):
        from . import loader

        return getattr(loader, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
