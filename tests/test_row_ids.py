"""Every row keeps its id from the npz shards into both store formats.

Ids come from a shard's `ids` member (genome_to_npz writes gene ids there), else they are
`<file>:<row>` with the file as recorded in `sources` and the row inside that file.
"""
import shutil

import numpy as np
import pytest

from _npz import encode, make_dataset, random_codes, write_shard
from convert import npz_to_wds, npz_to_zarr
from convert.shards import ConvertError
from maize_ddp.data import StoreError, open_store, read_ids

CONVERT = {"zarr": npz_to_zarr.convert, "wds": npz_to_wds.convert}
OPTIONS = {"zarr": dict(chunk_rows=4, shard_rows=8), "wds": dict(shard_samples=8)}


def ids_shard(path, ids, rng, seq_len=30, y=None):
    rows = len(ids)
    y = rng.normal(size=rows).astype(np.float32) if y is None else y
    return write_shard(path, encode(random_codes(rng, rows, seq_len)), y, ids=np.array(ids))


@pytest.mark.parametrize("kind", ["zarr", "wds"])
@pytest.mark.parametrize("workers", [1, 2])
def test_given_ids_reach_the_store_in_row_order(tmp_path, kind, workers):
    rng = np.random.default_rng(0)
    src = tmp_path / "src"
    ids_shard(src / "train" / "a.npz", [f"AT1G{i:05d}" for i in range(13)], rng)
    ids_shard(src / "train" / "b.npz", [f"Zm00001eb{i:06d}" for i in range(11)], rng)
    ids_shard(src / "test" / "a.npz", ["gene with spaces", "ünïcode-id"], rng)
    dst = tmp_path / f"d.{kind}"
    CONVERT[kind](src, dst, workers=workers, **OPTIONS[kind])
    info = open_store(dst)
    assert read_ids(info, "train").tolist() == [f"AT1G{i:05d}" for i in range(13)] + [
        f"Zm00001eb{i:06d}" for i in range(11)]
    assert read_ids(info, "test").tolist() == ["gene with spaces", "ünïcode-id"]


@pytest.mark.parametrize("kind", ["zarr", "wds"])
def test_default_ids_name_the_file_and_row_even_after_drops(tmp_path, kind):
    rng = np.random.default_rng(1)
    src = tmp_path / "src"
    y = rng.normal(size=6).astype(np.float32)
    y[[1, 4]] = np.nan
    write_shard(src / "train" / "x.npz", encode(random_codes(rng, 6, 20)), y)
    make_dataset(tmp_path / "more", {"train": [3]}, seq_len=20)
    shutil.copy(tmp_path / "more" / "train" / "train_000.npz", src / "train" / "y.npz")
    dst = tmp_path / f"d.{kind}"
    CONVERT[kind](src, dst, drop_nonfinite=True, **OPTIONS[kind])
    assert read_ids(open_store(dst), "train").tolist() == [
        "train/x.npz:0", "train/x.npz:2", "train/x.npz:3", "train/x.npz:5",
        "train/y.npz:0", "train/y.npz:1", "train/y.npz:2"]


@pytest.mark.parametrize("ids, message", [
    (["a", "", "c"], "ids row 1 is '': ids must be 1 to 200 characters"),
    (["a", "b", "x" * 201], "ids row 2 is 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...'"),
    (["a", "b\tc", "d"], "ids row 1 is 'b\\tc'"),
    (["a", "b\nc", "d"], "ids row 1"),
    (["a", "b", "a"], "id 'a' is on rows 0 and 2"),
    (["a", "b"], "ids has 2 entries for 3 rows"),
])
def test_bad_ids_are_one_line_naming_the_file(tmp_path, ids, message):
    rng = np.random.default_rng(2)
    src = tmp_path / "src"
    path = write_shard(src / "train" / "a.npz", encode(random_codes(rng, 3, 20)),
                       rng.normal(size=3).astype(np.float32), ids=np.array(ids))
    with pytest.raises(ConvertError) as e:
        npz_to_zarr.convert(src, tmp_path / "d.zarr")
    assert str(path) in str(e.value) and message in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "d.zarr").exists()


@pytest.mark.parametrize("kind", ["zarr", "wds"])
def test_an_id_repeated_across_shards_is_refused(tmp_path, kind):
    rng = np.random.default_rng(3)
    src = tmp_path / "src"
    ids_shard(src / "train" / "a.npz", ["g1", "g2"], rng)
    second = ids_shard(src / "train" / "b.npz", ["g3", "g1"], rng)
    ids_shard(src / "val" / "a.npz", ["g1"], rng)  # another split may reuse an id
    with pytest.raises(ConvertError, match=f"{second}: id 'g1' is also the id of a row in an earlier shard"):
        CONVERT[kind](src, tmp_path / f"d.{kind}", workers=2)
    assert not (tmp_path / f"d.{kind}").exists()


def test_a_missing_id_chunk_is_an_error(tmp_path):
    src = tmp_path / "src"
    make_dataset(src, {"train": [20]}, seq_len=20)
    dst = tmp_path / "d.zarr"
    npz_to_zarr.convert(src, dst, chunk_rows=4, shard_rows=8)
    info = open_store(dst)
    (dst / "train/id/c/1").unlink()
    with pytest.raises(StoreError, match=r"train/id/c/1: a missing chunk at row 8"):
        read_ids(info, "train")
    with pytest.raises(StoreError, match="train/id/c/1: missing"):
        open_store(dst)


def test_a_damaged_wds_ids_file_is_an_error(tmp_path):
    src = tmp_path / "src"
    make_dataset(src, {"train": [20]}, seq_len=20)
    dst = tmp_path / "d.wds"
    npz_to_wds.convert(src, dst)
    info = open_store(dst)
    ids = dst / "train" / "ids.txt"
    ids.write_bytes(ids.read_bytes().replace(b"train_000.npz:1\n", b"train_000.npz:X\n"))
    with pytest.raises(StoreError, match=f"{ids}: CRC-32"):
        read_ids(info, "train")
