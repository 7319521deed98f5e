"""Bad inputs and faults against the real converter commands, one table.

Each scenario builds a small world in a fresh folder, runs one command as a subprocess and
expects: a non-zero exit, exactly one `error:` line on stderr naming the path or flag and the
cause, and every file of that world left as it was (the sources untouched; no output, complete
or partial, and no temporary folder left behind).
"""
from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from _npz import make_dataset

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {"zarr": "convert.npz_to_zarr", "wds": "convert.npz_to_wds", "genome": "convert.genome_to_npz",
            "synth": "convert.synth", "table": "convert.table_to_npz"}
SMALL_DISK = 20_000  # bytes: a file size limit fails writes with EFBIG, as a full disk fails them with ENOSPC


def shards(tmp: Path, rows=(3, 2)) -> None:
    make_dataset(tmp / "proj" / "shards", {"train": [rows[0]], "val": [rows[1]]})


def big_shards(tmp: Path) -> None:
    make_dataset(tmp / "proj" / "shards", {"train": [200, 200]}, seq_len=500)


def not_ours(tmp: Path) -> None:
    shards(tmp)
    (tmp / "out").mkdir()
    (tmp / "out" / "thesis.tex").write_text("mine")


def genome(tmp: Path) -> None:
    """genome.fa (one 4 kb chromosome), genes.gff3 (two genes), expr.csv, in tmp/data."""
    data = tmp / "data"
    data.mkdir()
    seq = "".join(np.random.default_rng(0).choice(list("ACGT"), 4000))
    (data / "genome.fa").write_text(">chr1\n" + "\n".join(seq[i:i + 60] for i in range(0, 4000, 60)) + "\n")
    (data / "genes.gff3").write_text("##gff-version 3\n" + "".join(
        f"chr1\tt\tgene\t{start}\t{start + 900}\t.\t{strand}\t.\tID={name}\n"
        for name, start, strand in (("g1", 1100, "+"), ("g2", 1500, "-"))))
    (data / "expr.csv").write_text("gene_id,tpm\ng1,5\ng2,7\n")


def genome_and_not_ours(tmp: Path) -> None:
    genome(tmp)
    (tmp / "out").mkdir()
    (tmp / "out" / "thesis.tex").write_text("mine")


def a_wds_store(tmp: Path) -> None:
    from convert import npz_to_wds

    shards(tmp)
    npz_to_wds.convert(tmp / "proj" / "shards", tmp / "out")


def dangling(tmp: Path) -> None:
    shards(tmp)
    (tmp / "proj" / "shards" / "train" / "b.npz").symlink_to(tmp / "moved.npz")


def truncated(tmp: Path) -> None:
    shards(tmp)
    path = tmp / "proj" / "shards" / "train" / "train_000.npz"
    path.write_bytes(path.read_bytes()[:100])


def a_table(tmp: Path) -> None:
    (tmp / "t.tsv").write_text("id\tsequence\tv\n" + "".join(f"g{i}\tACGTACGT\t{i}\n" for i in range(20)))


def a_store_holding(*extra: str):
    """A Zarr store of ours at tmp/out with what a user later put inside it (a run, a note)."""
    def setup(tmp: Path) -> None:
        from convert import npz_to_zarr

        shards(tmp)
        npz_to_zarr.convert(tmp / "proj" / "shards", tmp / "out")
        for rel in extra:
            (tmp / "out" / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / "out" / rel).write_text("not the converter's")
    return setup


def a_file(tmp: Path) -> None:
    shards(tmp)
    (tmp / "out").write_text("a file")


