"""A table of damaged stores: each is refused with one line naming the damaged file.

Where the damage is caught: on opening (a recorded file missing or of another size), on reading
(a chunk that fails to decode, a missing chunk read as its fill value, a bad value, a damaged
tar header, a chunk or row whose place CRC differs: a valid value changed, a file swapped or
copied from another store), and by `inspect --verify` (every CRC-32). A missing chunk must
never read back as rows of As and zero labels.
"""
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from _stores import build_wds, build_zarr, make_rows, write_npz_source
from convert import inspect
from maize_ddp.data import StoreError, make_loader, open_source, open_store, read_ids
from maize_ddp.data.wds_source import tar_members
from maize_ddp.store_format import record_file

L, T = 24, 2
SPLITS = {"train": make_rows(40, seq_len=L, num_targets=T), "test": make_rows(20, seq_len=L, num_targets=T, seed=1)}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    root = tmp_path_factory.mktemp("pristine")
    src = write_npz_source(root / "src", SPLITS, shard_rows=15)
    return {"zarr": build_zarr(src, root / "d.zarr", chunk_rows=8, shard_rows=16),
            "wds": build_wds(src, root / "d.wds", shard_samples=16)}


# ---------------------------------------------------------------- kinds of damage


def flip_middle(path):
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 8] = bytes(b ^ 0x5A for b in data[mid:mid + 8])
    path.write_bytes(bytes(data))


def truncate(path):
    path.write_bytes(path.read_bytes()[:-100])


def halve(path):
    path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])


def rerecord(store, rel):
    """Re-record a tar's size and CRC, as a tool that wrote bad values in good faith would."""
    manifest = json.loads((store / "manifest.json").read_text())
    for split in manifest["splits"].values():
        for shard in split["shards"]:
            if shard["path"] == rel:
                shard.update(record_file(store, rel).to_dict())
    (store / "manifest.json").write_text(json.dumps(manifest))


def poke_tar(store, rel, row, field, value):
    """Overwrite one payload byte block of row `row`'s member `field` in place."""
    path = store / rel
    name, offset, size = next(m for m in tar_members(path) if m[0] == f"{row:010d}.{field}")
    payload = np.asarray(value).tobytes()
    data = bytearray(path.read_bytes())
    start = offset + size - len(payload)  # the .npy payload is the member's tail
    data[start:start + len(payload)] = payload
    path.write_bytes(bytes(data))
    rerecord(store, rel)


def foreign_tar(store, rel):
    """The same tar of a store with other rows, re-recorded: a partial rsync from elsewhere."""
    rows = {name: make_rows(len(r[0]), seq_len=L, num_targets=T, seed=11 + i) for i, (name, r) in enumerate(SPLITS.items())}
    other = build_wds(write_npz_source(store.parent / "other_src", rows, shard_rows=15), store.parent / "o.wds",
                      shard_samples=16)
    shutil.copy(other / rel, store / rel)
    rerecord(store, rel)


