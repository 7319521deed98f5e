"""Cross-validation: launch/cv.sh over genome_to_npz folds, resumable fold by fold, and
maize_ddp.cv_report's pooled metrics (recomputed on the concatenated predictions: scipy reference)."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from maize_ddp import cv_report

sys.path.insert(0, str(Path(__file__).parent))
from test_genome_to_npz import write_inputs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CV = ROOT / "launch" / "cv.sh"
TINY = ["--pool1ks", "2", "--pool2ks", "2", "--pool3ks", "2", "--convdc", "2", "--conv1kc", "16", "--conv2kc", "16",
        "--conv3kc", "16", "--convdkc", "8", "--conv4kc", "8", "--batch-size", "16", "--warmup-steps", "2",
        "--bn-recalibration-batches", "1", "--epochs", "1"]


def make_folds(root: Path, folds: int = 3, genes: int = 96) -> Path:
    """A one-chromosome genome with `genes` genes 400 bp apart, 150 bp promoter windows, K folds."""
    from convert.genome_to_npz import WindowGeometry, build_dataset

    rng = random.Random(0)
    seq = "".join(rng.choice("ACGT") for _ in range(400 * genes + 400))
    rows = [("chr1", 200 + 400 * i, 300 + 400 * i, rng.choice("+-"), f"g{i:03d}") for i in range(genes)]
    table = {g: [rng.random() * 100, rng.random()] for *_, g in rows}
    fasta, gff, expr = write_inputs(root, {"chr1": seq}, rows, table)
    out = root / "folds"
    build_dataset(fasta, gff, expr, out, geometry=WindowGeometry(100, 50, promoter_only=True),
                  id_attribute="locus_tag", targets={"tpm": ["s1"]}, folds=folds)
    return out


def cv(folds, runs, *flags, **env):
    """launch/cv.sh with a plain one-process launcher (torchrun's start-up is what test_slurm's
    array job pays for: there each fold goes through launch/local.sh)."""
    launcher = Path(runs).parent / "train.sh"
    launcher.write_text(f"#!/bin/sh\nexec {sys.executable} -m maize_ddp.train \"$@\"\n")
    launcher.chmod(0o755)
    return subprocess.run(["bash", str(CV), str(folds), str(runs), *TINY, *flags], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1", "LAUNCHER": str(launcher), **env})


def test_cv_trains_every_fold_resumes_and_reports(tmp_path):
    folds, runs = make_folds(tmp_path, folds=3, genes=60), tmp_path / "runs"
    for fold in ("0", "1"):  # as array tasks would: one fold each, no report yet
        res = cv(folds, runs, FOLD=fold)
        assert res.returncode == 0, res.stderr[-3000:]
        assert f"{int(fold) + 1} of 3 folds finished" in res.stdout
    assert not (runs / "fold-2").exists() and not (runs / "cv_metrics.tsv").exists()
    # fold 1 as a killed run leaves it: a checkpoint, no test report
    (runs / "fold-1" / "test_metrics.json").unlink()
    rest = cv(folds, runs)
    assert rest.returncode == 0, rest.stderr[-3000:]
    assert "fold-0: finished" in rest.stdout and "fold-1: resuming" in rest.stdout
    assert "fold-2: training" in rest.stdout
    table = (runs / "cv_metrics.tsv").read_text().splitlines()
    assert table[0].split("\t")[:3] == ["fold", "n", "pearson"]
    assert [line.split("\t")[0] for line in table[1:]] == ["fold-0", "fold-1", "fold-2", "pooled",
                                                           "mean of folds", "sd over folds"]
    pooled = (runs / "cv_predictions.tsv").read_text().splitlines()
    ids = [line.split("\t")[0] for line in pooled[1:]]
    tested = [line.split("\t")[2] for f in range(3)
              for line in (folds / f"fold-{f}" / "genes.tsv").read_text().splitlines()[1:] if line.startswith("test")]
    assert ids == tested and len(set(ids)) == len(ids)  # every tested gene once, ids first
    assert (runs / "cv.png").stat().st_size > 0 and (runs / "cv_metrics.md").is_file()


def test_cv_refuses_a_folder_without_folds(tmp_path):
    res = cv(tmp_path, tmp_path / "runs")
    assert res.returncode == 2 and res.stderr.strip() == (
        f"error: {tmp_path}/folds.json: not found (make the folds with python -m convert.genome_to_npz "
        f"--folds K --out {tmp_path})")
    res = cv(tmp_path, tmp_path / "runs", "--out", "x")
    assert res.returncode == 2 and res.stderr.startswith("error: --out: cv.sh chooses each fold's --data"), res.stderr


@pytest.mark.parametrize("text,message", [
    ("{not json", "not a genome_to_npz folds description (JSONDecodeError"),
    ('{"folds": 3}', "not a genome_to_npz folds description (KeyError"),
    ('{"fold_list": []}', "lists no fold"),
    ('{"fold_list": [{"folder": "../x"}]}', "fold folder '../x' is not a plain folder name"),
    ('{"fold_list": [{"folder": "/tmp"}]}', "fold folder '/tmp' is not a plain folder name"),
])
def test_cv_refuses_a_damaged_or_crafted_folds_json_in_one_line(tmp_path, text, message):
    (tmp_path / "folds.json").write_text(text)
    res = cv(tmp_path, tmp_path / "runs")
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert res.stderr.startswith(f"error: {tmp_path}/folds.json: {message}"), res.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path.parent / "x").exists()


# ---- cv_report against references ---------------------------------------------------------------
def fake_run(folder: Path, task: str, ids, y, p):
    folder.mkdir(parents=True)
    (folder / "test_metrics.json").write_text(json.dumps({"task": task}))
    name = "probability" if task == "classification" else "predicted"
    (folder / "test_predictions.tsv").write_text(
        f"id\trow\ttrue\t{name}\n" + "".join(f"{i}\t{r}\t{a:.17g}\t{b:.17g}\n" for r, (i, a, b) in enumerate(zip(ids, y, p))))


def test_pooled_regression_is_computed_on_the_concatenation(tmp_path):
    rng = np.random.default_rng(0)
    sizes, ys, ps = (50, 31, 77), [], []
    for k, n in enumerate(sizes):
        y = rng.normal(loc=k, size=n)  # fold means differ: pooling is not averaging
        p = 0.5 * y + rng.normal(size=n)
        ys.append(y), ps.append(p)
        fake_run(tmp_path / f"fold-{k}", "regression", [f"g{k}_{i}" for i in range(n)], y, p)
    assert cv_report.main([str(tmp_path / f"fold-{k}") for k in range(3)] + ["--out", str(tmp_path / "r")]) == 0
    rows = {line.split("\t")[0]: line.split("\t") for line in (tmp_path / "r" / "cv_metrics.tsv").read_text().splitlines()}
    y, p = np.concatenate(ys), np.concatenate(ps)
    assert float(rows["pooled"][2]) == pytest.approx(stats.pearsonr(y, p)[0], abs=5e-5)
    assert float(rows["pooled"][3]) == pytest.approx(stats.spearmanr(y, p)[0], abs=5e-5)
    assert float(rows["pooled"][4]) == pytest.approx(1 - ((y - p) ** 2).sum() / ((y - y.mean()) ** 2).sum(), abs=5e-5)
    assert float(rows["fold-1"][2]) == pytest.approx(stats.pearsonr(ys[1], ps[1])[0], abs=5e-5)
    folds_r = [stats.pearsonr(a, b)[0] for a, b in zip(ys, ps)]
    assert float(rows["mean of folds"][2]) == pytest.approx(np.mean(folds_r), abs=5e-5)
    assert int(rows["pooled"][1]) == sum(sizes)


def test_pooled_auroc_equals_mann_whitney(tmp_path):
    rng = np.random.default_rng(1)
    ys, ps = [], []
    for k in range(2):
        y = (rng.random(60) < 0.5).astype(float)
        p = np.clip(0.3 * y + rng.random(60) * 0.7 + 0.1 * k, 0, 1)
        ys.append(y), ps.append(p)
        fake_run(tmp_path / f"f{k}", "classification", [f"g{k}_{i}" for i in range(60)], y, p)
    task, folds, pooled, _ = cv_report.gather([tmp_path / "f0", tmp_path / "f1"])
    y, p = np.concatenate(ys), np.concatenate(ps)
    u = stats.mannwhitneyu(p[y == 1], p[y == 0]).statistic / ((y == 1).sum() * (y == 0).sum())
    assert task == "classification" and pooled["auroc"] == pytest.approx(u, rel=1e-12)
    assert pooled["accuracy"] == pytest.approx(np.mean((p >= 0.5) == (y == 1)), rel=1e-12)


def test_report_errors_name_the_problem(tmp_path, capsys):
    fake_run(tmp_path / "a", "regression", ["g1", "g2", "g3"], [1.0, 2, 3], [1.0, 2, 4])
    fake_run(tmp_path / "b", "regression", ["g3", "g4", "g5"], [1.0, 2, 3], [1.0, 2, 4])
    fake_run(tmp_path / "c", "classification", ["g9", "g8"], [1.0, 0], [0.9, 0.1])
    (tmp_path / "d").mkdir()
    for runs, message in ((["a", "b"], "test row 'g3' is also a test row of"),
                          (["a", "c"], "the runs mix tasks"),
                          (["a", "d"], "test_metrics.json: not found")):
        assert cv_report.main([str(tmp_path / r) for r in runs] + ["--out", str(tmp_path / "r")]) == 1
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "r" / "cv_metrics.tsv").exists()


@pytest.mark.parametrize("name", ["cv_metrics.tsv", "cv_metrics.md", "cv_predictions.tsv", "cv.png"])
def test_report_never_writes_over_a_users_file(tmp_path, capsys, name):
    for k in range(2):
        fake_run(tmp_path / f"f{k}", "regression", [f"g{k}_{i}" for i in range(5)], [1.0, 2, 3, 4, 5],
                 [1.0, 2, 4, 3, 5])
    out = tmp_path / "out"
    out.mkdir()
    (out / name).write_text("my own table\n")
    assert cv_report.main([str(tmp_path / "f0"), str(tmp_path / "f1"), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {out / name}: exists and is not part of a cv_report report"), err
    assert [p.name for p in out.iterdir()] == [name] and (out / name).read_text() == "my own table\n"
    # a report of its own is replaced
    (out / name).unlink()
    assert cv_report.main([str(tmp_path / "f0"), str(tmp_path / "f1"), "--out", str(out)]) == 0
    assert cv_report.main([str(tmp_path / "f0"), str(tmp_path / "f1"), "--out", str(out)]) == 0


def test_cv_refuses_runs_among_the_folds_and_other_settings(tmp_path):
    folds = make_folds(tmp_path, folds=3, genes=60)
    res = cv(folds, folds / "runs")
    assert res.returncode == 2 and "the runs folder is or lies inside the folds folder" in res.stderr, res.stderr
    assert not (folds / "runs").exists()
    runs = tmp_path / "runs"
    runs.mkdir()
    # an earlier start of this cross-validation trained its folds with other flags
    (runs / "cv_settings.txt").write_text(f"folds {folds.resolve()}\nflags --lr 0.1\n")
    res = cv(folds, runs)
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert "its folds were started with other settings (folds" in res.stderr and "--lr 0.1" in res.stderr
    assert sorted(p.name for p in runs.iterdir()) == ["cv_settings.txt"]  # nothing trained, nothing converted
