"""The plan alone (no I/O): equal train batches per rank, exact-once evaluation, epoch order."""
import itertools

import numpy as np
import pytest

from maize_ddp.data import plan


def rows_of(windows):
    """Per batch, the source rows a worker yields."""
    batches = []
    for w in windows:
        rows = np.concatenate([np.arange(a, b) for a, b in w.ranges])
        rows = rows[plan.window_order(w, len(rows))]
        batches += [rows[i:i + w.batch_size] for i in range(0, len(rows), w.batch_size)]
    return batches


def layouts():
    """Block bounds: regular chunks with a short last one, and irregular tar-like blocks."""
    yield np.append(np.arange(0, 203, 8), 203)
    yield np.array([0, 5, 50, 51, 120, 128, 190, 203])
    yield np.array([0, 203])  # one block (one small tar)


@pytest.mark.parametrize("bounds", list(layouts()), ids=["chunks", "irregular", "one-block"])
def test_train_same_batch_count_on_every_rank_and_disjoint_rows(bounds):
    n = int(bounds[-1])
    for world, batch, window in itertools.product([1, 2, 3, 5, 8], [1, 4, 7, 32], [1, 3, 64]):
        steps = n // (world * batch)
        seen = []
        for rank in range(world):
            batches = rows_of(plan.train_windows(bounds, seed=3, epoch=1, rank=rank, world_size=world,
                                                 batch_size=batch, window_batches=window))
            assert len(batches) == steps and all(len(b) == batch for b in batches)
            seen += [r for b in batches for r in b]
        assert len(seen) == len(set(seen)) == world * steps * batch  # disjoint; only the tail dropped
        assert set(seen) <= set(range(n))


@pytest.mark.parametrize("n", [0, 1, 5, 37, 203])
def test_eval_covers_every_row_exactly_once_in_order(n):
    for world, batch, window in itertools.product([1, 2, 3, 8], [1, 4, 32], [1, 2, 64]):
        seen, counts = [], []
        for rank in range(world):
            batches = rows_of(plan.eval_windows(n, rank=rank, world_size=world, batch_size=batch,
                                                window_batches=window))
            assert len(batches) == plan.eval_batches(n, rank, world, batch)
            assert all(0 < len(b) <= batch for b in batches)
            counts.append(sum(map(len, batches)))
            seen += [r for b in batches for r in b]
        assert seen == list(range(n))  # exact once, and ranks hold consecutive row ranges
        assert max(counts) - min(counts) <= 1


def test_epoch_permutation_depends_on_seed_and_epoch_only():
    bounds = np.append(np.arange(0, 203, 8), 203)

    def order(seed, epoch):
        return [b.tolist() for b in rows_of(plan.train_windows(bounds, seed=seed, epoch=epoch, rank=0,
                                                                world_size=1, batch_size=4, window_batches=5))]
    assert order(0, 0) == order(0, 0)
    assert order(0, 0) != order(0, 1)
    assert order(0, 0) != order(1, 0)


def test_resume_windows_are_the_tail():
    bounds = np.append(np.arange(0, 203, 8), 203)
    args = dict(seed=0, epoch=2, rank=1, world_size=2, batch_size=4, window_batches=5)
    full = rows_of(plan.train_windows(bounds, **args))
    for k in range(len(full) + 1):
        tail = rows_of(plan.train_windows(bounds, start_batch=k, **args))
        assert [b.tolist() for b in tail] == [b.tolist() for b in full[k:]]


def test_block_bounds_cut_tar_shards_into_blocks():
    from maize_ddp.data.store import Shard, SplitInfo, StoreInfo

    shards = (Shard("a.tar", 300, 0), Shard("b.tar", 5, 300))
    info = StoreInfo("wds", "x.wds", 10, 1, {"train": SplitInfo(305, [0.0], [1.0], shards=shards)})
    assert plan.block_bounds(info, "train", wds_block_rows=128).tolist() == [0, 128, 256, 300, 305]
