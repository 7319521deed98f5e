"""--task classification: high/low labels from genome_to_npz, exact accuracy/auROC over ranks,
probabilities out. References: scipy's Mann-Whitney U, float64 numpy, single-process runs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from _commands import in_process
from convert import synth
from maize_ddp.metrics import auroc, bce_with_logits, binary_summary

sys.path.insert(0, str(Path(__file__).parent))
from test_genome_to_npz import SMALL, write_inputs  # noqa: E402

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}
TINY = ["--pool1ks", "2", "--pool2ks", "2", "--pool3ks", "2", "--convdc", "2", "--conv1kc", "16", "--conv2kc", "16",
        "--conv3kc", "16", "--convdkc", "8", "--conv4kc", "8", "--batch-size", "32", "--warmup-steps", "5",
        "--bn-recalibration-batches", "2"]


def mann_whitney_auc(y, score):
    score = np.asarray(score, dtype=np.float64)
    pos, neg = score[y == 1], score[y == 0]
    return stats.mannwhitneyu(pos, neg, alternative="two-sided").statistic / (len(pos) * len(neg))


# ---- metrics -----------------------------------------------------------------------------------
def test_auroc_equals_mann_whitney_with_ties():
    rng = np.random.default_rng(0)
    y = (rng.random(501) < 0.4).astype(np.float32)
    score = np.round(y * 0.3 + rng.random(501), 1).astype(np.float32)  # rounded: many ties
    assert auroc(y, score) == pytest.approx(mann_whitney_auc(y, score), rel=1e-12)
    assert auroc(y, -score) == pytest.approx(1 - mann_whitney_auc(y, score), rel=1e-12)
    assert np.isnan(auroc(np.ones(5), np.arange(5.0)))
    s = binary_summary(y[:, None], score[:, None])
    assert s["accuracy"] == pytest.approx(np.mean((score >= 0.5) == (y == 1)))
    assert s["n"] == 501 and s["positives"] == int(y.sum())


def test_bce_equals_torch_in_float64():
    rng = np.random.default_rng(1)
    y, z = (rng.random((300, 2)) < 0.5).astype(np.float64), rng.normal(scale=30, size=(300, 2))
    ref = torch.nn.functional.binary_cross_entropy_with_logits(torch.from_numpy(z), torch.from_numpy(y)).item()
    assert bce_with_logits(y, z) == pytest.approx(ref, rel=1e-12)


# ---- genome_to_npz --classes ---------------------------------------------------------------------
def test_quartile_classes_from_a_column(tmp_path):
    from convert.genome_to_npz import build_dataset

    chrom = "".join(np.random.default_rng(2).choice(list("ACGT"), 2000))
    genes = [("chr1", 20 + 60 * i, 40 + 60 * i, "+", f"g{i:02d}") for i in range(30)]
    score = {f"g{i:02d}": (i * 7) % 30 / 3.0 for i in range(30)}  # 0 .. 9.67, out of position order
    fasta, gff, expr = write_inputs(tmp_path, {"chr1": chrom}, genes,
                                    {g: [1.0, v] for g, v in score.items()}, columns=("other", "logMax"))
    out = tmp_path / "out"
    build_dataset(fasta, gff, expr, out, geometry=SMALL, id_attribute="locus_tag", classes="quartiles",
                  class_column="logMax", split_fractions=(0.6, 0.2, 0.2))
    values = np.array(list(score.values()))
    low, high = np.quantile(values, [0.25, 0.75])
    rows = [line.split("\t") for line in (out / "genes.tsv").read_text().splitlines()[1:]]
    got = {r[2]: float(r[-1]) for r in rows}
    expected = {g: 1.0 if v >= high else 0.0 for g, v in score.items() if v >= high or v <= low}
    assert got == expected  # every gene of the tails, none of the middle, all labelled right
    summary = json.loads((out / "summary.json").read_text())
    rule = summary["settings"]["classes"]  # the converters copy settings into the store's origin
    assert rule["rule"] == "quartiles" and rule["column"] == "logMax"
    assert (rule["low_threshold"], rule["high_threshold"]) == pytest.approx((low, high))
    assert rule["middle_dropped"] == 30 - len(expected) and summary["targets"] == ["high"]
    with np.load(next((out / "train").glob("*.npz"))) as z:
        assert set(np.unique(z["arr_1"])) <= {0.0, 1.0}


@pytest.mark.parametrize("flags, message", [
    (["--classes", "quartiles"], "--classes needs --class-column"),
    (["--classes", "quartiles", "--class-column", "s1", "--columns", "s2"], "drop --columns/--target"),
    (["--classes", "quartiles", "--class-column", "nope"], "column 'nope' matches no column"),
])
def test_class_flags_fail_in_one_line(tmp_path, capsys, flags, message):
    from convert.genome_to_npz import main

    fasta, gff, expr = write_inputs(tmp_path, {"chr1": "ACGT" * 100}, [("chr1", 100, 120, "+", "g1")], {"g1": [1, 2]})
    rc = main(["--fasta", str(fasta), "--gff", str(gff), "--expression", str(expr), "--out", str(tmp_path / "o"),
               "--id-attribute", "locus_tag", *flags])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "o").exists()


# ---- training, evaluation, prediction ------------------------------------------------------------
@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """Synthetic regression data, and the same rows labelled 1 above the train median, else 0."""
    from convert import npz_to_zarr

    root = tmp_path_factory.mktemp("cls")
    synth.generate(root / "npz", train=1024, val=101, test=103, seq_len=200, shard_size=512, noise_sd=0.3)
    cut = np.median(np.concatenate([np.load(f)["arr_1"] for f in (root / "npz" / "train").glob("*.npz")]))
    for f in sorted((root / "npz").rglob("*.npz")):
        with np.load(f) as z:
            arrays = dict(z)
        target = root / "npz01" / f.relative_to(root / "npz")
        target.parent.mkdir(parents=True, exist_ok=True)
        np.savez(target, **{**arrays, "arr_1": (arrays["arr_1"] > cut).astype(np.float32)})
    npz_to_zarr.convert(root / "npz", root / "reg.zarr")
    npz_to_zarr.convert(root / "npz01", root / "cls.zarr")
    return {"reg": root / "reg.zarr", "cls": root / "cls.zarr"}


def read_table(path):
    lines = Path(path).read_text().splitlines()
    rows = [line.split("\t") for line in lines[1:]]
    return lines[0], [r[0] for r in rows], np.array([float(r[2]) for r in rows]), np.array([float(r[3]) for r in rows])


def test_two_rank_classification_run_reports_exact_auroc(stores, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m",
           "maize_ddp.train", "--data", str(stores["cls"]), "--out", str(out), "--task", "classification",
           "--epochs", "2", *TINY]
    res = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads((out / "test_metrics.json").read_text())
    header, ids, y, prob = read_table(out / "test_predictions.tsv")
    assert header == "id\trow\ttrue\tprobability" and len(ids) == report["n"] == 103
    from maize_ddp.data import open_store, read_ids

    assert ids == read_ids(open_store(stores["cls"]), "test").tolist()
    # 103 rows over 2 ranks (52 + 51), gathered: exactly the float64 reference on the table
    assert report["auroc"] == pytest.approx(mann_whitney_auc(y, prob), rel=1e-12)
    assert report["accuracy"] == pytest.approx(np.mean((prob >= 0.5) == (y == 1)), rel=1e-12)
    assert report["auroc"] > 0.6  # it learned something
    assert (out / "roc.png").stat().st_size > 0 and (out / "curves.png").stat().st_size > 0
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"val_auroc", "val_accuracy", "val_loss"} <= set(history[0]) and "val_pearson" not in history[0]
    best = max(range(len(history)), key=lambda i: history[i]["val_auroc"])
    assert report["best_epoch"] == best + 1  # the best checkpoint is the best val auROC

    # one process re-evaluates the best checkpoint on val: the auROC the 2-rank run logged
    ev = in_process("maize_ddp.evaluate", out, "--data", stores["cls"], "--split", "val", "--out", tmp_path / "val")
    assert ev.returncode == 0, ev.stderr
    assert "accuracy" in ev.stdout and "auroc" in ev.stdout
    _, _, yv, pv = read_table(tmp_path / "val" / "val_predictions.tsv")
    assert history[best]["val_auroc"] == pytest.approx(mann_whitney_auc(yv, pv), abs=1e-6)

    # predict: probabilities, ids first, the same numbers as the test report
    pred = in_process("maize_ddp.predict", out, "--data", stores["cls"], "--out", tmp_path / "p.tsv")
    assert pred.returncode == 0, pred.stderr
    header, pids, _, pprob = read_table(tmp_path / "p.tsv")
    assert header == "id\trow\ttrue\tprobability" and pids == ids
    np.testing.assert_allclose(pprob, prob, rtol=1e-6)

    # the Python API gives the model's logits; their sigmoid is the same table
    from maize_ddp import Run
    from maize_ddp.inference import probabilities

    api_ids, logits = Run.load(out).predict(stores["cls"])
    assert api_ids == pids and ((logits < 0) | (logits > 1)).any()  # logits, not probabilities
    np.testing.assert_allclose(probabilities(logits)[:, 0], pprob, rtol=1e-5)


def test_classification_refuses_labels_that_are_not_binary(stores, tmp_path):
    res = in_process("maize_ddp.train", "--data", stores["reg"], "--out", tmp_path / "run", "--task", "classification",
                     *TINY)
    err = res.stderr.strip()
    assert res.returncode == 1 and len(err.splitlines()) == 1, err
    assert err.startswith(f"error: {stores['reg']}: --task classification needs labels 0 or 1"), err
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_roc_curve_area_is_the_auroc():
    from maize_ddp.plots import roc_points

    rng = np.random.default_rng(3)
    y = (rng.random(200) < 0.3).astype(float)
    score = np.round(rng.random(200) + 0.4 * y, 1)  # ties: diagonal steps, which count half
    fpr, tpr = roc_points(y, score)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
    assert np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2) == pytest.approx(mann_whitney_auc(y, score), rel=1e-12)
