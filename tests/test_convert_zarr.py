import hashlib

import numpy as np
import pytest
import zarr

from _npz import encode, label_stats, make_dataset, random_codes, write_shard
from convert import npz_to_zarr, output, shards
from convert.shards import ConvertError
from maize_ddp.store_format import FORMAT


def read_store(path):
    root = zarr.open_group(path, mode="r")
    return root, {name: (root[name]["seq"][:], root[name]["y"][:]) for name in root.attrs["splits"]}


@pytest.mark.parametrize("layout,dtype,num_targets,labels_1d", [
    ("N4L", "float32", 1, True),
    ("NL4", "float32", 3, False),
    ("N4L", "float64", 2, False),
    ("NL4", "uint8", 1, False),
    ("N4L", "int64", 1, True),
    ("NL4", "bool", 4, False),
])
def test_round_trip(tmp_path, layout, dtype, num_targets, labels_1d):
    src, dst = tmp_path / "src", tmp_path / "out.zarr"
    expected = make_dataset(src, layout=layout, dtype=dtype, num_targets=num_targets, labels_1d=labels_1d)
    summary = npz_to_zarr.convert(src, dst, chunk_rows=4, shard_rows=8)
    root, got = read_store(dst)
    assert list(got) == ["train", "val", "test"]
    for split, (codes, y) in expected.items():
        assert got[split][0].dtype == np.uint8 and got[split][1].dtype == np.float32
        assert np.array_equal(got[split][0], codes)
        assert np.array_equal(got[split][1], y)
        attrs = dict(root[split].attrs)
        mean, std = label_stats(y)
        assert attrs["n"] == len(codes)
        assert np.allclose(attrs["label_mean"], mean) and np.allclose(attrs["label_std"], std)
        assert root[split]["seq"].chunks == (4, 40) and root[split]["seq"].shards == (8, 40)
        assert root[split]["y"].chunks == (4, num_targets)
    attrs = dict(root.attrs)
    assert attrs["format"] == FORMAT and attrs["alphabet"] == "ACGTN"
    assert attrs["seq_len"] == 40 and attrs["num_targets"] == num_targets
    files = [s["file"] for s in attrs["sources"]]
    assert files == ["train/train_000.npz", "train/train_001.npz", "train/train_002.npz",
                     "val/val_000.npz", "test/test_000.npz", "test/test_001.npz"]
    first = attrs["sources"][0]
    raw = (src / first["file"]).read_bytes()
    assert first == {"split": "train", "file": "train/train_000.npz", "bytes": len(raw),
                     "sha256": hashlib.sha256(raw).hexdigest(), "rows": 13}
    assert summary["rows"] == 60 and summary["dropped_nonfinite"] == 0
    assert not list(tmp_path.glob("out.zarr.*"))