def garble_header(store, rel):
    path = store / rel
    data = bytearray(path.read_bytes())
    second = 512 * (1 + -(-tar_members(path)[0][2] // 512))  # the second member's header
    data[second + 124:second + 136] = b"9x9x9x9x9x9\0"  # size field: not octal
    path.write_bytes(bytes(data))
    rerecord(store, rel)


def drop_file_records(store):
    import zarr

    g = zarr.open_group(store, mode="r+")
    del g["train"].attrs["files"]


def swap_zarr_files(store, a, b):
    """Swap two shard files and their records: each file is whole and matches the record of the
    place it now holds (size, CRC-32), as a same-size swap would; only its rows are misplaced."""
    import zarr

    (store / a).rename(store / "swap.tmp")
    (store / b).rename(store / a)
    (store / "swap.tmp").rename(store / b)
    g = zarr.open_group(store, mode="r+")
    split = a.split("/")[0]
    g[split].attrs["files"] = [record_file(store, f["path"]).to_dict() for f in g[split].attrs["files"]]


WDS_TRAIN_1 = "train/train-000001.tar"  # rows 16..31
# (name, kind, damage, when it is applied, what catches it, the file named, message)
SCENARIOS = [
    ("zarr shard file deleted", "zarr", lambda s: (s / "test/seq/c/1/0").unlink(), "before", "open",
     "test/seq/c/1/0", "missing"),
    ("zarr shard file truncated", "zarr", lambda s: truncate(s / "train/y/c/2/0"), "before", "open",
     "train/y/c/2/0", "the store recorded"),
    ("zarr chunk bytes damaged", "zarr", lambda s: flip_middle(s / "train/seq/c/1/0"), "before", "read",
     "train/seq/c/1/0", "unreadable chunk"),
    ("zarr label bytes damaged", "zarr", lambda s: flip_middle(s / "train/y/c/0/0"), "before", "read",
     "train/y/c/0/0", "unreadable chunk"),
    ("zarr seq chunk gone while running", "zarr", lambda s: (s / "train/seq/c/2/0").unlink(), "after", "read",
     "train/seq/c/2/0", "a missing chunk at row 32"),
    ("zarr label chunk gone while running", "zarr", lambda s: (s / "train/y/c/1/0").unlink(), "after", "read",
     "train/y/c/1/0", "a non-finite label at row 16"),
    ("zarr seq shard files swapped", "zarr", lambda s: swap_zarr_files(s, "train/seq/c/0/0", "train/seq/c/1/0"),
     "before", "read", "train/seq/c/0/0", "rows that belong elsewhere"),
    ("zarr label shard files swapped", "zarr", lambda s: swap_zarr_files(s, "train/y/c/1/0", "train/y/c/0/0"),
     "before", "read", "train/y/c/0/0", "rows that belong elsewhere"),
    ("zarr id shard files swapped", "zarr", lambda s: swap_zarr_files(s, "train/id/c/0", "train/id/c/1"),
     "before", "ids", "train/id/c/0", "rows that belong elsewhere"),
    ("zarr store without file records", "zarr", drop_file_records, "before", "open",
     "", "missing metadata 'files'"),
    ("zarr id chunk damaged", "zarr", lambda s: flip_middle(s / "test/id/c/1"), "before", "ids",
     "test/id/c/1", "unreadable chunk"),
    ("zarr id chunk gone while running", "zarr", lambda s: (s / "test/id/c/1").unlink(), "after", "ids",
     "test/id/c/1", "a missing chunk at row 16"),
    ("ids.txt damaged", "wds", lambda s: flip_middle(s / "test/ids.txt"), "before", "ids", "test/ids.txt",
     "CRC-32"),
    ("tar deleted", "wds", lambda s: (s / WDS_TRAIN_1).unlink(), "before", "open", WDS_TRAIN_1, "missing"),
    ("tar truncated", "wds", lambda s: truncate(s / WDS_TRAIN_1), "before", "open", WDS_TRAIN_1,
     "the store recorded"),
    ("tar cut in half while running", "wds", lambda s: halve(s / WDS_TRAIN_1), "after", "read", WDS_TRAIN_1,
     "row"),
    ("tar bytes damaged", "wds", lambda s: flip_middle(s / WDS_TRAIN_1), "before", "read", WDS_TRAIN_1,
     "damaged tar header"),  # the middle of this tar is a member header
    # valid values, so only the rows' own CRC-32s see them (before, only inspect --verify did)
    ("tar label set to 100", "wds", lambda s: poke_tar(s, WDS_TRAIN_1, 20, "y.npy", np.float32([100, 0])),
     "before", "read", WDS_TRAIN_1, "row 20 does not match its recorded CRC-32"),
    ("tar base changed to another base", "wds",
     lambda s: poke_tar(s, WDS_TRAIN_1, 18, "seq.npy", (make_rows(40, seq_len=L, num_targets=T)[0][18] + 1) % 4),
     "before", "read", WDS_TRAIN_1, "row 18 does not match its recorded CRC-32"),
    ("tar from another store of the same shape", "wds", lambda s: foreign_tar(s, WDS_TRAIN_1), "before", "read",
     WDS_TRAIN_1, "row 16 does not match its recorded CRC-32"),
    ("tar NaN label", "wds", lambda s: poke_tar(s, WDS_TRAIN_1, 20, "y.npy", np.float32([np.nan, 0])),
     "before", "read", WDS_TRAIN_1, "a non-finite label at row 20"),
    ("tar base code 7", "wds", lambda s: poke_tar(s, WDS_TRAIN_1, 17, "seq.npy", np.full(L, 7, np.uint8)),
     "before", "read", WDS_TRAIN_1, "base codes above 4 at row 17"),
    ("tar header garbled", "wds", lambda s: garble_header(s, WDS_TRAIN_1), "before", "read", WDS_TRAIN_1,
     "damaged tar header"),
]


@pytest.fixture(params=SCENARIOS, ids=[s[0] for s in SCENARIOS])
def damaged(request, pristine, tmp_path):
    name, kind, damage, when, caught, rel, message = request.param
    store = tmp_path / f"d.{kind}"
    shutil.copytree(pristine[kind], store)
    if when == "before":
        damage(store)
    return store, damage if when == "after" else None, caught, store / rel, message, rel.split("/")[0]


def read_everything(store, split, **loader_options):
    rows = 0
    with make_loader(store, split, batch_size=8, train=False, **loader_options) as loader:
        for codes, y, _ in loader:
            rows += len(codes)
    return rows


def test_damage_is_one_line_naming_the_file(damaged):
    store, late_damage, caught, named, message, split = damaged
    if caught == "open":
        with pytest.raises(StoreError) as e:
            open_store(store)
    elif caught == "ids":
        info = open_store(store)
        if late_damage is not None:
            late_damage(store)
        with pytest.raises(StoreError) as e:
            read_ids(info, split)
    elif late_damage is None:
        open_store(store)  # opening is cheap: it sees no damage that keeps the file's size
        with pytest.raises(StoreError) as e:
            read_everything(store, split)
    else:  # a file goes while a run reads: what remains of it is the fill value
        info = open_store(store)
        late_damage(store)
        with pytest.raises(StoreError) as e:
            open_source(info, split).read([(0, info.splits[split].n)])
    text = str(e.value)
    assert "\n" not in text and str(named) in text and message in text, text


def test_verify_names_the_first_bad_file(damaged, capsys):
    store, late_damage, _, named, _, _ = damaged
    if late_damage is not None:
        late_damage(store)
    assert inspect.main([str(store), "--verify"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and str(named) in err, err


@pytest.mark.parametrize("kind", ["zarr", "wds"])
def test_pristine_stores_verify(pristine, kind, capsys):
    assert inspect.main([str(pristine[kind]), "--verify"]) == 0
    assert "files match their CRC-32" in capsys.readouterr().out


def test_a_worker_reports_damage_in_one_line(pristine, tmp_path):
    store = tmp_path / "d.wds"
    shutil.copytree(pristine["wds"], store)
    poke_tar(store, WDS_TRAIN_1, 20, "y.npy", np.float32([np.inf, 0]))
    with pytest.raises(StoreError) as e:
        read_everything(store, "train", num_workers=2)
    text = str(e.value)
    assert "\n" not in text and "Traceback" not in text and WDS_TRAIN_1 in text and "row 20" in text


def test_trainer_stops_on_a_damaged_chunk_in_one_line(pristine, tmp_path):
    """End to end: the trainer with loader workers meets a chunk that fails its checksum."""
    store = tmp_path / "d.zarr"
    shutil.copytree(pristine["zarr"], store)
    flip_middle(store / "train/seq/c/1/0")
    shutil.copytree(store / "train", store / "val")  # the trainer wants a val split
    import zarr

    g = zarr.open_group(store, mode="r+")
    g.attrs["splits"] = ["train", "val", "test"]
    g["val"].attrs["files"] = [{**f, "path": f["path"].replace("train/", "val/", 1)}
                               for f in g["val"].attrs["files"]]
    res = subprocess.run([sys.executable, "-m", "maize_ddp.train", "--data", str(store), "--out",
                          str(tmp_path / "run"), "--epochs", "1", "--batch-size", "8", "--num-workers", "2",
                          "--device", "cpu", "--conv1kc", "8", "--conv2kc", "8", "--conv3kc", "8",
                          "--convdc", "1", "--pool1ks", "2", "--pool2ks", "2", "--pool3ks", "2"],
                         capture_output=True, text=True, timeout=300)
    errors = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 1, res.stderr
    assert any("error: " in line and "train/seq/c/1/0: unreadable chunk" in line for line in errors), res.stderr
    assert "Traceback" not in res.stderr and "Task was destroyed" not in res.stderr, res.stderr
    assert not (tmp_path / "run" / "test_metrics.json").exists()


@pytest.mark.parametrize("array, fill", [("seq", 0), ("y", 0.0), ("id", "x")])
def test_a_fill_value_that_rows_can_hold_is_refused(pristine, tmp_path, array, fill):
    """Another tool's store (zarr's default fill 0) would read a missing chunk back as data."""
    store = tmp_path / "d.zarr"
    shutil.copytree(pristine["zarr"], store)
    meta_path = store / "test" / array / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["fill_value"] = fill
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(StoreError, match=f"{meta_path}: fill value") as e:
        open_store(store)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("meta", ["zarr.json", "test/zarr.json", "test/seq/zarr.json"])
def test_damaged_zarr_metadata_is_named(pristine, tmp_path, meta):
    store = tmp_path / "d.zarr"
    shutil.copytree(pristine["zarr"], store)
    (store / meta).write_text('{"shape": [20, 24], "data_ty')
    with pytest.raises(StoreError) as e:
        open_store(store)
    assert str(e.value).startswith(f"{store / meta}: ") and "\n" not in str(e.value)


def test_shards_copied_from_another_store_of_the_same_shape_are_refused(pristine, tmp_path):
    """A partial rsync: the test split's files (and records) from another store of the same
    shape and layout. Every file is whole; evaluation must still not pair these rows with the
    store's ids, nor train on them."""
    import zarr

    other_rows = {name: make_rows(len(rows[0]), seq_len=L, num_targets=T, seed=7 + i)
                  for i, (name, rows) in enumerate(SPLITS.items())}
    other = build_zarr(write_npz_source(tmp_path / "other_src", other_rows, shard_rows=15), tmp_path / "o.zarr",
                       chunk_rows=8, shard_rows=16)
    store = tmp_path / "d.zarr"
    shutil.copytree(pristine["zarr"], store)
    for rel in ("test/seq/c/1/0", "test/y/c/1/0"):
        shutil.copy(other / rel, store / rel)
    g = zarr.open_group(store, mode="r+")
    g["test"].attrs["files"] = [record_file(store, f["path"]).to_dict() for f in g["test"].attrs["files"]]
    open_store(store)  # sizes and file CRCs agree with the records
    with pytest.raises(StoreError) as e:
        read_everything(store, "test")
    assert "test/seq/c/1/0: chunk 2 (rows 16-23) holds rows that belong elsewhere" in str(e.value)
