"""Bad input: one `error:` line naming the file and the problem, exit 1, and no output left behind."""
import contextlib
import errno
import os
import pathlib
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from _npz import encode, make_dataset, random_codes, write_shard
from convert import npz_to_wds, npz_to_zarr

ROOT = Path(__file__).resolve().parents[1]
CONVERTERS = {"zarr": npz_to_zarr, "wds": npz_to_wds}


def good_shard(path, rows=6, seq_len=40, targets=None, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.normal(size=(rows,) if targets is None else (rows, targets)).astype(np.float32)
    return write_shard(path, encode(random_codes(rng, rows, seq_len)), y)


def onehot(rows=6, seq_len=40):
    return encode(random_codes(np.random.default_rng(1), rows, seq_len))


def truncated(src):
    path = good_shard(src / "train" / "b.npz")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def corrupted(src):
    path = good_shard(src / "train" / "b.npz", rows=50, seq_len=200)
    data = bytearray(path.read_bytes())
    for i in range(200, 400):  # inside arr_0's deflate stream
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    return path


def random_bytes(src):
    path = src / "train" / "b.npz"
    path.write_bytes(np.random.default_rng(0).bytes(5000))
    return path


def with_value(value):
    def make(src):
        x = onehot()
        x[2, :, 7] = [value, 0, 0, 0]
        return write_shard(src / "train" / "b.npz", x, np.zeros(6, np.float32))
    return make


def nan_labels(src):
    y = np.zeros(6, np.float32)
    y[3] = np.nan
    return write_shard(src / "train" / "b.npz", onehot(), y)


# (name, make(src) -> the offending file (None: SRC itself), words the message must hold)
BAD_INPUTS = [
    ("truncated npz", truncated, "not a valid npz"),
    ("random bytes", random_bytes, "not a valid npz"),
    ("corrupted deflate stream", corrupted, "not a valid npz"),
    ("missing arr_0", lambda src: write_shard(src / "train" / "b.npz", None, np.zeros(6)), "missing arr_0"),
    ("missing arr_1", lambda src: write_shard(src / "train" / "b.npz", onehot(), None), "missing arr_1"),
    ("named arrays", lambda src: write_shard(src / "train" / "b.npz", x=onehot(), y=np.zeros(6)), "missing arr_0"),
    ("row counts differ", lambda src: write_shard(src / "train" / "b.npz", onehot(6), np.zeros(5)),
     "arr_0 has 6 rows but arr_1 has 5"),
    ("channel axis not 4", lambda src: write_shard(src / "train" / "b.npz", np.zeros((6, 5, 40)), np.zeros(6)),
     "no channel axis of 4"),
    ("2-D arr_0", lambda src: write_shard(src / "train" / "b.npz", np.zeros((6, 40)), np.zeros(6)),
     "expected one-hot [N, 4, L]"),
    ("value 2", with_value(2.0), "row 2 position 7 is not one-hot"),
    ("negative", with_value(-1.0), "row 2 position 7 is not one-hot"),
    ("fractional", with_value(0.5), "row 2 position 7 is not one-hot"),
    ("seq_len differs between shards", lambda src: good_shard(src / "train" / "b.npz", seq_len=41),
     "sequence length 41 differs from 40"),
    ("seq_len differs between splits", lambda src: good_shard(src / "val" / "v.npz", seq_len=30),
     "sequence length 30 differs from 40"),
    ("NaN label", nan_labels, "non-finite labels"),
    ("label width differs", lambda src: good_shard(src / "train" / "b.npz", targets=2),
     "arr_1 has 2 targets but"),
    ("object labels", lambda src: write_shard(src / "train" / "b.npz", onehot(), np.array(["a"] * 6)),
     "expected numeric labels"),
]


@pytest.mark.parametrize("kind", ["zarr", "wds"])
@pytest.mark.parametrize("name,make,words", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input(tmp_path, capsys, kind, name, make, words):
    src, dst = tmp_path / "src", tmp_path / f"out.{kind}"
    good_shard(src / "train" / "a.npz")
    bad = make(src)
    assert CONVERTERS[kind].main([str(src), str(dst), "--quiet"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("error: "), err
    assert str(bad) in err and words in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]  # no DST, no DST.tmp-*


@pytest.mark.parametrize("layout", ["missing", "empty", "loose npz", "all shards empty"])
def test_bad_src(tmp_path, capsys, layout):
    src = tmp_path / "src"
    if layout != "missing":
        src.mkdir()
    if layout == "loose npz":
        good_shard(src / "a.npz")
    if layout == "all shards empty":
        write_shard(src / "train" / "a.npz", np.zeros((0, 4, 40)), np.zeros(0))
    assert npz_to_zarr.main([str(src), str(tmp_path / "out.zarr"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {src}") and err.count("\n") == 1
    words = {"missing": "no such directory", "empty": "empty", "loose npz": "--split NAME",
             "all shards empty": "every shard is empty"}[layout]
    assert words in err
    assert sorted(p.name for p in tmp_path.iterdir()) == (["src"] if layout != "missing" else [])


def test_existing_dst_is_refused(tmp_path, capsys):
    src, dst = tmp_path / "src", tmp_path / "out.wds"
    make_dataset(src, {"train": [3]})
    dst.mkdir()
    (dst / "keep").write_text("mine")
    assert npz_to_wds.main([str(src), str(dst), "--quiet"]) == 1
    assert "already exists (pass --overwrite" in capsys.readouterr().err
    assert (dst / "keep").read_text() == "mine"


def test_bad_flags(tmp_path, capsys):
    src = tmp_path / "src"
    make_dataset(src, {"train": [3]})
    assert npz_to_zarr.main([str(src), str(tmp_path / "o.zarr"), "--chunk-rows", "4", "--shard-rows", "6"]) == 1
    assert "multiple" in capsys.readouterr().err
    assert npz_to_zarr.main([str(src), str(tmp_path / "o.zarr"), "--workers", "0"]) == 1
    assert "--workers" in capsys.readouterr().err


def test_read_only_output(tmp_path, capsys, monkeypatch):
    # As root chmod does not stop writes, so the refusal of a read-only filesystem is simulated.
    src, dst = tmp_path / "src", tmp_path / "out.zarr"
    make_dataset(src, {"train": [3]})
    real_mkdir = pathlib.Path.mkdir

    def read_only_mkdir(self, *args, **kwargs):
        if ".tmp-" in self.name:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "mkdir", read_only_mkdir)
    assert npz_to_zarr.main([str(src), str(dst), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err == f"error: {dst}: cannot create the output folder (Read-only file system)\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def run_module(module, *args, limit_file_bytes=None):
    def limit():
        if limit_file_bytes:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_file_bytes, limit_file_bytes))
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, preexec_fn=limit, timeout=120)


@pytest.mark.parametrize("module,ext", [("convert.npz_to_zarr", "zarr"), ("convert.npz_to_wds", "wds")])
def test_full_disk(tmp_path, module, ext):
    # A file size limit makes writes fail with EFBIG, as a full disk fails them with ENOSPC.
    src, dst = tmp_path / "src", tmp_path / f"out.{ext}"
    make_dataset(src, {"train": [200, 200]}, seq_len=500)
    result = run_module(module, src, dst, "--quiet", limit_file_bytes=20_000)
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith(f"error: {dst}: cannot write the output (File too large")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_python_m_exit_status(tmp_path):
    src = tmp_path / "src"
    random_bytes_dir = src / "train"
    random_bytes_dir.mkdir(parents=True)
    random_bytes(src)
    result = run_module("convert.npz_to_wds", src, tmp_path / "out.wds")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: {src / 'train' / 'b.npz'}: not a valid npz file (File is not a zip file)"]


def child_pids(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def running(pid: int) -> bool:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
@pytest.mark.parametrize("workers", [1, 2])
def test_sigkill_midway_then_rerun(tmp_path, workers):
    src, dst = tmp_path / "src", tmp_path / "out.zarr"
    first = good_shard(src / "train" / "s000.npz", rows=100, seq_len=2000)
    for i in range(1, 100):  # the same bytes under 100 names: cheap to make, as slow to convert
        os.link(first, src / "train" / f"s{i:03d}.npz")
    cmd = [sys.executable, "-m", "convert.npz_to_zarr", str(src), str(dst), "--quiet",
           "--workers", str(workers), "--chunk-rows", "50", "--shard-rows", "100"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE)
    tmp = dst.with_name(f"{dst.name}.tmp-{proc.pid}")
    deadline = time.monotonic() + 60
    while not any((tmp / "train" / "seq" / "c").rglob("*")) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.005)
    children = child_pids(proc.pid)
    assert len(children) == (workers if workers > 1 else 0)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 120  # the workers die with their parent (the limit only stops a hung test)
    while (left := [pid for pid in children if running(pid)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left
    assert not dst.exists() and tmp.is_dir()  # killed midway: only the temporary folder
    rerun = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert zarr.open_group(dst, mode="r")["train"].attrs["n"] == 100 * 100
    assert not tmp.exists()  # the dead run's folder was cleaned up
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.zarr", "src"]


def tree(root: Path) -> dict:
    """Every file under root with its bytes: what must be left as it was."""
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("kind", ["zarr", "wds"])
@pytest.mark.parametrize("where", ["SRC itself", "SRC's parent", "inside SRC", "a shard"])
@pytest.mark.parametrize("overwrite", [False, True])
def test_the_output_never_is_holds_or_lies_inside_the_sources(tmp_path, capsys, kind, where, overwrite):
    # `SRC SRC --overwrite` and `proj/shards proj --overwrite` used to delete the shards and exit 0.
    proj = tmp_path / "proj"
    src = proj / "shards"
    make_dataset(src, {"train": [3], "val": [2]})
    (proj / "notes.txt").write_text("mine")
    dst = {"SRC itself": src, "SRC's parent": proj, "inside SRC": src / "out",
           "a shard": src / "train" / "train_000.npz"}[where]
    before = tree(tmp_path)
    args = [str(src), str(dst), "--quiet"] + ["--overwrite"] * overwrite
    assert CONVERTERS[kind].main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {dst}: the output ") and " the input " in err and err.count("\n") == 1, err
    assert tree(tmp_path) == before and sorted(p.name for p in proj.iterdir()) == ["notes.txt", "shards"]


def test_the_output_may_not_hold_a_symlinked_shard(tmp_path, capsys):
    store, src = tmp_path / "store", tmp_path / "src"
    make_dataset(store, {"train": [3]})
    (src / "train").mkdir(parents=True)
    (src / "train" / "a.npz").symlink_to(store / "train" / "train_000.npz")
    (store / "zarr.json").write_text('{"attributes": {"format": "maize_ddp/1"}}')  # even one that looks ours
    assert npz_to_zarr.main([str(src), str(store), "--quiet", "--overwrite"]) == 1
    assert "the output holds the input" in capsys.readouterr().err
    assert (store / "train" / "train_000.npz").exists()


@pytest.mark.parametrize("kind", ["zarr", "wds"])
def test_overwrite_replaces_only_our_outputs(tmp_path, capsys, kind):
    src, dst = tmp_path / "src", tmp_path / f"out.{kind}"
    make_dataset(src, {"train": [3]})
    dst.mkdir()
    (dst / "thesis.tex").write_text("mine")
    assert CONVERTERS[kind].main([str(src), str(dst), "--quiet", "--overwrite"]) == 1
    assert capsys.readouterr().err == f"error: {dst}: exists and is not a maize_ddp output; refusing to replace it\n"
    assert (dst / "thesis.tex").read_text() == "mine"
    (dst / "checkpoints").mkdir()  # a run folder is ours, but no converter's to replace: said as such
    assert CONVERTERS[kind].main([str(src), str(dst), "--quiet", "--overwrite"]) == 1
    assert capsys.readouterr().err == f"error: {dst}: exists and is a training run's folder; refusing to replace it\n"
    (dst / "checkpoints").rmdir()
    (dst / "thesis.tex").unlink()  # an empty folder holds nothing to lose
    assert CONVERTERS[kind].main([str(src), str(dst), "--quiet", "--overwrite"]) == 0
    assert CONVERTERS[kind].main([str(src), str(dst), "--quiet", "--overwrite"]) == 0  # its own output
    capsys.readouterr()
    other = "wds" if kind == "zarr" else "zarr"  # a store of the other format is not this command's to replace
    before = sorted(p.relative_to(dst) for p in dst.rglob("*"))
    assert CONVERTERS[other].main([str(src), str(dst), "--quiet", "--overwrite"]) == 1
    assert "refusing to replace it" in capsys.readouterr().err
    assert sorted(p.relative_to(dst) for p in dst.rglob("*")) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [dst.name, "src"]


def test_a_dangling_shard_symlink_is_an_error(tmp_path, capsys):
    src = tmp_path / "src"
    make_dataset(src, {"train": [3]})
    link = src / "train" / "train_001.npz"
    link.symlink_to(tmp_path / "gone.npz")
    assert npz_to_zarr.main([str(src), str(tmp_path / "out.zarr"), "--quiet"]) == 1
    assert capsys.readouterr().err == f"error: {link}: a symlink to {tmp_path / 'gone.npz'}, which does not exist\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


@pytest.mark.parametrize("kind", ["zarr", "wds"])
def test_macos_metadata_files_are_skipped_with_a_warning(tmp_path, capsys, kind):
    src, dst = tmp_path / "src", tmp_path / f"out.{kind}"
    make_dataset(src, {"train": [3, 4]})
    (src / "train" / "._train_000.npz").write_bytes(b"\0\5\26\7" + bytes(60))  # an AppleDouble header
    assert CONVERTERS[kind].main([str(src), str(dst), "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert "wrote 7 rows" in out
    assert err == f"warning: {src}: skipped 1 macOS metadata file(s) named ._*.npz, e.g. {src / 'train' / '._train_000.npz'}\n"


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def leave_interrupted_overwrite(dst: Path, pid: int, replaced: bool) -> None:
    """What a kill between --overwrite's two renames leaves (replaced: the second one was done)."""
    owner = f"{socket.gethostname()} {pid}\n"
    old, tmp = dst.with_name(f"{dst.name}.old-{pid}"), dst.with_name(f"{dst.name}.tmp-{pid}")
    (dst / ".convert-owner").write_text(owner)
    dst.rename(old)
    tmp.mkdir()
    (tmp / ".convert-owner").write_text(owner)
    (tmp / "zarr.json").write_text("{}")
    if replaced:
        tmp.rename(dst)


@pytest.mark.parametrize("replaced", [False, True])
def test_an_interrupted_overwrite_is_repaired_on_the_next_start(tmp_path, capsys, replaced):
    src, dst = tmp_path / "src", tmp_path / "out.zarr"
    make_dataset(src, {"train": [3]})
    assert npz_to_zarr.main([str(src), str(dst), "--quiet"]) == 0
    before = tree(dst)
    leave_interrupted_overwrite(dst, dead_pid(), replaced)
    assert npz_to_zarr.main([str(src), str(dst), "--quiet"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.zarr", "src"]
    if not replaced:  # the new store never arrived: the previous one is back, as it was
        assert tree(dst) == before


def test_a_live_owners_folders_are_left_alone(tmp_path, capsys):
    src, dst = tmp_path / "src", tmp_path / "out.zarr"
    make_dataset(src, {"train": [3]})
    assert npz_to_zarr.main([str(src), str(dst), "--quiet"]) == 0
    leave_interrupted_overwrite(dst, os.getppid(), replaced=False)  # a running process
    assert npz_to_zarr.main([str(src), str(dst), "--quiet"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "out.zarr", f"out.zarr.old-{os.getppid()}", f"out.zarr.tmp-{os.getppid()}", "src"]


def test_a_failed_swap_puts_the_previous_store_back(tmp_path, capsys, monkeypatch):
    src, dst = tmp_path / "src", tmp_path / "out.zarr"
    make_dataset(src, {"train": [3]})
    assert npz_to_zarr.main([str(src), str(dst), "--quiet"]) == 0
    before = tree(dst)
    real_rename = os.rename

    def rename(a, b):
        if ".tmp-" in str(a):
            raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), str(a))
        real_rename(a, b)

    monkeypatch.setattr(os, "rename", rename)
    assert npz_to_zarr.main([str(src), str(dst), "--quiet", "--overwrite"]) == 1
    assert capsys.readouterr().err.startswith(f"error: {dst}: cannot write the output")
    assert tree(dst) == before and sorted(p.name for p in tmp_path.iterdir()) == ["out.zarr", "src"]
