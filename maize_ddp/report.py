"""Evaluation on every sample exactly once, and the test report (the trainer's and evaluate's).

Each rank runs the unwrapped model over its share of the split (shares may differ in size, so
there is no collective inside the loop), folds the predictions into exact float64 moments and, for
the report, keeps (row, true, predicted). After the loop the moments are merged across ranks;
rank 0 gathers the rows for Spearman, the predictions file and the scatter plot.

A classification run (--task classification) outputs logits; here they become probabilities
(sigmoid), and accuracy and auROC are computed once on the (label, probability) arrays gathered
from every rank: auROC depends on ranks, which no per-rank summary can merge exactly.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from maize_ddp import distributed, errors, plots, progress
from maize_ddp.checkpoint import atomic_write_text
from maize_ddp.inference import Predictor, probabilities, target_columns
from maize_ddp.data import read_ids
from maize_ddp.metrics import RegressionMoments, bce_with_logits, binary_summary, merge_all, not_binary

TASKS = ("regression", "classification")


class LabelError(errors.Error, ValueError):
    """Labels a classification run cannot use (not 0/1)."""


def check_binary(y: np.ndarray, where, split: str) -> None:
    row = not_binary(y)
    if row is not None:
        raise LabelError(f"{where}: {split} row {row} has label {y[row].tolist()}; a classification run needs "
                         "labels 0 or 1 (convert.genome_to_npz --classes quartiles makes them)")


def predict_batches(predictor: Predictor, loader, keep=False, show: bool = False):
    """Predict a loader's batches of (codes, y, rows). Returns local moments and, with
    keep=True, this rank's (rows, y, predictions) arrays. `show`: a progress bar (rank 0)."""
    moments = None
    kept = []
    batches = progress.bar(loader, total=len(loader), desc=f"predicting {loader.info.path.name}", unit="batches",
                           enabled=show)
    for (y, rows), pred in predictor.batches(((y, rows), codes) for codes, y, rows in batches):
        y = y.numpy()
        batch = RegressionMoments.of_batch(y, pred)
        moments = batch if moments is None else moments.merge(batch)
        if keep:
            kept.append((rows.numpy(), y, pred))
    if moments is None:
        moments = RegressionMoments.zeros(loader.info.num_targets)
    if not keep:
        return moments, None
    if kept:
        return moments, tuple(np.concatenate(parts) for parts in zip(*kept))
    t = loader.info.num_targets
    return moments, (np.zeros(0, np.int64), np.zeros((0, t), np.float32), np.zeros((0, t), np.float32))


def evaluate_split(d, predictor: Predictor, loader, task="regression") -> dict:
    """Exact metrics over the whole split; every rank gets the same numbers."""
    if task == "classification":
        return classify_split(d, predictor, loader)
    local, _ = predict_batches(predictor, loader)
    parts = distributed.all_gather_objects(d, local.to_array())
    return merge_all([RegressionMoments.from_array(p) for p in parts]).summary()


def classify_split(d, predictor: Predictor, loader) -> dict:
    """Accuracy, auROC and BCE of a split: every rank gathers every rank's (labels, logits), so
    every rank computes the same exact figures (and takes the same early-stopping decision)."""
    _, (_, y, logits) = predict_batches(predictor, loader, keep=True)
    parts = distributed.all_gather_objects(d, (y, logits))
    y, logits = (np.concatenate(p) for p in zip(*parts))
    check_binary(y, loader.info.path, loader.split)
    return {**binary_summary(y, probabilities(logits)), "bce": bce_with_logits(y, logits)}


class ReportError(errors.Error):
    pass


