import io
import json
import tarfile

import numpy as np
import pytest
import webdataset

from _npz import encode, label_stats, make_dataset, random_codes, write_shard
from convert import npz_to_wds
from maize_ddp.store_format import FORMAT


def read_tars(dst, split):
    """(keys, codes, labels) of a split, read with tarfile (which checks every header checksum)."""
    manifest = json.loads((dst / "manifest.json").read_text())
    keys, codes, labels = [], [], []
    for shard in manifest["splits"][split]["shards"]:
        with tarfile.open(dst / shard["path"]) as tar:
            for member in tar.getmembers():
                value = np.load(io.BytesIO(tar.extractfile(member).read()))
                key, _, part = member.name.partition(".")
                assert member.mtime == 0 and member.mode == 0o644
                if part == "seq.npy":
                    keys.append(key)
                    codes.append(value)
                else:
                    assert key == keys[-1] and part == "y.npy"
                    labels.append(value)
    return keys, np.stack(codes), np.stack(labels)


@pytest.mark.parametrize("layout,dtype,num_targets", [("N4L", "float32", 1), ("NL4", "uint8", 3),
                                                       ("N4L", "bool", 2)])
def test_round_trip_and_manifest(tmp_path, layout, dtype, num_targets):
    src, dst = tmp_path / "src", tmp_path / "out.wds"
    expected = make_dataset(src, layout=layout, dtype=dtype, num_targets=num_targets)
    summary = npz_to_wds.convert(src, dst, shard_samples=16)
    manifest = json.loads((dst / "manifest.json").read_text())
    assert manifest["format"] == FORMAT and manifest["alphabet"] == "ACGTN"
    assert manifest["seq_len"] == 40 and manifest["num_targets"] == num_targets
    assert list(manifest["splits"]) == ["train", "val", "test"]
    assert [s["file"] for s in manifest["sources"]][:3] == [f"train/train_00{i}.npz" for i in range(3)]
    for split, (codes, y) in expected.items():
        meta = manifest["splits"][split]
        assert meta["n"] == len(codes)
        mean, std = label_stats(y)
        assert np.allclose(meta["label_mean"], mean) and np.allclose(meta["label_std"], std)
        keys, got_codes, got_y = read_tars(dst, split)
        assert keys == [f"{i:010d}" for i in range(len(codes))]
        assert got_codes.dtype == np.uint8 and got_y.dtype == np.float32
        assert np.array_equal(got_codes, codes) and np.array_equal(got_y, y)
    train = manifest["splits"]["train"]["shards"]
    assert [(s["path"], s["n"], s["first_row"]) for s in train] == [
        ("train/train-000000.tar", 16, 0), ("train/train-000001.tar", 16, 16), ("train/train-000002.tar", 8, 32)]
    assert summary["rows_per_tar"] == 16
    assert not list(tmp_path.glob("out.wds.*"))


def test_plain_webdataset_reads_the_shards(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "out.wds"
    expected = make_dataset(src, num_targets=2)
    npz_to_wds.convert(src, dst, shard_samples=7)
    manifest = json.loads((dst / "manifest.json").read_text())
    urls = [str(dst / s["path"]) for s in manifest["splits"]["train"]["shards"]]
    dataset = webdataset.WebDataset(urls, shardshuffle=False).decode()
    samples = list(dataset)
    codes, y = expected["train"]
    assert [s["__key__"] for s in samples] == [f"{i:010d}" for i in range(len(codes))]
    assert np.array_equal(np.stack([s["seq.npy"] for s in samples]), codes)
    assert np.array_equal(np.stack([s["y.npy"] for s in samples]), y)


def test_shard_bytes_sets_samples_per_tar(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "out.wds"
    make_dataset(src, {"train": [30]}, seq_len=600)
    summary = npz_to_wds.convert(src, dst, shard_bytes=10_000)
    sample = 512 + 1024 + 512 + 512  # seq header + npy(128 + 600) padded, y header + npy padded
    assert summary["rows_per_tar"] == 10_000 // sample
    for tar in (dst / "train").glob("*.tar"):
        assert tar.stat().st_size % (20 * 512) == 0


def test_workers_give_identical_bytes(tmp_path):
    src = tmp_path / "src"
    make_dataset(src, {"train": [11, 17, 5, 23], "test": [4, 4]}, num_targets=3)
    one, two = tmp_path / "one.wds", tmp_path / "two.wds"
    npz_to_wds.convert(src, one, shard_samples=10)
    npz_to_wds.convert(src, two, shard_samples=10, workers=2)
    files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(two) for p in two.rglob("*") if p.is_file())
    for rel in files:
        assert (one / rel).read_bytes() == (two / rel).read_bytes(), rel


def test_cli(tmp_path, capsys):
    src, dst = tmp_path / "src", tmp_path / "out.wds"
    make_dataset(src, {"train": [4, 4]})
    assert npz_to_wds.main([str(src), str(dst), "--quiet", "--shard-bytes", "1M"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("wrote 8 rows (train 8) of 40 bp, 1 target to ") and err == ""
    assert npz_to_wds.parse_size("1.5K") == 1536 and npz_to_wds.parse_size("64MiB") == 64 << 20


@pytest.mark.parametrize("workers", [1, 2])
def test_empty_and_all_dropped_shards_are_skipped(tmp_path, capsys, workers):
    src, dst = tmp_path / "src", tmp_path / "out.wds"
    rng = np.random.default_rng(4)
    codes = random_codes(rng, 6, 30)
    y = rng.normal(size=(6, 2)).astype(np.float32)
    write_shard(src / "train" / "a.npz", encode(codes), y)
    write_shard(src / "train" / "b.npz", np.zeros((0, 4, 30), np.float32), np.zeros((0, 2), np.float32))
    write_shard(src / "train" / "c.npz", encode(codes[:2]), np.full((2, 2), np.nan, np.float32))
    write_shard(src / "train" / "d.npz", encode(codes[::-1]), y[::-1])
    args = [str(src), str(dst), "--drop-nonfinite", "--quiet", "--workers", str(workers)]
    assert npz_to_wds.main(args) == 0
    out, err = capsys.readouterr()
    assert "b.npz: empty shard (0 rows), skipped" in err and "dropped 2 rows with non-finite labels" in out
    keys, got_codes, got_y = read_tars(dst, "train")
    assert keys == [f"{i:010d}" for i in range(12)]
    assert np.array_equal(got_codes, np.concatenate([codes, codes[::-1]]))
    assert np.array_equal(got_y, np.concatenate([y, y[::-1]]))
