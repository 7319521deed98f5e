"""Worker processes for the converters' read pass, handing results back through shared memory.

`WorkerPool(n, result_bytes).ordered_map(fn, jobs)` runs fn(*job) in n forked processes and
yields the results (numpy arrays, or tuples of them) in job order, at most 2 per worker in flight.

Why shared memory: a Pool returns a result by pickling it through a pipe in 64 KiB writes and
reassembling it on the other side; for a 3 MB array of base codes that is ~8 ms of CPU, split
between the two processes: a tenth of what decoding the shard costs, and on two cores it took
a sixth off `--workers 2`'s speed-up. Instead, each job in flight owns a slot of one anonymous
shared mapping made before the fork: the worker copies its arrays there and sends back only
their dtypes, shapes and offsets. The kernel frees the mapping with the last process that
holds it, so even a SIGKILL leaves nothing behind (no /dev/shm file to clean up).
"""
from __future__ import annotations

import math
import mmap
import multiprocessing
import os
import signal
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Iterable, Iterator

import numpy as np

from maize_ddp.parent_death import die_with_parent

from .shards import ConvertError

ALIGN = 64  # each array starts on a cache line
MAX_ARRAYS = 4  # per result: alignment padding the slot size allows for

_slots: "ResultSlots | None" = None  # a worker's view of its pool's slots (set at fork)


class ResultSlots:
    """`count` slots of `size` bytes in one anonymous shared mapping."""

    def __init__(self, count: int, result_bytes: int):
        self.size = _aligned(result_bytes) + ALIGN * MAX_ARRAYS
        self.buffer = mmap.mmap(-1, count * self.size)  # MAP_SHARED | MAP_ANONYMOUS

    def put(self, slot: int, result) -> tuple[bool, list[tuple]]:
        """Copy a result (an array or a tuple of arrays) into a slot; return where it lies."""
        arrays = result if isinstance(result, tuple) else (result,)
        start = offset = slot * self.size
        places = []
        for a in arrays:
            a = np.asarray(a, order="C")
            if offset + a.nbytes > start + self.size:
                raise RuntimeError(f"a result of {sum(x.nbytes for x in arrays)} bytes does not fit "
                                   f"its {self.size}-byte slot")
            self._view(a.dtype, a.shape, offset)[...] = a
            places.append((a.dtype.str, a.shape, offset))
            offset += _aligned(a.nbytes)
        return isinstance(result, tuple), places

    def take(self, placed: tuple[bool, list[tuple]]):
        """The result a worker put: copied out, so its slot is free for the next job at once."""
        is_tuple, places = placed
        arrays = tuple(self._view(np.dtype(dtype), shape, offset).copy() for dtype, shape, offset in places)
        return arrays if is_tuple else arrays[0]

    def _view(self, dtype: np.dtype, shape: tuple, offset: int) -> np.ndarray:
        count = math.prod(shape)
        if count == 0:
            return np.empty(shape, dtype)
        return np.frombuffer(self.buffer, dtype, count, offset).reshape(shape)


def _aligned(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


class WorkerPool:
    """N forked worker processes, or none for workers=1 (everything then runs in this process).

    Fork, not spawn: the workers must inherit the shared mapping, and forked workers start at
    once without re-importing numpy. All are forked when the pool is made, so make it before
    anything starts threads (zarr starts an event-loop thread on first use).

    A concurrent.futures executor rather than multiprocessing.Pool: when a worker dies (the OOM
    killer) its job fails with BrokenProcessPool instead of waiting forever, and shutting down
    after an error lets running jobs finish instead of killing workers that may hold the
    result queue's lock (Pool.terminate could then hang the parent).
    """

    def __init__(self, workers: int, result_bytes: int):
        self.workers = workers
        self.executor = self.slots = None
        if workers > 1:
            if "fork" not in multiprocessing.get_all_start_methods():
                raise ConvertError("--workers above 1 needs the fork start method (Linux, macOS)")
            try:
                self.slots = ResultSlots(2 * workers, result_bytes)
            except OSError as e:
                raise ConvertError(f"--workers {workers}: no room for {2 * workers} decoded shards of "
                                   f"{result_bytes / 1e6:.0f} MB in shared memory ({e.strerror or e}); "
                                   "use fewer workers") from None
            self.executor = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                                                initializer=_worker_init, initargs=(self.slots, os.getpid()))
            self.executor.submit(int).result()  # the first job forks every worker, now

    def __enter__(self):
        return self

    def __exit__(self, kind, err, tb):
        if self.executor is not None:
            # Queued jobs are dropped, running ones (one shard each) finish; joining the workers
            # also adds their CPU time to this process's resource usage.
            self.executor.shutdown(wait=True, cancel_futures=True)
        return False

    def ordered_map(self, fn: Callable, jobs: Iterable[tuple]) -> Iterator:
        """fn(*job) for each job, results in order, at most 2 per worker in flight.

        The bound matters twice: mapping everything at once would run ahead of a slow writer
        and pile up decoded shards, so memory would again grow with the data; and job k may
        reuse slot k - 2N only once that result has been taken, which the bound guarantees.
        """
        if self.executor is None:
            for job in jobs:
                yield fn(*job)
            return
        in_flight = 2 * self.workers
        pending: deque = deque()
        try:
            for k, job in enumerate(jobs):
                pending.append(self.executor.submit(_call_into_slot, k % in_flight, fn, job))
                if len(pending) == in_flight:
                    yield self.slots.take(pending.popleft().result())
            while pending:
                yield self.slots.take(pending.popleft().result())
        except BrokenProcessPool:
            raise ConvertError("a worker process died (killed by a signal: out of memory?); rerun, "
                               "with fewer --workers if memory is short") from None


def _worker_init(slots: ResultSlots, parent: int) -> None:
    global _slots
    _slots = slots
    # Ctrl-C and SIGTERM are for the parent, which cleans up and shuts the pool down.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    die_with_parent(parent)


def _call_into_slot(slot: int, fn: Callable, job: tuple):
    return _slots.put(slot, fn(*job))
