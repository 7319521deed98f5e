"""Cross-validation report: per-fold and pooled test metrics of several runs, one table and one figure.

    python -m maize_ddp.cv_report RUN [RUN ...] [--out DIR]

Each RUN is a finished run folder (its test_metrics.json and test_predictions.tsv); typically
launch/cv.sh's RUNS_DIR/fold-*. Every fold's metrics are recomputed from its predictions table;
the pooled row is computed once on the concatenation of all folds' test predictions (not an
average of the folds' figures), which is what a leave-one-group-out evaluation reports. A mean
and standard deviation over folds are given beside it.

Writes DIR/cv_metrics.tsv, DIR/cv_metrics.md, DIR/cv_predictions.tsv (id, fold, true, predicted
or probability, for every test row of every fold) and DIR/cv.png (classification: the ROC
curve of each fold and the pooled one; regression: pooled true vs predicted). DIR defaults to
the runs' common parent folder.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
from scipy import stats

from maize_ddp import errors, outputs, plots
from maize_ddp.checkpoint import atomic_write_text
from maize_ddp.metrics import RegressionMoments, binary_summary
from maize_ddp.process_exit import exit_process

COLUMNS = {"regression": ("n", "pearson", "spearman", "r2", "mse"),
           "classification": ("n", "positives", "accuracy", "auroc")}


class ReportError(errors.Error, ValueError):
    pass


def read_run(run: Path) -> tuple[str, list[str], np.ndarray, np.ndarray, list[str]]:
    """(task, ids, true [N, T], predicted [N, T], the table's names of those columns) of a finished
    run's test report."""
    metrics, table = run / "test_metrics.json", run / "test_predictions.tsv"
    for path in (metrics, table):
        if not path.is_file():
            raise ReportError(f"{path}: not found (is {run} a finished run?)")
    try:
        task = json.loads(metrics.read_text()).get("task", "regression")
        lines = table.read_text().splitlines()
    except (OSError, ValueError, AttributeError) as e:
        raise ReportError(f"{metrics}: unreadable ({e})") from None
    header = lines[0].split("\t") if lines else []
    true = [i for i, c in enumerate(header) if c.startswith("true")]
    if header[:2] != ["id", "row"] or not true or len(header) != 2 + 2 * len(true):
        raise ReportError(f"{table}: not a test predictions table (header {header[:4]})")
    ids, values = [], []
    for n, line in enumerate(lines[1:], 2):
        fields = line.split("\t")
        try:
            values.append([float(v) for v in fields[2:]])
        except ValueError:
            values.append(None)
        if len(fields) != len(header) or values[-1] is None:
            raise ReportError(f"{table}: line {n} is not {len(header)} tab-separated fields with numbers")
        ids.append(fields[0])
    values = np.array(values, dtype=np.float64).reshape(len(ids), len(header) - 2)
    t = len(true)
    return task, ids, values[:, :t], values[:, t:], header[2:]


def fold_metrics(task: str, y: np.ndarray, pred: np.ndarray) -> dict:
    """The metrics of one set of rows (mean over targets), float64."""
    if task == "classification":
        s = binary_summary(y, pred)
        return {k: s[k] for k in COLUMNS[task]}
    s = RegressionMoments.of_batch(y, pred).summary()
    spearman = np.mean([stats.spearmanr(y[:, t], pred[:, t])[0] for t in range(y.shape[1])])
    return {"n": s["n"], "pearson": s["pearson"], "spearman": float(spearman), "r2": s["r2"], "mse": s["mse"]}


def gather(runs: list[Path]) -> tuple[str, list[dict], dict, dict]:
    """(task, per-fold rows, pooled row, pooled arrays)."""
    folds, tasks, seen, headers = [], set(), {}, set()
    all_ids, all_y, all_p, fold_of = [], [], [], []
    for run in runs:
        task, ids, y, pred, columns = read_run(run)
        tasks.add(task)
        headers.add(tuple(columns))
        for i in ids:
            if i in seen:
                raise ReportError(f"{run}: test row {i!r} is also a test row of {seen[i]}; folds must not overlap")
            seen[i] = run
        folds.append({"fold": run.name, **fold_metrics(task, y, pred)})
        all_ids += ids
        all_y.append(y)
        all_p.append(pred)
        fold_of += [run.name] * len(ids)
    if len(tasks) > 1:
        raise ReportError(f"the runs mix tasks ({', '.join(sorted(tasks))}); report one task at a time")
    if len({y.shape[1] for y in all_y}) > 1:
        raise ReportError("the runs have different numbers of targets")
    if len(headers) > 1:
        raise ReportError(f"the runs name their targets differently ({'; '.join(' '.join(h) for h in sorted(headers))})")
    y, pred = np.concatenate(all_y), np.concatenate(all_p)
    pooled = {"fold": "pooled", **fold_metrics(task, y, pred)}
    return task, folds, pooled, {"ids": all_ids, "fold": fold_of, "y": y, "pred": pred, "columns": columns}


def spread(task: str, folds: list[dict]) -> list[dict]:
    """Mean and sample sd over folds of each metric (n: the total)."""
    keys = COLUMNS[task][1:] if task == "regression" else COLUMNS[task][2:]
    mean = {"fold": "mean of folds", "n": sum(f["n"] for f in folds)}
    sd = {"fold": "sd over folds", "n": ""}
    for k in keys:
        values = np.array([f[k] for f in folds], dtype=np.float64)
        mean[k], sd[k] = float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else float("nan")
    if task == "classification":
        mean["positives"] = sum(f["positives"] for f in folds)
        sd["positives"] = ""
    return [mean, sd]


def fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def tables(task: str, rows: list[dict]) -> tuple[str, str]:
    cols = ["fold", *COLUMNS[task]]
    tsv = "\n".join(["\t".join(cols)] + ["\t".join(fmt(r[c]) for c in cols) for r in rows]) + "\n"
    md = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    md += ["| " + " | ".join((f"**{fmt(r[c])}**" if r["fold"] == "pooled" and c not in ("fold", "n", "positives")
                              else fmt(r[c]))
                             for c in cols) + " |" for r in rows]
    return tsv, "\n".join(md) + "\n"


def predictions(pooled: dict) -> str:
    """cv_predictions.tsv: id, fold, then the runs' own true and predicted columns."""
    y, pred = pooled["y"], pooled["pred"]
    lines = ["id\tfold\t" + "\t".join(pooled["columns"])]
    lines += ["\t".join([i, f] + [f"{v:.9g}" for v in yt] + [f"{v:.9g}" for v in pt])
              for i, f, yt, pt in zip(pooled["ids"], pooled["fold"], y, pred)]
    return "\n".join(lines) + "\n"


def figure(path: Path, task: str, pooled_row: dict, pooled: dict) -> None:
    y, pred = pooled["y"][:, 0], pooled["pred"][:, 0]
    if task == "classification":
        folds = np.array(pooled["fold"])
        curves = [(f"{name}", y[folds == name], pred[folds == name]) for name in dict.fromkeys(pooled["fold"])]
        plots.roc(path, y, pred, pooled_row["auroc"], "pooled test folds", curves=curves)
    else:
        plots.scatter(path, y, pred, pooled_row["pearson"], pooled_row["r2"], "pooled test folds")


def _ours(prefix: str):
    return lambda path: outputs.first_line(path).startswith(prefix)


# the report's files and the first line that says each is ours (the figure: when a table is)
REPORT_FILES = {"cv_metrics.tsv": _ours("fold\tn\t"), "cv_metrics.md": _ours("| fold | n |"),
                "cv_predictions.tsv": _ours("id\tfold\t")}


def check_out(out: Path) -> None:
    """Replace an earlier cross-validation report, never a user's files of the same names."""
    foreign = outputs.foreign_files(out, REPORT_FILES)
    if not foreign and (out / "cv.png").exists() and not any((out / n).exists() for n in REPORT_FILES):
        foreign = ["cv.png"]
    if foreign:
        raise ReportError(f"{out / foreign[0]}: exists and is not part of a cv_report report; not replacing it "
                          "(choose another --out)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m maize_ddp.cv_report", description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="finished run folders, one per fold")
    p.add_argument("--out", type=Path, help="report folder (default: the runs' common parent)")
    a = p.parse_args(argv)
    try:
        task, folds, pooled_row, pooled = gather(a.runs)
        out = a.out or Path(os.path.commonpath([r.resolve().parent for r in a.runs]))
        check_out(out)
        rows = [*folds, pooled_row, *spread(task, folds)]
        out.mkdir(parents=True, exist_ok=True)
        tsv, md = tables(task, rows)
        atomic_write_text(out / "cv_predictions.tsv", predictions(pooled))
        figure(out / "cv.png", task, pooled_row, pooled)
        atomic_write_text(out / "cv_metrics.md", md)
        atomic_write_text(out / "cv_metrics.tsv", tsv)  # last: the report is complete
    except (errors.Error, OSError) as e:
        print(f"error: {errors.describe(e)}", file=sys.stderr)
        return 1
    print(md, end="")
    print(f"-> {out}/cv_metrics.tsv, cv_metrics.md, cv_predictions.tsv, cv.png")
    return 0


if __name__ == "__main__":
    exit_process(main())
