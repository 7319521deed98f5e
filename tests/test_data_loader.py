"""make_loader on real stores built by the converters: rows, order, resume, workers, augmentation."""
import itertools

import numpy as np
import pytest
import torch

from _stores import build_wds, build_zarr, make_rows, write_npz_source, write_wds_with_webdataset
from maize_ddp.codes import reverse_complement
from maize_ddp.data import make_loader
from maize_ddp.data.augment import shift

L, T = 40, 2
SPLITS = {"train": make_rows(203, L, T, seed=0), "val": make_rows(37, L, T, seed=1), "test": make_rows(5, L, T, seed=2)}
KINDS = ["zarr", "wds"]


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("loader")
    src = write_npz_source(root / "src", SPLITS, shard_rows=30)
    # Zarr: 8-row chunks; WebDataset: 50-row tars, so val and test are one tar each.
    return {"zarr": build_zarr(src, root / "d.zarr", chunk_rows=8, shard_rows=32),
            "wds": build_wds(src, root / "d.wds", shard_samples=50)}


def epoch(loader, epoch=0, start_batch=0):
    loader.set_epoch(epoch, start_batch)
    return [tuple(t.clone() for t in batch) for batch in loader]


def check_rows(split, batches):
    """Every (codes, y) is the source row that `rows` names."""
    codes, y = SPLITS[split]
    for c, yy, rows in batches:
        assert c.dtype == torch.uint8 and yy.dtype == torch.float32 and rows.dtype == torch.int64
        assert c.shape == (len(rows), L) and yy.shape == (len(rows), T)
        np.testing.assert_array_equal(c.numpy(), codes[rows.numpy()])
        np.testing.assert_array_equal(yy.numpy(), y[rows.numpy()])


@pytest.mark.parametrize("kind", KINDS)
def test_eval_reads_every_row_exactly_once(stores, kind):
    for split, world, batch in itertools.product(["train", "val", "test"], [1, 2, 3, 8], [4, 16]):
        rows, counts = [], []
        for rank in range(world):
            loader = make_loader(stores[kind], split, batch_size=batch, rank=rank, world_size=world, train=False)
            batches = epoch(loader)
            assert len(batches) == len(loader)
            check_rows(split, batches)
            rows += [r for _, _, rr in batches for r in rr.tolist()]
            counts.append(len(batches))
        assert rows == list(range(len(SPLITS[split][0]))), (split, world, batch)


@pytest.mark.parametrize("kind", KINDS)
def test_train_same_batch_count_on_every_rank(stores, kind):
    n = len(SPLITS["train"][0])
    for world, batch in itertools.product([1, 2, 3, 4], [1, 7, 32]):
        seen = []
        for rank in range(world):
            loader = make_loader(stores[kind], "train", batch_size=batch, rank=rank, world_size=world,
                                 seed=5, with_rows=True)
            batches = epoch(loader, epoch=1)
            assert len(loader) == len(batches) == n // (world * batch)
            assert all(len(b[0]) == batch for b in batches)
            check_rows("train", batches)
            seen += [r for _, _, rr in batches for r in rr.tolist()]
        assert len(seen) == len(set(seen)) == n // (world * batch) * world * batch


def test_train_on_a_single_tar_split(stores):
    """Few shards: one 37-row tar still trains 3 ranks with equal batch counts."""
    for rank in range(3):
        loader = make_loader(stores["wds"], "val", batch_size=4, rank=rank, world_size=3, with_rows=True)
        batches = epoch(loader)
        assert len(batches) == 3
        check_rows("val", batches)


@pytest.mark.parametrize("note_every", [0, 3], ids=["plain", "extra-members"])
def test_reads_tars_written_by_webdataset(tmp_path, note_every):
    """webdataset's TarWriter puts a pax header before each member; extra fields (KEY.txt) make
    the members unevenly spaced. Both must read exactly."""
    path = write_wds_with_webdataset(tmp_path / "w.wds", {"val": SPLITS["val"]}, shard_samples=16,
                                     note_every=note_every)
    for world in (1, 2):
        batches = [b for rank in range(world) for b in epoch(make_loader(path, "val", batch_size=5, rank=rank,
                                                                          world_size=world, train=False))]
        check_rows("val", batches)
        assert [r for _, _, rows in batches for r in rows.tolist()] == list(range(37))


