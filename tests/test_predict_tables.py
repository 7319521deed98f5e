"""From a sequence table to predictions with ids: table_to_npz -> store -> train -> predict on
the table itself and on FASTA, checked against predictions on the store's rows."""
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from _commands import in_process
from convert import npz_to_zarr
from convert.table_to_npz import convert_table
from maize_ddp import Run
from maize_ddp.data import make_loader

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
SMALL_MODEL = ["--pool1ks", "2", "--pool2ks", "2", "--pool3ks", "2", "--convdc", "2", "--conv1kc", "16",
               "--conv2kc", "16", "--conv3kc", "16", "--convdkc", "8", "--conv4kc", "8"]
LENGTH = 60


def run(tool, *args):
    """Training in a process of its own; predict and the converters by their main, in this one."""
    if tool != "maize_ddp.train":
        return in_process(tool, *args)
    return subprocess.run([sys.executable, "-m", tool, *map(str, args)], env=ENV, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("tables")
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGT"), size=LENGTH)) for _ in range(600)]
    rows = [{"name": f"p{i:03d}", "sequence": s, "activity": f"{s.count('TATA') + 0.1 * rng.normal():.5f}"}
            for i, s in enumerate(seqs)]
    table = root / "lib.tsv"
    with open(table, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["name", "sequence", "activity"], delimiter="\t")
        w.writeheader()
        w.writerows(rows)
    convert_table(table, root / "npz", seq_col="sequence", label_cols=["activity"], id_col="name")
    npz_to_zarr.convert(root / "npz", root / "lib.zarr")
    res = run("maize_ddp.train", "--data", root / "lib.zarr", "--out", root / "run", "--epochs", "1",
              "--warmup-steps", "2", "--bn-recalibration-batches", "2", *SMALL_MODEL)
    assert res.returncode == 0, res.stderr[-3000:]
    return {"root": root, "rows": rows, "table": table}


def read_table(path):
    lines = path.read_text().splitlines()
    assert lines[0].split("\t")[0] == "id"
    return [line.split("\t") for line in lines[1:]]


def test_predict_on_a_table_and_on_fasta_keeps_input_order_and_matches_the_store(world, tmp_path):
    root, rows = world["root"], world["rows"]
    res = run("maize_ddp.predict", root / "run", "--data", world["table"], "--seq-col", "sequence",
              "--id-col", "name", "--batch-size", "64", "--out", tmp_path / "t.tsv")
    assert res.returncode == 0, res.stderr
    from_table = read_table(tmp_path / "t.tsv")
    assert [r[0] for r in from_table] == [r["name"] for r in rows]  # input order, every row
    fasta = tmp_path / "lib.fa"
    fasta.write_text("".join(f">{r['name']}\n{r['sequence'][:25]}\n{r['sequence'][25:].lower()}\n" for r in rows))
    assert run("maize_ddp.predict", root / "run", "--data", fasta, "--out", tmp_path / "f.tsv").returncode == 0
    assert read_table(tmp_path / "f.tsv") == from_table
    # the same rows through the store: predictions agree, joined by id
    assert run("maize_ddp.predict", root / "run", "--data", root / "lib.zarr", "--split", "test",
               "--out", tmp_path / "s.tsv").returncode == 0
    by_id = {r[0]: float(r[1]) for r in from_table}
    store_rows = read_table(tmp_path / "s.tsv")  # id row true predicted
    assert len(store_rows) > 20
    np.testing.assert_allclose([float(r[3]) for r in store_rows], [by_id[r[0]] for r in store_rows],
                               rtol=1e-5, atol=1e-6)
    assert Run.load(root / "run").target_names == ["activity"]  # the table's label column names the target


def test_lengths_other_than_the_models_need_align(world, tmp_path):
    root, rows = world["root"], world["rows"][:10]
    fasta = tmp_path / "short.fa"
    fasta.write_text("".join(f">{r['name']}\n{r['sequence'][:LENGTH - 4 * (i == 3)]}\n" for i, r in enumerate(rows)))
    res = run("maize_ddp.predict", root / "run", "--data", fasta, "--out", tmp_path / "p.tsv")
    assert res.returncode == 1 and not (tmp_path / "p.tsv").exists()
    assert res.stderr.strip() == (f"error: {fasta}: line 7: id 'p003' is 56 bp but the model was built for "
                                  f"{LENGTH} bp; pass --align left|right|centre to pad with N or trim "
                                  "(see docs/tables.md)")
    assert run("maize_ddp.predict", root / "run", "--data", fasta, "--align", "left",
               "--out", tmp_path / "p.tsv").returncode == 0
    padded = tmp_path / "padded.fa"
    padded.write_text("".join(f">{r['name']}\n{r['sequence'][:LENGTH - 4 * (i == 3)].ljust(LENGTH, 'N')}\n"
                              for i, r in enumerate(rows)))
    assert run("maize_ddp.predict", root / "run", "--data", padded, "--out", tmp_path / "q.tsv").returncode == 0
    assert read_table(tmp_path / "p.tsv") == read_table(tmp_path / "q.tsv")


def test_a_bad_sequence_is_one_line_naming_the_row(world, tmp_path):
    rows = world["rows"][:5]
    table = tmp_path / "bad.csv"
    table.write_text("name,sequence\n" + "".join(f"{r['name']},{r['sequence']}\n" for r in rows[:2])
                     + f"{rows[2]['name']},{rows[2]['sequence'][:10]}X{rows[2]['sequence'][11:]}\n")
    res = run("maize_ddp.predict", world["root"] / "run", "--data", table, "--seq-col", "sequence",
              "--id-col", "name", "--out", tmp_path / "p.tsv")
    assert res.returncode == 1 and not (tmp_path / "p.tsv").exists()
    assert res.stderr.strip() == (f"error: {table}: line 4: id 'p002': sequence has 'X' at position 11 "
                                  "(only A, C, G, T, N)")


def test_training_batches_do_not_follow_a_sorted_table(tmp_path):
    """A table sorted by activity: consecutive training batches must not share a level."""
    n = 4096
    rows = [{"name": f"r{i}", "sequence": "ACGT" * 5, "activity": str(i)} for i in range(n)]
    table = tmp_path / "sorted.tsv"
    with open(table, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["name", "sequence", "activity"], delimiter="\t")
        w.writeheader()
        w.writerows(rows)
    convert_table(table, tmp_path / "npz", seq_col="sequence", label_cols=["activity"], id_col="name",
                  shard_size=4096)
    npz_to_zarr.convert(tmp_path / "npz", tmp_path / "s.zarr", chunk_rows=8, shard_rows=64)
    loader = make_loader(tmp_path / "s.zarr", "train", batch_size=32, seed=0)
    means = []
    for epoch in range(3):
        loader.set_epoch(epoch)
        means += [float(y.mean()) for _, y in loader]
    lag1 = np.corrcoef(means[:-1], means[1:])[0, 1]
    assert abs(lag1) < 0.2, lag1  # a plain block permutation of the same blocks gives +0.37


def test_predict_fits_lengths_as_the_training_table_was_fitted(world, tmp_path):
    rows = world["rows"][:300]
    table = tmp_path / "ragged.tsv"
    table.write_text("name\tsequence\tactivity\n" + "".join(
        f"{r['name']}\t{r['sequence'][i % 7:]}\t{r['activity']}\n" for i, r in enumerate(rows)))
    convert_table(table, tmp_path / "npz", seq_col="sequence", label_cols=["activity"], id_col="name",
                  length=LENGTH, align="right")
    npz_to_zarr.convert(tmp_path / "npz", tmp_path / "r.zarr")
    res = run("maize_ddp.train", "--data", tmp_path / "r.zarr", "--out", tmp_path / "run", "--epochs", "1",
              "--batch-size", "16", "--warmup-steps", "2", "--bn-recalibration-batches", "2", *SMALL_MODEL)
    assert res.returncode == 0, res.stderr[-3000:]
    # without --align, predict pads as the run's table_to_npz did (right-aligned): the same as
    # predicting on sequences padded by hand
    assert run("maize_ddp.predict", tmp_path / "run", "--data", table, "--seq-col", "sequence", "--id-col", "name",
               "--out", tmp_path / "p.tsv").returncode == 0
    padded = tmp_path / "padded.fa"
    padded.write_text("".join(f">{r['name']}\n{r['sequence'][i % 7:].rjust(LENGTH, 'N')}\n"
                              for i, r in enumerate(rows)))
    assert run("maize_ddp.predict", tmp_path / "run", "--data", padded, "--out", tmp_path / "q.tsv").returncode == 0
    assert read_table(tmp_path / "p.tsv") == read_table(tmp_path / "q.tsv")
    left = run("maize_ddp.predict", tmp_path / "run", "--data", table, "--seq-col", "sequence", "--id-col", "name",
               "--align", "left", "--out", tmp_path / "l.tsv")
    assert left.returncode == 0 and read_table(tmp_path / "l.tsv") != read_table(tmp_path / "p.tsv")


def test_interpret_reads_a_table_like_predict(world, tmp_path):
    rows = world["rows"]
    wanted = [rows[4]["name"], rows[1]["name"]]
    args = [world["root"] / "run", "--data", world["table"], "--seq-col", "sequence", "--id-col", "name", "--ids",
            *wanted, "--method", "saliency", "--figures", "0"]
    res = run("maize_ddp.interpret", *args, "--target", "activity", "--out", tmp_path / "i")  # the label's name
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads((tmp_path / "i" / "interpret.json").read_text())["target"] == 0
    bad = run("maize_ddp.interpret", *args, "--target", "enrichment", "--out", tmp_path / "bad")
    assert bad.returncode != 0 and "--target 'enrichment': the model has 1 target(s): 0 (activity)" in bad.stderr
    with np.load(tmp_path / "i" / "attributions.npz") as z:
        assert z["ids"].tolist() == wanted
        assert ["".join("ACGTN"[c] for c in codes) for codes in z["codes"]] == [rows[4]["sequence"], rows[1]["sequence"]]
        assert z["saliency"].shape == (2, 4, LENGTH) and np.abs(z["saliency"]).sum() > 0


@pytest.mark.parametrize("make,words", [
    (lambda d: (d / "h.tsv").write_text("name\tsequence\n") and d / "h.tsv", "no sequences"),
    (lambda d: (d / "e.fa").write_text("\n \n") and d / "e.fa", "e.fa: is empty: no FASTA record and no table header"),
    (lambda d: np.savez(d / "x.npz", arr_0=np.zeros((2, 60), np.uint8)) or d / "x.npz",
     "an npz shard; pass the folder that holds the shards"),
])
def test_predict_refuses_inputs_that_give_no_predictions(world, tmp_path, make, words):
    data = make(tmp_path)
    res = run("maize_ddp.predict", world["root"] / "run", "--data", data, "--seq-col", "sequence",
              "--id-col", "name", "--out", tmp_path / "p.tsv")
    assert res.returncode == 1 and words in res.stderr and res.stderr.count("\n") == 1
    assert not (tmp_path / "p.tsv").exists()


def test_predict_never_writes_over_its_input_or_a_runs_report(world, tmp_path):
    run_dir = world["root"] / "run"
    report = (run_dir / "test_predictions.tsv").read_bytes()
    res = run("maize_ddp.predict", run_dir, "--data", world["root"] / "lib.zarr", "--split", "val",
              "--out", run_dir / "test_predictions.tsv", "--overwrite")
    assert res.returncode == 1 and "is part of a report" in res.stderr
    assert (run_dir / "test_predictions.tsv").read_bytes() == report
    copy = tmp_path / "lib.tsv"
    copy.write_bytes(world["table"].read_bytes())
    res = run("maize_ddp.predict", run_dir, "--data", copy, "--seq-col", "sequence", "--out", copy)
    assert res.returncode == 1 and "is the input (--data)" in res.stderr
    assert copy.read_bytes() == world["table"].read_bytes()


def test_predict_ids_gives_those_rows_in_the_order_asked_from_any_input(world, tmp_path):
    root = world["root"]
    assert run("maize_ddp.predict", root / "run", "--data", world["table"], "--seq-col", "sequence",
               "--id-col", "name", "--out", tmp_path / "all.tsv").returncode == 0
    every = {r[0]: r[1] for r in read_table(tmp_path / "all.tsv")}
    test_ids = [r[0] for r in read_table_of_store(root, tmp_path)]
    wanted = [test_ids[5], test_ids[0], test_ids[17]]
    for data, extra in [(world["table"], ["--seq-col", "sequence", "--id-col", "name"]), (root / "lib.zarr", [])]:
        out = tmp_path / f"ids-{data.name}.tsv"
        res = run("maize_ddp.predict", root / "run", "--data", data, *extra, "--ids", *wanted, "--out", out)
        assert res.returncode == 0, res.stderr
        got = read_table(out)
        assert [r[0] for r in got] == wanted
        np.testing.assert_allclose([float(r[1]) for r in got], [float(every[i]) for i in wanted], rtol=1e-5)
    # without --split, a store's ids are looked for in every split, and the one used is said
    from maize_ddp.data import open_store, read_ids

    train_ids = read_ids(open_store(root / "lib.zarr"), "train")[[3, 0]].tolist()
    res = run("maize_ddp.predict", root / "run", "--data", root / "lib.zarr", "--ids", *train_ids,
              "--out", tmp_path / "train.tsv")
    assert res.returncode == 0 and "--ids: found in split 'train'" in res.stderr, res.stderr
    got = read_table(tmp_path / "train.tsv")
    assert [r[0] for r in got] == train_ids
    np.testing.assert_allclose([float(r[1]) for r in got], [float(every[i]) for i in train_ids], rtol=1e-5)
    res = run("maize_ddp.predict", root / "run", "--data", root / "lib.zarr", "--ids", wanted[0], "nope",
              "--out", tmp_path / "missing.tsv")
    assert res.returncode == 1 and "--ids: 'nope' is in no split" in res.stderr and "Traceback" not in res.stderr
    res = run("maize_ddp.predict", root / "run", "--data", root / "lib.zarr", "--split", "test", "--ids", train_ids[0],
              "--out", tmp_path / "missing.tsv")
    assert res.returncode == 1 and f"no row with id {train_ids[0]!r} (in another split? see --split)" in res.stderr
    assert not (tmp_path / "missing.tsv").exists()


def read_table_of_store(root, tmp_path):
    out = tmp_path / "store.tsv"
    assert run("maize_ddp.predict", root / "run", "--data", root / "lib.zarr", "--out", out).returncode == 0
    return read_table(out)


def test_several_targets_are_named_after_the_tables_label_columns_in_every_output(world, tmp_path):
    """A table's label columns name the targets through the store and the run: the test report,
    predict on a store and on a table, and a cross-validation report all say true_leaf, not true_0."""
    rows = [{**r, "leaf": r["activity"], "root": f"{-float(r['activity']):.5f}"} for r in world["rows"]]
    table = tmp_path / "two.tsv"
    with open(table, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["name", "sequence", "leaf", "root"], delimiter="\t", extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    convert_table(table, tmp_path / "npz", seq_col="sequence", label_cols=["leaf", "root"], id_col="name")
    npz_to_zarr.convert(tmp_path / "npz", tmp_path / "two.zarr")
    res = run("maize_ddp.train", "--data", tmp_path / "two.zarr", "--out", tmp_path / "run", "--epochs", "1",
              "--warmup-steps", "2", "--bn-recalibration-batches", "2", *SMALL_MODEL)
    assert res.returncode == 0, res.stderr[-3000:]
    named = ["true_leaf", "true_root", "predicted_leaf", "predicted_root"]
    header = (tmp_path / "run" / "test_predictions.tsv").read_text().splitlines()[0].split("\t")
    assert header == ["id", "row", *named]
    assert run("maize_ddp.predict", tmp_path / "run", "--data", tmp_path / "two.zarr", "--out",
               tmp_path / "s.tsv").returncode == 0
    assert (tmp_path / "s.tsv").read_text().splitlines()[0].split("\t") == ["id", "row", *named]
    assert run("maize_ddp.predict", tmp_path / "run", "--data", table, "--seq-col", "sequence", "--id-col", "name",
               "--out", tmp_path / "t.tsv").returncode == 0
    assert (tmp_path / "t.tsv").read_text().splitlines()[0].split("\t") == ["id", *named[2:]]
    assert run("maize_ddp.cv_report", tmp_path / "run", "--out", tmp_path / "cv").returncode == 0
    assert (tmp_path / "cv" / "cv_predictions.tsv").read_text().splitlines()[0].split("\t") == ["id", "fold", *named]


def test_targets_without_recorded_names_are_numbered():
    from maize_ddp.report import predictions_table

    text = predictions_table(np.array(["a"]), np.array([0]), np.zeros((1, 2)), np.ones((1, 2)))
    assert text.splitlines()[0].split("\t") == ["id", "row", "true_0", "true_1", "predicted_0", "predicted_1"]
