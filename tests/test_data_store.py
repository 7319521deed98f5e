"""open_store / StoreInfo.check: both kinds recognised, every bad input a one-line StoreError."""
import json
import shutil

import numpy as np
import pytest
import zarr

from _stores import build_wds, build_zarr, make_rows, write_npz_source
from maize_ddp.data import StoreError, make_loader, open_store

SPLITS = {"train": make_rows(40, seq_len=24, num_targets=2), "val": make_rows(9, seq_len=24, num_targets=2, seed=1)}


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("stores")
    src = write_npz_source(root / "src", SPLITS, shard_rows=15)
    return (build_zarr(src, root / "d.zarr", chunk_rows=8, shard_rows=16),
            build_wds(src, root / "d.wds", shard_samples=16))


def test_both_kinds_read_alike(stores):
    zinfo, winfo = open_store(stores[0]), open_store(stores[1])
    assert (zinfo.kind, winfo.kind) == ("zarr", "wds")
    for info in (zinfo, winfo):
        assert (info.seq_len, info.num_targets) == (24, 2)
        assert sorted(info.splits) == ["train", "val"]
        assert info.splits["train"].n == 40 and info.splits["val"].n == 9
        y = SPLITS["train"][1].astype(np.float64)
        np.testing.assert_allclose(info.splits["train"].label_mean, y.mean(0), rtol=1e-6)
        np.testing.assert_allclose(info.splits["train"].label_std, y.std(0), rtol=1e-6)
        info.check(split="train", seq_len=24, num_targets=2)


@pytest.mark.parametrize("kind", [0, 1])
def test_check_says_expected_and_found(stores, kind):
    info = open_store(stores[kind])
    with pytest.raises(StoreError, match=r"no split 'test' \(the store has: train, val\)"):
        info.check(split="test")
    with pytest.raises(StoreError, match="model expects seq_len 3020, the store has seq_len 24"):
        info.check(seq_len=3020)
    with pytest.raises(StoreError, match="model expects 1 targets, the store has 2"):
        info.check(num_targets=1)
    with pytest.raises(StoreError, match="no split 'test'"):
        make_loader(stores[kind], "test", batch_size=4)


def one_line(excinfo, path):
    message = str(excinfo.value)
    assert "\n" not in message and str(path) in message
    return message


def test_not_a_store(tmp_path):
    with pytest.raises(StoreError, match="no such file") as e:
        open_store(tmp_path / "missing.zarr")
    one_line(e, tmp_path / "missing.zarr")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="neither a maize_ddp Zarr store") as e:
        open_store(tmp_path / "empty")
    one_line(e, tmp_path / "empty")
    (tmp_path / "x.npz").write_bytes(b"PK")
    with pytest.raises(StoreError, match="neither"):
        open_store(tmp_path / "x.npz")
    zarr.open_group(tmp_path / "v2.zarr", mode="w", zarr_format=2)
    with pytest.raises(StoreError, match="Zarr v2 store"):
        open_store(tmp_path / "v2.zarr")


def test_other_format_version_and_missing_metadata(stores, tmp_path):
    z = tmp_path / "z.zarr"
    shutil.copytree(stores[0], z)
    group = zarr.open_group(z, mode="a")
    group.attrs["format"] = "maize_ddp/1"
    with pytest.raises(StoreError, match="store format 'maize_ddp/1', this maize_ddp reads 'maize_ddp/2'") as e:
        open_store(z)
    one_line(e, z)
    group.attrs["format"] = "maize_ddp/2"
    del group.attrs["seq_len"]
    with pytest.raises(StoreError, match="missing metadata 'seq_len'"):
        open_store(z)

    w = tmp_path / "w.wds"
    shutil.copytree(stores[1], w)
    manifest = json.loads((w / "manifest.json").read_text())
    (w / "manifest.json").write_text(json.dumps({**manifest, "format": "maize_ddp/0"}))
    with pytest.raises(StoreError, match="store format 'maize_ddp/0'"):
        open_store(w)
    del manifest["splits"]["train"]["label_std"]
    (w / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StoreError, match="missing metadata 'label_std'"):
        open_store(w)
    (w / "manifest.json").write_text("{not json")
    with pytest.raises(StoreError, match="unreadable manifest.json"):
        open_store(w)


def test_wds_missing_shard_file(stores, tmp_path):
    w = tmp_path / "w.wds"
    shutil.copytree(stores[1], w)
    shard = json.loads((w / "manifest.json").read_text())["splits"]["train"]["shards"][1]["path"]
    (w / shard).unlink()
    with pytest.raises(StoreError, match=f"{shard}: missing"):
        open_store(w)


def test_an_interrupt_inside_a_zarr_read_leaves_no_traceback(stores, caplog):
    """SIGTERM (errors.Terminated) or Ctrl-C can land while zarr's event loop runs a read: the
    read unwinds with it, and neither the task that holds its copy nor the reads left pending
    print a traceback after the command's one line."""
    import asyncio
    import gc
    import warnings

    from maize_ddp.data.zarr_source import ZarrSource
    from maize_ddp.errors import Terminated

    source = ZarrSource(open_store(stores[0]), "train")
    seq = source._seq

    class Interrupted:  # the signal lands in a task inside the first chunk's read
        calls = 0

        async def getitem(self, where):
            Interrupted.calls += 1
            if Interrupted.calls == 1:
                async def lands():
                    raise Terminated()
                await asyncio.ensure_future(lands())
            return await seq.getitem(where)

        def __getattr__(self, name):
            return getattr(seq, name)

    source._seq = Interrupted()
    with caplog.at_level("DEBUG", logger="asyncio"), warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        with pytest.raises(Terminated):
            source.read([(0, 40)])  # three shard files: two reads still pending when it lands
        assert not asyncio.all_tasks(source._loop)
        del source
        gc.collect()
    assert not [r for r in caplog.records if r.name == "asyncio"], caplog.text
    assert not warned, [str(w.message) for w in warned]


@pytest.mark.parametrize("error", ["Terminated", "StoreError"])
def test_a_failure_with_no_read_pending_keeps_its_own_error(stores, error):
    """An interrupt or an error can land when no read is left pending (e.g. while the store opens):
    settling the event loop must not replace it with an asyncio error about another loop."""
    from maize_ddp.data.zarr_source import ZarrSource
    from maize_ddp.errors import Terminated

    source = ZarrSource(open_store(stores[0]), "train")
    raised = {"Terminated": Terminated, "StoreError": StoreError}[error]

    async def fails_alone():
        raise raised("landed")
    with pytest.raises(raised, match="landed"):
        source._run(fails_alone())
    assert source.read([(0, 3)])[1].shape[0] == 3  # the source still reads afterwards
