"""Streaming data layer: open a Zarr or WebDataset store and iterate per-rank batches.

    info = open_store(path)                      # StoreInfo; StoreError for anything unreadable
    info.check(split="train", seq_len=L, num_targets=T)
    loader = make_loader(path, "train", batch_size=B, rank=r, world_size=W, num_workers=2)
    loader.set_epoch(epoch, start_batch=k)
    for codes, y in loader: ...                  # uint8 [B, L], float32 [B, T]

See docs/data.md for the sharding, shuffle and resume rules.
"""
from .loader import BatchLoader, make_loader
from .store import Shard, SplitInfo, StoreError, StoreInfo, open_store

__all__ = ["open_store", "StoreInfo", "SplitInfo", "Shard", "StoreError", "make_loader", "BatchLoader"]
