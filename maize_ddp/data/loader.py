"""make_loader: the per-rank stream of batches that the trainer iterates.

The plan (plan.py) runs in the main process and hands each worker whole Windows, so the
epoch and resume position reach persistent workers without any state living in them: a
worker only turns a Window into tensors. DataLoader returns map-style items in sampler
order, so the batch stream is the same with 0, 1 or 8 workers.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from . import plan
from ..process_exit import freeze_garbage_collection
from .augment import augment, batch_rng
from .sources import open_source
from .store import StoreError, StoreInfo, open_store

# Blocks mixed in one window. A batch of B rows from a window of M blocks holds rows of
# ~min(B, M) blocks, and consecutive batches share the window: on data sorted by label their
# mean labels correlate ~1/(1 + M/B). A window is ~16 MB of codes for Zarr's default 512 KiB
# chunks, ~12 MB for WebDataset's 32-row blocks at 3020 bp.
SHUFFLE_BLOCKS = {"zarr": 32, "wds": 128}


class ReadFailure:
    """A StoreError met in a DataLoader worker, handed back as data: re-raised in the main
    process it stays one line (DataLoader would wrap it in the worker's traceback)."""

    def __init__(self, message: str):
        self.message = message


class WindowReader(Dataset):
    """Map-style dataset whose keys are Windows and whose items are (codes, y, rows) tensors.

    The store is opened on first use in the process that reads, never pickled.
    """

    def __init__(self, info: StoreInfo, split: str, *, reverse_complement: bool = False,
                 max_shift: int = 0):
        self.info, self.split = info, split
        self.reverse_complement, self.max_shift = reverse_complement, max_shift
        self._source = None

    def __getstate__(self):
        return {**self.__dict__, "_source": None}

    def __getitem__(self, window: plan.Window):
        try:
            return self._read(window)
        except StoreError as e:
            if get_worker_info() is None:
                raise
            return ReadFailure(str(e))

    def _read(self, window: plan.Window):
        if self._source is None:
            self._source = open_source(self.info, self.split)
        pieces, y = self._source.read(window.ranges)
        rows = np.concatenate([np.arange(a, b, dtype=np.int64) for a, b in window.ranges])
        order = plan.window_order(window, len(rows))
        codes = torch.empty((len(order), self.info.seq_len), dtype=torch.uint8)
        if get_worker_info() is not None:
            # The batch reaches the main process through shared memory anyway: writing it
            # there directly saves a copy of the window (page faults are dear on a busy host).
            codes.share_memory_()
        gather_pieces(pieces, order, out=codes.numpy())
        if window.seed_key is not None and (self.reverse_complement or self.max_shift):
            B, out = window.batch_size, codes.numpy()
            for j in range(0, len(order), B):
                rng = batch_rng(*window.seed_key, window.first_batch + window.skip + j // B)
                out[j:j + B] = augment(out[j:j + B], rng, reverse_complement=self.reverse_complement,
                                       max_shift=self.max_shift)
        return codes, torch.from_numpy(y[order]), torch.from_numpy(rows[order])


def gather_pieces(pieces: list[np.ndarray], order: np.ndarray, out: np.ndarray) -> None:
    """out[i] = concatenate(pieces)[order[i]], without building the concatenation: each piece
    is copied once, straight to where its rows go (rows absent from order are dropped)."""
    total = sum(len(p) for p in pieces)
    where = np.full(total, -1, dtype=np.int64)
    where[order] = np.arange(len(order))
    start = 0
    for piece in pieces:
        dest = where[start:start + len(piece)]
        start += len(piece)
        kept = dest >= 0
        if kept.all():
            out[dest] = piece
        elif kept.any():
            out[dest[kept]] = piece[kept]


class _WindowSampler:
    """Yields this rank's windows for the current epoch; lives in the main process."""

    def __init__(self, bounds, *, train, seed, rank, world_size, batch_size, window_batches):
        self.bounds, self.train, self.seed = bounds, train, seed
        self.rank, self.world_size, self.batch_size = rank, world_size, batch_size
        self.window_batches = window_batches
        self.epoch, self.start_batch = 0, 0

    def __iter__(self):
        common = dict(rank=self.rank, world_size=self.world_size, batch_size=self.batch_size,
                      window_batches=self.window_batches, start_batch=self.start_batch)
        if self.train:
            return plan.train_windows(self.bounds, seed=self.seed, epoch=self.epoch, **common)
        return plan.eval_windows(int(self.bounds[-1]), **common)


class BatchLoader:
    """Iterate batches of one split for one rank. Create once; call set_epoch before each epoch."""

    def __init__(self, path, split: str, *, batch_size: int, rank: int = 0, world_size: int = 1,
                 seed: int = 0, train: bool = True, num_workers: int = 0,
                 reverse_complement: bool = False, max_shift: int = 0, pin_memory: bool = False,
                 with_rows: bool | None = None, shuffle_blocks: int | None = None):
        info = open_store(path)
        info.check(split=split)
        if batch_size < 1 or not 0 <= rank < world_size or num_workers < 0:
            raise ValueError(f"bad loader settings: batch_size={batch_size}, rank={rank}, "
                             f"world_size={world_size}, num_workers={num_workers}")
        if not 0 <= max_shift < info.seq_len:
            raise ValueError(f"max_shift must be in 0..{info.seq_len - 1}, got {max_shift}")
        n = info.splits[split].n
        self.info, self.split, self.batch_size, self.train = info, split, batch_size, train
        self.with_rows = (not train) if with_rows is None else with_rows
        if train:
            self._len = plan.train_batches(n, world_size, batch_size)
            if self._len == 0:
                raise ValueError(f"{path}: split {split!r} has {n} rows, fewer than world_size x batch_size "
                                 f"= {world_size} x {batch_size}: no full batch per rank (lower batch_size)")
        else:
            self._len = plan.eval_batches(n, rank, world_size, batch_size)
        bounds = plan.block_bounds(info, split)
        shuffle_blocks = shuffle_blocks or SHUFFLE_BLOCKS[info.kind]
        window_batches = max(1, shuffle_blocks * int(np.diff(bounds).max(initial=1)) // batch_size)
        if not train and num_workers:  # eval order is source order whatever the window: spread the work
            window_batches = max(1, min(window_batches, -(-self._len // num_workers)))
        self._sampler = _WindowSampler(bounds, train=train, seed=seed, rank=rank, world_size=world_size,
                                       batch_size=batch_size, window_batches=window_batches)
        reader = WindowReader(info, split, reverse_complement=train and reverse_complement,
                              max_shift=max_shift if train else 0)
        self._dataloader = DataLoader(
            reader, sampler=self._sampler, batch_size=None, num_workers=num_workers,
            multiprocessing_context="spawn" if num_workers else None,
            # Windows are big (~80 batches of 64): one in flight per worker keeps them busy.
            persistent_workers=num_workers > 0, prefetch_factor=1 if num_workers else None,
            worker_init_fn=freeze_garbage_collection,  # a worker's start-up heap: never collected, exit in ms
            pin_memory=pin_memory and torch.cuda.is_available(),
            # DataLoader draws a seed from this generator at every iter(); with the default
            # (global) one that draw would shift the training RNG and break exact resume.
            generator=torch.Generator().manual_seed(seed))
        self._ahead = None  # ((epoch, start_batch), the DataLoader iterator already reading it)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch (train: its permutation) and the first batch to yield (resume)."""
        if not 0 <= start_batch <= self._len:
            raise ValueError(f"start_batch {start_batch} outside 0..{self._len}")
        self._sampler.epoch, self._sampler.start_batch = epoch, start_batch

    def read_ahead(self, epoch: int, start_batch: int = 0) -> None:
        """Set the workers reading that epoch's first windows now (one a worker; the first call
        also starts them), while the caller does other work: builds the model, validates. Its
        iteration, after set_epoch(epoch, start_batch), then starts with them in hand; another
        position discards them. Without workers nothing can be read ahead, and this does nothing."""
        if not self._dataloader.num_workers:
            return
        current = self._sampler.epoch, self._sampler.start_batch
        self.set_epoch(epoch, start_batch)
        try:
            self._ahead = (epoch, start_batch), iter(self._dataloader)
        finally:
            self._sampler.epoch, self._sampler.start_batch = current

    def __len__(self) -> int:
        return self._len

    def __iter__(self):
        B = self.batch_size
        ahead, self._ahead = self._ahead, None
        position = self._sampler.epoch, self._sampler.start_batch
        # (persistent workers: iter() restarts the one DataLoader iterator, ahead's included)
        items = ahead[1] if ahead is not None and ahead[0] == position else iter(self._dataloader)
        for item in items:
            if isinstance(item, ReadFailure):
                raise StoreError(item.message)
            codes, y, rows = item
            for batch in zip(codes.split(B), y.split(B), rows.split(B)):
                yield batch if self.with_rows else batch[:2]

    def close(self) -> None:
        """Stop the persistent workers now rather than at garbage collection."""
        iterator = getattr(self._dataloader, "_iterator", None)
        self._dataloader._iterator, self._ahead = None, None
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def make_loader(path, split: str, *, batch_size: int, rank: int = 0, world_size: int = 1,
                seed: int = 0, train: bool = True, num_workers: int = 0,
                reverse_complement: bool = False, max_shift: int = 0, pin_memory: bool = False,
                **options) -> BatchLoader:
    """The batches of `split` for this rank; see BatchLoader and docs/data.md."""
    return BatchLoader(path, split, batch_size=batch_size, rank=rank, world_size=world_size, seed=seed,
                       train=train, num_workers=num_workers, reverse_complement=reverse_complement,
                       max_shift=max_shift, pin_memory=pin_memory, **options)
