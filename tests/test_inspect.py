import json

import numpy as np
import pytest
import zarr

from _npz import encode, make_dataset, random_codes, write_shard
from convert import inspect, npz_to_wds, npz_to_zarr
from maize_ddp.store_format import record_file


@pytest.fixture(params=["zarr", "wds"])
def store(request, tmp_path):
    src, dst = tmp_path / "src", tmp_path / f"data.{request.param}"
    make_dataset(src, {"train": [13, 7, 20], "val": [9]}, num_targets=2)
    if request.param == "zarr":
        npz_to_zarr.convert(src, dst, chunk_rows=4, shard_rows=8)
    else:
        npz_to_wds.convert(src, dst, shard_samples=16)
    return request.param, src, dst


def test_describes_the_store(store, capsys):
    kind, src, dst = store
    assert inspect.main([str(dst)]) == 0
    out = capsys.readouterr().out
    assert ("Zarr v3 store" if kind == "zarr" else "WebDataset store") in out
    assert "seq_len 40, 2 targets, splits train, val, 4 source files" in out
    assert [line.split()[:2] for line in out.splitlines() if line.startswith(("train ", "val "))] == [
        ["train", "40"], ["val", "9"]]
    assert "codecs:" in out and "MB on disk" in out and "npz sources" in out
    if kind == "zarr":
        assert "blosc zstd clevel 1 bitshuffle" in out and "chunks of 4 rows" in out


def test_verify_against_sources(store, capsys):
    _, src, dst = store
    assert inspect.main([str(dst), "--verify", "--sources", str(src)]) == 0
    out = capsys.readouterr().out
    assert "verify: train: 40 rows ok" in out and "verify: 4 source files match" in out


def test_verify_notices_a_changed_source(store, capsys):
    _, src, dst = store
    rng = np.random.default_rng(9)
    write_shard(src / "val" / "val_000.npz", encode(random_codes(rng, 9, 40)), rng.normal(size=(9, 2)))
    assert inspect.main([str(dst), "--verify", "--sources", str(src)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "val_000.npz: sha256 differs" in err


def test_verify_notices_a_rewritten_file(tmp_path, capsys):
    src, dst = tmp_path / "src", tmp_path / "data.zarr"
    make_dataset(src, {"train": [10]})
    npz_to_zarr.convert(src, dst)
    zarr.open_group(dst, mode="r+")["train"]["y"][3] = np.nan
    assert inspect.main([str(dst), "--verify"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{dst}/train/y/c/0/0: CRC-32" in err and "the store recorded" in err


def test_verify_notices_wrong_stats(tmp_path, capsys):
    src, dst = tmp_path / "src", tmp_path / "data.wds"
    make_dataset(src, {"train": [10]})
    npz_to_wds.convert(src, dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    manifest["splits"]["train"]["label_mean"] = [123.0]
    (dst / "manifest.json").write_text(json.dumps(manifest))
    assert inspect.main([str(dst), "--verify"]) == 1
    err = capsys.readouterr().err
    assert "label_mean is [" in err and "the metadata says [123]" in err and "np.float64" not in err


def test_verify_with_dropped_rows(tmp_path, capsys):
    src, dst = tmp_path / "src", tmp_path / "data.zarr"
    rng = np.random.default_rng(2)
    y = rng.normal(size=8).astype(np.float32)
    y[4] = np.inf
    write_shard(src / "train" / "a.npz", encode(random_codes(rng, 8, 30)), y)
    npz_to_zarr.convert(src, dst, drop_nonfinite=True)
    assert inspect.main([str(dst), "--verify", "--sources", str(src)]) == 0


def test_not_a_store(tmp_path, capsys):
    assert inspect.main([str(tmp_path)]) == 1
    assert capsys.readouterr().err == (f"error: {tmp_path}: neither a maize_ddp Zarr store (no zarr.json) "
                                       "nor a WebDataset store (no manifest.json)\n")
    assert inspect.main([str(tmp_path / "nope")]) == 1


def test_verify_reads_a_store_written_by_webdataset(tmp_path, capsys):
    """pax headers and extra members (another writer's tars) still verify."""
    import webdataset

    src, dst = tmp_path / "src", tmp_path / "data.wds"
    make_dataset(src, {"train": [10]})
    npz_to_wds.convert(src, dst, shard_samples=6)
    manifest = json.loads((dst / "manifest.json").read_text())
    for shard in manifest["splits"]["train"]["shards"]:
        path = dst / shard["path"]
        samples = list(webdataset.WebDataset(str(path), shardshuffle=False))
        with webdataset.TarWriter(str(path)) as sink:
            for sample in samples:
                sink.write({"__key__": sample["__key__"], "seq.npy": sample["seq.npy"],
                            "y.npy": sample["y.npy"], "txt": "note"})
        shard.update(record_file(dst, shard["path"]).to_dict())  # as that writer records them
    (dst / "manifest.json").write_text(json.dumps(manifest))
    assert inspect.main([str(dst), "--verify", "--sources", str(src)]) == 0, capsys.readouterr().err


def test_a_reader_that_leaves_early_ends_inspect_quietly(store):
    """`inspect --verify | head -1`: the pipe's reader is gone before inspect writes; it stops with
    the shell's code for SIGPIPE and no traceback."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "convert.inspect", str(store[2]), "--verify"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # no reader left: inspect's first write meets a closed pipe
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 141, err
    assert err == "", err