GENOME = "genome --quiet --fasta {tmp}/data/genome.fa --gff {tmp}/data/genes.gff3 --expression {tmp}/data/expr.csv"
SYNTH = "synth {tmp}/out --train 600 --val 0 --test 0 --seq-len 200"
# (scenario, setup, command, what stderr's one line holds); {tmp} is the scenario's folder.
SCENARIOS = [
    ("zarr: DST is SRC, --overwrite", shards, "zarr {tmp}/proj/shards {tmp}/proj/shards --overwrite",
     "{tmp}/proj/shards: the output is the input {tmp}/proj/shards;"),
    ("zarr: DST holds SRC, --overwrite", shards, "zarr {tmp}/proj/shards {tmp}/proj --overwrite",
     "{tmp}/proj: the output holds the input {tmp}/proj/shards;"),
    ("zarr: DST inside SRC", shards, "zarr {tmp}/proj/shards {tmp}/proj/shards/data.zarr",
     "{tmp}/proj/shards/data.zarr: the output lies inside the input {tmp}/proj/shards;"),
    ("zarr: DST is SRC through ..", shards, "zarr {tmp}/proj/shards {tmp}/proj/shards/train/.. --overwrite",
     "the output is the input {tmp}/proj/shards;"),
    ("wds: DST is SRC, --overwrite", shards, "wds {tmp}/proj/shards {tmp}/proj/shards --overwrite",
     "{tmp}/proj/shards: the output is the input {tmp}/proj/shards;"),
    ("wds: DST holds SRC, --overwrite", shards, "wds {tmp}/proj/shards {tmp}/proj --overwrite",
     "{tmp}/proj: the output holds the input {tmp}/proj/shards;"),
    ("zarr: --overwrite a folder not ours", not_ours, "zarr {tmp}/proj/shards {tmp}/out --overwrite",
     "{tmp}/out: exists and is not a maize_ddp output; refusing to replace it"),
    ("wds: --overwrite a file", a_file, "wds {tmp}/proj/shards {tmp}/out --overwrite",
     "{tmp}/out: exists and is not a maize_ddp output; refusing to replace it"),
    ("zarr: DST exists, no --overwrite", not_ours, "zarr {tmp}/proj/shards {tmp}/out",
     "{tmp}/out: already exists (pass --overwrite to replace it)"),
    ("genome: --out is the inputs' folder", genome, GENOME + " --out {tmp}/data --overwrite",
     "{tmp}/data: the output holds the input {tmp}/data/genome.fa;"),
    ("genome: --out above the inputs", genome, GENOME + " --out {tmp} --overwrite",
     "{tmp}: the output holds the input {tmp}/data/genome.fa;"),
    ("genome: --out is the FASTA", genome, GENOME + " --out {tmp}/data/genome.fa --overwrite",
     "{tmp}/data/genome.fa: the output is the input {tmp}/data/genome.fa;"),
    ("genome: --overwrite a folder not ours", genome_and_not_ours, GENOME + " --out {tmp}/out --overwrite",
     "{tmp}/out: exists and is not a maize_ddp output; refusing to replace it"),
    ("synth: --overwrite a folder not ours", not_ours, SYNTH + " --overwrite",
     "{tmp}/out: exists and is not a maize_ddp output; refusing to replace it"),
    ("zarr: --overwrite a WebDataset store", a_wds_store, "zarr {tmp}/proj/shards {tmp}/out --overwrite",
     "{tmp}/out: is a WebDataset store, and this command writes a Zarr store; refusing to replace it"),
    ("synth: --overwrite a WebDataset store", a_wds_store, SYNTH + " --overwrite",
     "{tmp}/out: is a WebDataset store, and this command writes a convert.synth dataset; refusing"),
    ("synth: --num-targets 0", None, SYNTH + " --num-targets 0", "--num-targets must be at least 1, not 0"),
    ("synth: --train -5", None, SYNTH + " --train -5", "--train must be at least 0, not -5"),
    ("synth: --shard-size 0", None, SYNTH + " --shard-size 0", "--shard-size must be at least 1, not 0"),
    ("synth: --noise-sd -1", None, SYNTH + " --noise-sd -1", "--noise-sd must be at least 0, not -1.0"),
    ("zarr: dangling shard symlink", dangling, "zarr {tmp}/proj/shards {tmp}/out",
     "{tmp}/proj/shards/train/b.npz: a symlink to {tmp}/moved.npz, which does not exist"),
    ("zarr: truncated shard", truncated, "zarr {tmp}/proj/shards {tmp}/out",
     "{tmp}/proj/shards/train/train_000.npz: not a valid npz file"),
    ("zarr: disk full, --workers 2", big_shards, "zarr {tmp}/proj/shards {tmp}/out --workers 2 DISK_FULL",
     "{tmp}/out: cannot write the output (File too large"),
    ("wds: disk full", big_shards, "wds {tmp}/proj/shards {tmp}/out DISK_FULL",
     "{tmp}/out: cannot write the output (File too large"),
    ("genome: disk full", genome, GENOME + " --out {tmp}/out DISK_FULL",
     "{tmp}/out: cannot write the output (File too large"),
    ("synth: disk full", None, SYNTH + " DISK_FULL", "{tmp}/out: cannot write the output (File too large"),
    ("zarr: --overwrite a store holding a run", a_store_holding("run/checkpoints/best.pt", "run/config.json"),
     "zarr {tmp}/proj/shards {tmp}/out --overwrite",
     "{tmp}/out: holds run and 3 more, which this command did not write; refusing to replace it"),
    ("zarr: --overwrite a store holding a user's note", a_store_holding("notes.txt"),
     "zarr {tmp}/proj/shards {tmp}/out --overwrite", "{tmp}/out: holds notes.txt, which this command did not write"),
    ("genome: --folds 0", genome, GENOME + " --out {tmp}/out --folds 0", "--folds must be at least 3"),
    ("table: --seed -1", a_table, "table {tmp}/t.tsv --seq-col sequence --label-col v --id-col id --seed -1 "
     "--out {tmp}/out", "--seed must not be negative, not -1"),
]