def test_backends_give_the_same_rows(stores):
    """An epoch at batch size 1 on one rank drops nothing: both backends yield the whole split."""
    def multiset(kind):
        loader = make_loader(stores[kind], "train", batch_size=1, seed=1)
        batches = epoch(loader)
        return sorted((c.numpy().tobytes(), y.numpy().tobytes()) for c, y in batches)
    source = sorted((c.tobytes(), y[None].tobytes()) for c, y in zip(*SPLITS["train"]))
    assert multiset("zarr") == multiset("wds") == source


@pytest.mark.parametrize("kind", KINDS)
def test_order_changes_per_epoch_and_repeats_per_seed_and_epoch(stores, kind):
    def order(seed, e):
        loader = make_loader(stores[kind], "train", batch_size=8, seed=seed, with_rows=True)
        return [rows.tolist() for _, _, rows in epoch(loader, e)]
    assert order(0, 0) == order(0, 0)
    assert order(0, 0) != order(0, 1)
    assert order(0, 0) != order(1, 0)
    assert sorted(sum(order(0, 0), [])) != sum(order(0, 0), [])  # shuffled, not source order


@pytest.mark.parametrize("kind", KINDS)
def test_resume_at_batch_k_is_the_tail_of_the_epoch(stores, kind):
    loader = make_loader(stores[kind], "train", batch_size=4, rank=1, world_size=2, seed=7,
                         reverse_complement=True, max_shift=3, with_rows=True, shuffle_blocks=2)
    full = epoch(loader, 3)
    assert len(full) == len(loader) == 25
    for k in [0, 1, 3, 4, 11, 24, 25]:  # window edges (4 batches a window here) and both ends
        tail = epoch(loader, 3, start_batch=k)
        assert len(tail) == len(full) - k
        for a, b in zip(tail, full[k:]):
            assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_batches_mix_many_chunks(stores):
    loader = make_loader(stores["zarr"], "train", batch_size=16, with_rows=True)
    chunks_per_batch = [len(set((rows // 8).tolist())) for _, _, rows in epoch(loader)]
    assert np.mean(chunks_per_batch) > 8  # 16 rows from 16 shuffled 8-row chunks


def test_augmentations_off_by_default_and_correct(stores):
    codes, y = SPLITS["train"]
    plain = epoch(make_loader(stores["zarr"], "train", batch_size=8, with_rows=True))
    check_rows("train", plain)

    flipped = 0
    for c, yy, rows in epoch(make_loader(stores["zarr"], "train", batch_size=8, with_rows=True,
                                         reverse_complement=True)):
        for got, row in zip(c.numpy(), rows.numpy()):
            is_rc = np.array_equal(got, reverse_complement(codes[row]))
            assert is_rc or np.array_equal(got, codes[row])
            flipped += is_rc and not np.array_equal(got, codes[row])
        np.testing.assert_array_equal(yy.numpy(), y[rows.numpy()])  # labels unchanged
    assert 60 < flipped < 140  # about half of 200

    shifts = []
    for c, _, rows in epoch(make_loader(stores["zarr"], "train", batch_size=8, with_rows=True, max_shift=3)):
        for got, row in zip(c.numpy(), rows.numpy()):
            s = [s for s in range(-3, 4) if np.array_equal(got, shift(codes[row][None], np.array([s]))[0])]
            assert s, "not a shift of the source row"
            shifts.append(s[0])
    assert set(shifts) == set(range(-3, 4))

    evaluation = epoch(make_loader(stores["zarr"], "val", batch_size=8, train=False,
                                   reverse_complement=True, max_shift=3))
    check_rows("val", evaluation)  # evaluation never augments


def test_bad_settings_are_clear(stores):
    with pytest.raises(ValueError, match="5 rows, fewer than world_size x batch_size = 2 x 4"):
        make_loader(stores["wds"], "test", batch_size=4, world_size=2)
    with pytest.raises(ValueError, match="rank=2"):
        make_loader(stores["zarr"], "train", batch_size=4, rank=2, world_size=2)
    with pytest.raises(ValueError, match="max_shift"):
        make_loader(stores["zarr"], "train", batch_size=4, max_shift=L)


# ---- persistent spawn workers (each loader here starts 2 processes: a few seconds) ----------

@pytest.mark.parametrize("kind", KINDS)
def test_two_workers_give_the_zero_worker_stream_across_epochs(stores, kind):
    args = dict(batch_size=4, seed=11, with_rows=True, reverse_complement=True, max_shift=2, shuffle_blocks=2)
    reference = make_loader(stores[kind], "train", **args)
    with make_loader(stores[kind], "train", num_workers=2, **args) as loader:
        for e, start in [(0, 0), (1, 0), (1, 9), (2, 0)]:  # the epoch must reach persistent workers
            got, want = epoch(loader, e, start), epoch(reference, e, start)
            assert len(got) == len(want) == len(loader) - start
            for a, b in zip(got, want):
                assert all(torch.equal(x, y) for x, y in zip(a, b))
        # an epoch abandoned halfway, then the next one from its start
        loader.set_epoch(3)
        next(iter(loader))
        assert [b[2].tolist() for b in epoch(loader, 4)] == [b[2].tolist() for b in epoch(reference, 4)]


def test_reading_ahead_hands_the_workers_that_epoch_and_changes_no_batch(stores):
    """The trainer reads an epoch ahead (its first windows load while the model is built, or while
    the previous epoch validates): the windows go to the workers at once, the epoch's batches are
    the zero-worker stream's, and an epoch other than the one read ahead is still served exactly."""
    args = dict(batch_size=4, seed=3, with_rows=True, shuffle_blocks=2)
    reference = make_loader(stores["zarr"], "train", **args)
    with make_loader(stores["zarr"], "train", num_workers=2, **args) as loader:
        loader.read_ahead(0)
        # one window a worker requested before any batch is asked for (torch's count of tasks out)
        assert loader._dataloader._iterator._tasks_outstanding == 2
        for (e, start), (ahead, ahead_start) in [((0, 0), (0, 0)), ((1, 0), (1, 0)), ((2, 5), (2, 5)),
                                                 ((3, 9), (3, 0)), ((5, 0), (4, 0))]:
            if (e, start) != (0, 0):
                loader.read_ahead(ahead, ahead_start)
            got, want = epoch(loader, e, start), epoch(reference, e, start)
            assert [b[2].tolist() for b in got] == [b[2].tolist() for b in want], (e, start, ahead)
            assert all(torch.equal(x, y) for a, b in zip(got, want) for x, y in zip(a, b))
        # read ahead, then iterated with no set_epoch: still the epoch that was set
        loader.read_ahead(6)
        assert [b[2].tolist() for b in loader] == [b[2].tolist() for b in epoch(reference, 5)]


def test_single_tar_split_evaluated_once_with_more_ranks_x_workers_than_tars(stores):
    """One tar, 2 ranks: rank 0 uses 2 workers, rank 1 none (the plan does not depend on workers)."""
    rows = []
    for rank, workers in [(0, 2), (1, 0)]:
        with make_loader(stores["wds"], "val", batch_size=4, rank=rank, world_size=2, train=False,
                         num_workers=workers) as loader:
            batches = epoch(loader)
            check_rows("val", batches)
            rows += [r for _, _, rr in batches for r in rr.tolist()]
    assert rows == list(range(37))


def test_iterating_leaves_the_global_torch_rng_alone(stores):
    """The trainer's dropout stream must not depend on how often a loader was iterated."""
    loader = make_loader(stores["zarr"], "train", batch_size=8)
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    epoch(loader, 0)
    epoch(loader, 1)
    assert torch.equal(torch.rand(3), expected)
