"""Row reads from a Zarr v3 split.

Opened lazily in the process that reads (each DataLoader worker opens its own arrays).
Callers ask for whole chunks: zarr decodes a whole chunk for any row in it.

zarr's synchronous API hands every call to its event-loop thread and waits for the answer;
on a busy 2-core host those thread hops cost more than decoding a 0.5 MB chunk. Driving
zarr's async API from a private event loop in the reading thread, with all of a window's
chunks requested in one gather, takes ~1.5x less CPU per row.

Every read is checked (maize_ddp.store_format): a chunk that fails its CRC or does not decode,
a missing chunk (read as the fill value, which no row holds), and a chunk whose rows belong
elsewhere (its place CRC differs: a shard file swapped or copied from another store) become a
StoreError naming the shard file. Reads are widened to whole chunks for that check; zarr
decodes whole chunks anyway.
"""
from __future__ import annotations

import asyncio
from functools import lru_cache

import numpy as np

from maize_ddp.store_format import StoreError, check_codes, check_labels, check_place

from .store import StoreInfo

# Labels are 4 bytes x T a row, but a zarr call costs the same overhead whatever its size:
# read chunk by chunk they would cost as much as the sequences. So they are read a whole
# shard at a time and kept in a small LRU, which holds every label of most datasets and is
# capped, so memory does not grow with the data.
LABEL_CACHE_BYTES = 32 << 20


def quiet_about_interrupts(loop, context):
    # The main thread unwinds with an interrupt and says why in one line; a task's copy of it
    # (a second signal during _settle) would print a traceback after that line.
    if not isinstance(context.get("exception"), KeyboardInterrupt):
        loop.default_exception_handler(context)


class ZarrSource:
    def __init__(self, info: StoreInfo, split: str):
        import zarr.api.asynchronous as zarr_async

        self._loop = asyncio.new_event_loop()
        self._loop.set_exception_handler(quiet_about_interrupts)
        self._root, self._split = info.path, split
        self._chunk_rows, self._place = info.splits[split].chunk_rows, info.splits[split].chunk_crc32
        self._n = info.splits[split].n
        group = self._run(zarr_async.open_group(info.path, mode="r"))
        self._seq = self._run(group.getitem(f"{split}/seq"))
        self._y = self._run(group.getitem(f"{split}/y"))
        self._seq_file_rows = int((self._seq.shards or self._seq.chunks)[0])
        self._piece_rows = int((self._y.shards or self._y.chunks)[0])
        piece_bytes = self._piece_rows * info.num_targets * 4
        self._label_piece = lru_cache(maxsize=max(1, LABEL_CACHE_BYTES // piece_bytes))(self._read_label_piece)

    def _run(self, coroutine):
        try:
            return self._loop.run_until_complete(coroutine)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM (errors.Terminated) landed inside a read
            self._settle(cancel=True)
            raise
        except BaseException:
            self._settle()
            raise

    def _settle(self, cancel: bool = False):
        # A chunk that fails leaves zarr's reads of its neighbours pending: finish them (or, after
        # an interrupt, cancel them), or each prints "Task was destroyed but it is pending!" or
        # "coroutine was never awaited" when the loop goes. Running the loop once more also hands
        # an interrupted task's exception to the gather that waits for it.
        pending = asyncio.all_tasks(self._loop)
        for task in pending if cancel else ():
            task.cancel()

        async def finish():  # gather inside our loop: outside one it binds to the thread's default loop
            await asyncio.gather(*pending, asyncio.sleep(0), return_exceptions=True)
        self._loop.run_until_complete(finish())

    def read(self, ranges) -> tuple[list[np.ndarray], np.ndarray]:
        """Rows [start, stop) of each range, in order: codes as uint8 [rows, L] pieces, at most
        one per shard file, so a problem names its file (the caller assembles them once, where
        they belong), labels float32 [R, T]."""
        F, C = self._seq_file_rows, self._chunk_rows
        parts = [(lo, min(b, (lo // F + 1) * F)) for a, b in ranges for lo in [a, *range((a // F + 1) * F, b, F)]]
        wide = [(a // C * C, min(-(-b // C) * C, self._n)) for a, b in parts]  # whole chunks

        async def all_codes():
            return await asyncio.gather(*(self._seq.getitem(slice(a, b)) for a, b in wide),
                                        return_exceptions=True)
        pieces = []
        for (a, b), (wa, _), piece in zip(parts, wide, self._run(all_codes())):
            where = self._file(self._seq, a // F)
            if isinstance(piece, BaseException):
                raise StoreError(f"{where}: unreadable chunk ({type(piece).__name__}: {piece})")
            check_codes(piece, where, first_row=wa)
            check_place(self._place and self._place["seq"], self._split, "seq", wa // C, C, piece, where)
            pieces.append(piece[a - wa:b - wa])
        return pieces, np.concatenate([self._labels(a, b) for a, b in ranges])

    def ids(self, stop: int | None = None) -> np.ndarray:
        """Row ids 0 .. stop-1 (all by default) as str, read shard by shard: a shard that fails
        its CRC, or is missing (read as "", which no id is), is named."""
        import zarr.api.asynchronous as zarr_async

        group = self._run(zarr_async.open_group(self._root, mode="r"))
        array = self._run(group.getitem(f"{self._split}/id"))
        F = int((array.shards or array.chunks)[0])
        n = array.shape[0] if stop is None else min(stop, array.shape[0])
        parts = [(a, min(a + F, n)) for a in range(0, n, F)]

        async def all_ids():
            return await asyncio.gather(*(array.getitem(slice(a, b)) for a, b in parts), return_exceptions=True)
        pieces = []
        for (a, _), piece in zip(parts, self._run(all_ids())):
            where = self._file(array, a // F)
            if isinstance(piece, BaseException):
                raise StoreError(f"{where}: unreadable chunk ({type(piece).__name__}: {piece})")
            piece = np.array(piece.tolist(), dtype=str)  # zarr gives numpy's StringDType
            empty = np.char.str_len(piece) == 0
            if empty.any():
                raise StoreError(f"{where}: a missing chunk at row {a + int(np.argmax(empty))} (the store is "
                                 "damaged: restore it or convert the data again)")
            C = self._chunk_rows  # a glimpse (stop) may end inside a chunk: its whole chunks are checked
            whole = len(piece) if a + len(piece) == array.shape[0] else len(piece) // C * C
            check_place(self._place and self._place["id"], self._split, "id", a // C, C, piece[:whole], where)
            pieces.append(piece)
        return np.concatenate(pieces) if pieces else np.empty(0, str)

    def _file(self, array, k: int) -> str:
        """The file that holds shard (or chunk) k of an array."""
        key = (k, 0) if len(array.shape) == 2 else (k,)
        return f"{self._root}/{self._split}/{array.basename}/{array.metadata.encode_chunk_key(key)}"

    def _read_label_piece(self, k: int) -> np.ndarray:
        first = k * self._piece_rows
        where = self._file(self._y, k)
        try:
            y = np.asarray(self._run(self._y.getitem(slice(first, first + self._piece_rows))), dtype=np.float32)
        except Exception as e:  # a CRC mismatch, a damaged blosc frame, a truncated shard index
            raise StoreError(f"{where}: unreadable chunk ({type(e).__name__}: {e})") from None
        check_labels(y, where, first_row=first)
        check_place(self._place and self._place["y"], self._split, "y", first // self._chunk_rows, self._chunk_rows,
                    y, where)
        return y

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