def test_uniform_and_zero_columns_are_n(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "out.zarr"
    expected = make_dataset(src, {"train": [10, 10]}, uniform_n=True)
    npz_to_zarr.convert(src, dst)
    _, got = read_store(dst)
    assert np.array_equal(got["train"][0], expected["train"][0])
    assert (got["train"][0] == 4).any()


def test_default_chunks_are_about_512_kib(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "out.zarr"
    make_dataset(src, {"train": [3]}, seq_len=1000)
    summary = npz_to_zarr.convert(src, dst)
    seq = zarr.open_group(dst, mode="r")["train"]["seq"]
    assert summary["chunk_rows"] == seq.chunks[0] == round(512 * 1024 / 1000)
    assert seq.shards[0] == 16 * seq.chunks[0]


def test_workers_give_identical_stores(tmp_path):
    src = tmp_path / "src"
    make_dataset(src, {"train": [11, 17, 5, 23, 9], "val": [8, 8]}, num_targets=2)
    one, two = tmp_path / "one.zarr", tmp_path / "two.zarr"
    npz_to_zarr.convert(src, one, workers=1, chunk_rows=4, shard_rows=12)
    npz_to_zarr.convert(src, two, workers=2, chunk_rows=4, shard_rows=12)
    files_one = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    files_two = sorted(p.relative_to(two) for p in two.rglob("*") if p.is_file())
    assert files_one == files_two
    for rel in files_one:  # array-equal, same attrs: here even the same bytes
        assert (one / rel).read_bytes() == (two / rel).read_bytes(), rel


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("layout,dtype,fortran", [("N4L", "float32", False), ("NL4", "float16", False),
                                                  ("N4L", "bool", False), ("N4L", "float32", True)])
def test_shards_are_decoded_a_block_of_rows_at_a_time(tmp_path, monkeypatch, workers, layout, dtype, fortran):
    # Blocks of 3 rows (the last one shorter) must give the same store as one block per shard.
    itemsize = np.dtype(dtype).itemsize
    monkeypatch.setattr(shards, "DECODE_BLOCK", 3 * 4 * 40 * itemsize + 1)
    src = tmp_path / "src"
    rng = np.random.default_rng(7)
    codes = [random_codes(rng, rows, 40) for rows in (10, 7)]
    y = [rng.normal(size=len(c)).astype(np.float32) for c in codes]
    for i, (c, labels) in enumerate(zip(codes, y)):
        x = encode(c, layout, dtype, uniform_n=dtype.startswith("float"))
        write_shard(src / "train" / f"{i}.npz", np.asfortranarray(x) if fortran else x, labels)
    npz_to_zarr.convert(src, tmp_path / "out.zarr", workers=workers)
    _, got = read_store(tmp_path / "out.zarr")
    assert np.array_equal(got["train"][0], np.concatenate(codes))
    assert np.array_equal(got["train"][1][:, 0], np.concatenate(y))


def test_a_bad_column_in_a_later_block_names_its_row_in_the_shard(tmp_path, monkeypatch):
    monkeypatch.setattr(shards, "DECODE_BLOCK", 4 * 4 * 40 * 4)  # 4 rows of float32 a block
    x = encode(random_codes(np.random.default_rng(2), 12, 40))
    x[9, :, 31] = [0, 0.5, 0, 0]
    write_shard(tmp_path / "src" / "train" / "a.npz", x, np.zeros(12, np.float32))
    with pytest.raises(ConvertError, match=r"a\.npz: arr_0 row 9 position 31 is not one-hot"):
        npz_to_zarr.convert(tmp_path / "src", tmp_path / "out.zarr")
    assert not (tmp_path / "out.zarr").exists()


def test_single_split_folder(tmp_path):
    src = tmp_path / "src"
    expected = make_dataset(src, {"train": [6, 4]})
    dst = tmp_path / "out.zarr"
    npz_to_zarr.convert(src / "train", dst, split="holdout")
    root, got = read_store(dst)
    assert root.attrs["splits"] == ["holdout"]
    assert [s["file"] for s in root.attrs["sources"]] == ["train_000.npz", "train_001.npz"]
    assert np.array_equal(got["holdout"][0], expected["train"][0])


def test_drop_nonfinite(tmp_path, capsys):
    src = tmp_path / "src"
    rng = np.random.default_rng(1)
    codes = random_codes(rng, 10, 30)
    y = rng.normal(size=(10, 2)).astype(np.float32)
    y[2, 0], y[7, 1] = np.nan, np.inf
    write_shard(src / "train" / "a.npz", encode(codes), y)
    dst = tmp_path / "out.zarr"
    with pytest.raises(ConvertError, match=r"a\.npz.*non-finite.*2 rows.*--drop-nonfinite"):
        npz_to_zarr.convert(src, dst)
    assert not dst.exists()
    assert npz_to_zarr.main([str(src), str(dst), "--drop-nonfinite", "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert "dropped 2 rows with non-finite labels" in out
    root, got = read_store(dst)
    keep = np.isfinite(y).all(axis=1)
    assert np.array_equal(got["train"][0], codes[keep]) and np.array_equal(got["train"][1], y[keep])
    assert root.attrs["sources"][0]["rows"] == 8 and root["train"].attrs["n"] == 8
    assert np.allclose(root["train"].attrs["label_mean"], y[keep].astype(np.float64).mean(0))


def test_empty_shard_is_skipped_with_a_warning(tmp_path, capsys):
    src = tmp_path / "src"
    expected = make_dataset(src, {"train": [5, 6]})
    write_shard(src / "train" / "train_000b.npz", np.zeros((0, 4, 40), np.float32), np.zeros(0, np.float32))
    dst = tmp_path / "out.zarr"
    assert npz_to_zarr.main([str(src), str(dst), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "train_000b.npz: empty shard (0 rows), skipped" in err
    root, got = read_store(dst)
    assert np.array_equal(got["train"][0], expected["train"][0])
    assert [s["rows"] for s in root.attrs["sources"]] == [5, 0, 6]


def test_overwrite(tmp_path, capsys):
    src = tmp_path / "src"
    make_dataset(src, {"train": [4]})
    dst = tmp_path / "out.zarr"
    assert npz_to_zarr.main([str(src), str(dst), "--quiet"]) == 0
    assert npz_to_zarr.main([str(src), str(dst), "--quiet"]) == 1
    assert "already exists" in capsys.readouterr().err
    make_dataset(src, {"train": [4, 3]}, seed=5)
    assert npz_to_zarr.main([str(src), str(dst), "--quiet", "--overwrite"]) == 0
    assert zarr.open_group(dst, mode="r")["train"].attrs["n"] == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.zarr", "src"]


def test_summary_line_and_progress(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(output, "BAR_DELAY_S", 0)
    src = tmp_path / "src"
    make_dataset(src, {"train": [4], "val": [3]})
    assert npz_to_zarr.main([str(src), str(tmp_path / "a.zarr")]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("wrote 7 rows (train 4, val 3) of 40 bp, 1 target to ")
    assert "rows" in err  # the tqdm bar
    assert npz_to_zarr.main([str(src), str(tmp_path / "b.zarr"), "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and out.count("\n") == 1
