"""Row reads from a Zarr v3 split.

Opened lazily in the process that reads (each DataLoader worker opens its own arrays).
Callers ask for whole chunks: zarr decodes a whole chunk for any row in it.

zarr's synchronous API hands every call to its event-loop thread and waits for the answer;
on a busy 2-core host those thread hops cost more than decoding a 0.5 MB chunk. Driving
zarr's async API from a private event loop in the reading thread, with all of a window's
chunks requested in one gather, takes ~1.5x less CPU per row.
"""
from __future__ import annotations

import asyncio
from functools import lru_cache

import numpy as np

from .store import StoreInfo

# Labels are 4 bytes x T a row, but a zarr call costs the same overhead whatever its size:
# read chunk by chunk they would cost as much as the sequences. So they are read a whole
# shard at a time and kept in a small LRU, which holds every label of most datasets and is
# capped, so memory does not grow with the data.
LABEL_CACHE_BYTES = 32 << 20


class ZarrSource:
    def __init__(self, info: StoreInfo, split: str):
        import zarr.api.asynchronous as zarr_async

        self._loop = asyncio.new_event_loop()
        group = self._run(zarr_async.open_group(info.path, mode="r"))
        self._seq = self._run(group.getitem(f"{split}/seq"))
        self._y = self._run(group.getitem(f"{split}/y"))
        self._piece_rows = int((self._y.shards or self._y.chunks)[0])
        piece_bytes = self._piece_rows * info.num_targets * 4
        self._label_piece = lru_cache(maxsize=max(1, LABEL_CACHE_BYTES // piece_bytes))(self._read_label_piece)

    def _run(self, coroutine):
        return self._loop.run_until_complete(coroutine)

    def read(self, ranges) -> tuple[list[np.ndarray], np.ndarray]:
        """Rows [start, stop) of each range, in order: codes as one uint8 [rows, L] piece per
        range (the caller assembles them once, where they belong), labels float32 [R, T]."""
        async def all_codes():
            return await asyncio.gather(*(self._seq.getitem(slice(a, b)) for a, b in ranges))
        return self._run(all_codes()), np.concatenate([self._labels(a, b) for a, b in ranges])

    def _read_label_piece(self, k: int) -> np.ndarray:
        rows = slice(k * self._piece_rows, (k + 1) * self._piece_rows)
        return np.asarray(self._run(self._y.getitem(rows)), dtype=np.float32)

    def _labels(self, start: int, stop: int) -> np.ndarray:
        P = self._piece_rows
        first = start // P
        pieces = [self._label_piece(k) for k in range(first, (stop - 1) // P + 1)]
        rows = np.concatenate(pieces) if len(pieces) > 1 else pieces[0]
        return rows[start - first * P:stop - first * P]

    def __del__(self):
        loop = getattr(self, "_loop", None)
        if loop is not None and not loop.is_closed():
            loop.close()