def test_report(d, predictor: Predictor, loader, out_dir: Path, split="test", extra: dict | None = None,
                task="regression") -> dict | None:
    """Metrics, predictions in source order with each row's id, and the scatter plot; files
    written by rank 0."""
    rc_average = predictor.rc_average
    local, (rows, y, pred) = predict_batches(predictor, loader, keep=True, show=d.is_main)
    parts = distributed.all_gather_objects(d, (local.to_array(), rows, y, pred))
    if not d.is_main:
        return None
    moments = merge_all([RegressionMoments.from_array(p[0]) for p in parts])
    rows = np.concatenate([p[1] for p in parts])
    order = np.argsort(rows, kind="stable")
    rows, y, pred = rows[order], np.concatenate([p[2] for p in parts])[order], np.concatenate([p[3] for p in parts])[order]
    if not np.array_equal(rows, np.arange(loader.info.splits[split].n)):
        raise RuntimeError(f"evaluation did not cover every {split} row exactly once")
    bad = ~np.isfinite(pred).all(axis=1)
    if bad.any():  # a report of NaN metrics would look complete
        raise ReportError(f"{out_dir}: the model predicts NaN or inf for {int(bad.sum())} of {len(pred)} {split} rows "
                          "(first: row {}); its weights are damaged or training diverged: no report written"
                          .format(int(rows[int(np.argmax(bad))])))
    ids = read_ids(loader.info, split)  # first: a damaged id file must fail before any file is written
    if task == "classification":
        return classification_report(out_dir, split, ids[rows], rows, y, pred, rc_average, loader.info, extra)
    summary = moments.summary()
    from scipy import stats  # here: its import costs every rank ~0.5 s, and only the report needs it

    spearman = [float(stats.spearmanr(y[:, t], pred[:, t])[0]) for t in range(y.shape[1])]
    report = {"split": split, "n": summary["n"], "pearson": summary["pearson"], "spearman": float(np.mean(spearman)),
              "r2": summary["r2"], "mse": summary["mse"], "rc_average": rc_average,
              "per_target": {**summary["per_target"], "spearman": spearman}, **(extra or {})}
    out_dir = Path(out_dir)
    prefix = "test" if split == "test" else split
    # rows run 0..n-1, so ids[rows] is ids: the table joins to genes by id. The metrics file, which
    # says the report is complete, is written last.
    atomic_write_text(out_dir / f"{prefix}_predictions.tsv",
                      predictions_table(ids[rows], rows, y, pred, origin=_origin_of(loader.info)))
    plots.scatter(out_dir / ("scatter.png" if split == "test" else f"scatter_{split}.png"),
                  y[:, 0], pred[:, 0], summary["per_target"]["pearson"][0], summary["per_target"]["r2"][0], split)
    atomic_write_text(out_dir / f"{prefix}_metrics.json", json.dumps(report, indent=2) + "\n")
    return report


def classification_report(out_dir, split, ids, rows, y, logits, rc_average, info, extra) -> dict:
    """Accuracy and auROC on the probabilities exactly as the predictions table holds them, the
    table, and the ROC curve; the metrics file, which says the report is complete, comes last."""
    check_binary(y, info.path, split)
    prob = probabilities(logits)
    summary = binary_summary(y, prob)
    report = {"split": split, "task": "classification", "n": summary["n"], "accuracy": summary["accuracy"],
              "auroc": summary["auroc"], "positives": summary["positives"], "bce": bce_with_logits(y, logits),
              "rc_average": rc_average, "per_target": summary["per_target"], **(extra or {})}
    out_dir = Path(out_dir)
    prefix = "test" if split == "test" else split
    atomic_write_text(out_dir / f"{prefix}_predictions.tsv",
                      predictions_table(ids, rows, y, prob, "probability", _origin_of(info)))
    plots.roc(out_dir / ("roc.png" if split == "test" else f"roc_{split}.png"), y[:, 0], prob[:, 0],
              summary["per_target"]["auroc"][0], split)
    atomic_write_text(out_dir / f"{prefix}_metrics.json", json.dumps(report, indent=2) + "\n")
    return report


def _origin_of(info) -> dict | None:
    """The store's origin (maize_ddp.origin), None where it recorded none."""
    origin = getattr(getattr(info, "meta", None), "origin", None)
    return origin if isinstance(origin, dict) else None


def describe_report(split: str, report: dict) -> str:
    """The report's one summary line."""
    if report.get("task") == "classification":
        return (f"{split}: n {report['n']}  accuracy {report['accuracy']:.4f}  auroc {report['auroc']:.4f}  "
                f"bce {report['bce']:.4f}")
    return (f"{split}: n {report['n']}  pearson {report['pearson']:.4f}  spearman {report['spearman']:.4f}  "
            f"r2 {report['r2']:.4f}  mse {report['mse']:.4f}")


def predictions_table(ids, rows, y, pred, output: str = "predicted", origin: dict | None = None) -> str:
    """TSV: id, row in the split, then true and predicted value(s) per target (`output` names the
    predicted column: "probability" for a classification run; `origin`, the store's, the targets)."""
    t = y.shape[1]
    cols = target_columns("true", origin, t) + target_columns(output, origin, t)
    lines = ["id\trow\t" + "\t".join(cols)]
    lines += ["\t".join([i, str(r)] + [f"{v:.9g}" for v in yt] + [f"{v:.9g}" for v in pt])
              for i, r, yt, pt in zip(ids.tolist(), rows.tolist(), y, pred)]
    return "\n".join(lines) + "\n"