def snapshot(root: Path) -> dict:
    """Every path under root: a file's bytes, a link's target, or None for a folder."""
    return {p.relative_to(root): (os.readlink(p) if p.is_symlink() else p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*"))}


def run(words: list[str], disk_full: bool = False, **kwargs) -> subprocess.CompletedProcess:
    def small_disk():
        resource.setrlimit(resource.RLIMIT_FSIZE, (SMALL_DISK, SMALL_DISK))

    return subprocess.run([sys.executable, "-m", COMMANDS[words[0]], *words[1:]], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, preexec_fn=small_disk if disk_full else None, **kwargs)


@pytest.mark.parametrize("name,setup,command,message", SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_fault(tmp_path, name, setup, command, message):
    if setup:
        setup(tmp_path)
    before = snapshot(tmp_path)
    words = command.format(tmp=tmp_path).split()
    disk_full = "DISK_FULL" in words
    result = run([w for w in words if w != "DISK_FULL"], disk_full)
    assert result.returncode != 0
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr and message.format(tmp=tmp_path) in result.stderr, result.stderr
    assert snapshot(tmp_path) == before


# A real SIGKILL between --overwrite's two renames: os.rename kills its own process once the
# previous store has been moved aside, before the new one takes its name.
KILLED_BETWEEN_RENAMES = """
import os, signal, sys
from convert import npz_to_zarr
real_rename = os.rename
def rename(a, b):
    real_rename(a, b)
    if ".old-" in str(b):
        os.kill(os.getpid(), signal.SIGKILL)
os.rename = rename
npz_to_zarr.main(sys.argv[1:])
"""


def test_killed_between_the_renames_of_overwrite(tmp_path):
    shards(tmp_path)
    src, dst = tmp_path / "proj" / "shards", tmp_path / "out.zarr"
    assert run(["zarr", str(src), str(dst), "--quiet"]).returncode == 0
    store = snapshot(dst)
    killed = subprocess.run([sys.executable, "-c", KILLED_BETWEEN_RENAMES, str(src), str(dst), "--overwrite"],
                            cwd=ROOT, capture_output=True, timeout=60)
    assert killed.returncode == -signal.SIGKILL
    assert not dst.exists() and {p.name.split("-")[0] for p in tmp_path.glob("out.zarr.*")} == {
        "out.zarr.old", "out.zarr.tmp"}
    # The next start puts the previous store back, whole, and removes the unfinished one.
    rerun = run(["zarr", str(src), str(dst), "--quiet"])
    assert rerun.returncode == 1 and "already exists" in rerun.stderr
    assert snapshot(dst) == store and sorted(p.name for p in tmp_path.iterdir()) == ["out.zarr", "proj"]
    rerun = run(["zarr", str(src), str(dst), "--quiet", "--overwrite"])
    assert rerun.returncode == 0 and json.loads((dst / "zarr.json").read_text())["attributes"]["sources"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.zarr", "proj"]


def test_a_sigterm_while_the_output_folder_is_made_leaves_nothing(tmp_path, monkeypatch):
    """SIGTERM unwinds a converter as SystemExit; arriving as DST.tmp-PID is being made, it must
    not leave that folder behind."""
    from maize_ddp import outputs as output

    def terminated(folder):
        raise SystemExit(143)
    monkeypatch.setattr(output, "_mark", terminated)
    with pytest.raises(SystemExit):
        with output.atomic_output_dir(tmp_path / "out"):
            pass
    assert list(tmp_path.iterdir()) == []


def test_overwrite_replaces_a_store_that_holds_only_its_own_files(tmp_path):
    from convert import npz_to_zarr

    shards(tmp_path)
    npz_to_zarr.convert(tmp_path / "proj" / "shards", tmp_path / "out")
    result = run(["zarr", str(tmp_path / "proj" / "shards"), str(tmp_path / "out"), "--overwrite"])
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "zarr.json").is_file()
