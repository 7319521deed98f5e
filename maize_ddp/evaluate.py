"""Evaluation on every sample exactly once, and the test report.

    python -m maize_ddp.evaluate RUN_DIR|CKPT --data STORE [--split test] [--out DIR] [--rc-average]

The report goes to RUN/eval-STORE-SPLIT/ unless --out says where: the run's own test report,
written by the trainer, is never replaced unless --out names the run folder.

Each rank runs the unwrapped model over its share of the split (shares may differ in size, so
there is no collective inside the loop), folds the predictions into exact float64 moments and, for
the report, keeps (row, true, predicted). After the loop the moments are merged across ranks;
rank 0 gathers the rows for Spearman, the predictions file and the scatter plot.

A classification run (--task classification) outputs logits; here they become probabilities
(sigmoid), and accuracy and auROC are computed once on the (label, probability) arrays gathered
from every rank: auROC depends on ranks, which no per-rank summary can merge exactly.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from maize_ddp import checkpoint, distributed, errors, models, plots, progress
from maize_ddp.arguments import add_run_settings, count, positive_int
from maize_ddp.checkpoint import atomic_write_text, load
from maize_ddp.codes import reverse_complement
from maize_ddp.data.store import read_ids
from maize_ddp.metrics import RegressionMoments, bce_with_logits, binary_summary, merge_all, not_binary

TASKS = ("regression", "classification")


class LabelError(errors.Error, ValueError):
    """Labels a classification run cannot use (not 0/1)."""


def task_of(state: dict) -> str:
    """A checkpoint's task; runs from before classification existed are regression."""
    return state.get("config", {}).get("task", "regression")


def output_name(task: str) -> str:
    """The predictions column: a regression's value, a classification's probability of class 1."""
    return "probability" if task == "classification" else "predicted"


def probabilities(logits: np.ndarray) -> np.ndarray:
    """float32 sigmoid, as torch computes it: the probabilities written are those scored."""
    return torch.sigmoid(torch.from_numpy(np.ascontiguousarray(logits, dtype=np.float32))).numpy()


def check_binary(y: np.ndarray, where, split: str) -> None:
    row = not_binary(y)
    if row is not None:
        raise LabelError(f"{where}: {split} row {row} has label {y[row].tolist()}; a classification run needs "
                         "labels 0 or 1 (convert.genome_to_npz --classes quartiles makes them)")


def resolve_amp(amp: str, device: torch.device) -> str:
    """`auto` is fp32 (off) on GPUs and CPUs alike. On an H200, bf16 autocast was no faster than
    fp32 for this model (TF32 convolutions, small layers: launch-bound, not math-bound), only
    half the activation memory; on CPUs without bf16 units autocast emulates it and runs several
    times slower. Ask for --amp bf16 when memory is what limits the batch (docs/gpu.md)."""
    if amp == "auto":
        return "off"
    if amp == "fp16" and device.type != "cuda":
        raise errors.ConfigError("--amp fp16 needs a CUDA device; use --amp bf16 or off on CPU")
    return amp


def autocast(device: torch.device, amp: str):
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def forward(model, codes: torch.Tensor, amp: str, rc_average: bool) -> torch.Tensor:
    """Float32 predictions; with rc_average, the mean over each sequence and its reverse complement."""
    with autocast(codes.device, amp):
        pred = model(codes).float()
        if rc_average:
            pred = (pred + model(reverse_complement(codes)).float()) / 2
    return pred


def run_settings(state: dict, amp, rc_average, device) -> tuple[str, bool]:
    """Precision and RC averaging: as asked, else as the run was trained and reported."""
    trained = state.get("config", {})
    amp = resolve_amp(amp or trained.get("amp", "off"), device)
    return amp, trained.get("rc_average", False) if rc_average is None else rc_average


@torch.no_grad()
def predict_batches(model, loader, device, amp="off", rc_average=False, keep=False, show: bool = False):
    """Run the model over a loader yielding (codes, y, rows). Returns local moments and, with
    keep=True, this rank's (rows, y, predictions) arrays. `show`: a progress bar (rank 0)."""
    model.eval()
    moments = None
    kept = []
    for codes, y, rows in progress.bar(loader, total=len(loader), desc=f"predicting {loader.info.path.name}",
                                       unit="batches", enabled=show):
        pred = forward(model, codes.to(device, non_blocking=True), amp, rc_average)
        pred, y = pred.cpu().numpy(), y.numpy()
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


def evaluate_split(d, model, loader, amp="off", task="regression") -> dict:
    """Exact metrics over the whole split; every rank gets the same numbers."""
    if task == "classification":
        return classify_split(d, model, loader, amp)
    local, _ = predict_batches(model, loader, d.device, amp)
    parts = distributed.all_gather_objects(d, local.to_array())
    return merge_all([RegressionMoments.from_array(p) for p in parts]).summary()


def classify_split(d, model, loader, amp="off") -> dict:
    """Accuracy, auROC and BCE of a split: every rank gathers every rank's (labels, logits), so
    every rank computes the same exact figures (and takes the same early-stopping decision)."""
    _, (_, y, logits) = predict_batches(model, loader, d.device, amp, keep=True)
    parts = distributed.all_gather_objects(d, (y, logits))
    y, logits = (np.concatenate(p) for p in zip(*parts))
    check_binary(y, loader.info.path, loader.split)
    return {**binary_summary(y, probabilities(logits)), "bce": bce_with_logits(y, logits)}


class ReportError(errors.Error):
    pass


def test_report(d, model, loader, out_dir: Path, amp="off", rc_average=False, split="test",
                extra: dict | None = None, task="regression") -> dict | None:
    """Metrics, predictions in source order with each row's id, and the scatter plot; files
    written by rank 0."""
    local, (rows, y, pred) = predict_batches(model, loader, d.device, amp, rc_average, keep=True, show=d.is_main)
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
        return classification_report(out_dir, split, ids[rows], rows, y, pred, rc_average, loader.info.path, extra)
    summary = moments.summary()
    spearman = [float(stats.spearmanr(y[:, t], pred[:, t])[0]) for t in range(y.shape[1])]
    report = {"split": split, "n": summary["n"], "pearson": summary["pearson"], "spearman": float(np.mean(spearman)),
              "r2": summary["r2"], "mse": summary["mse"], "rc_average": rc_average,
              "per_target": {**summary["per_target"], "spearman": spearman}, **(extra or {})}
    out_dir = Path(out_dir)
    prefix = "test" if split == "test" else split
    # rows run 0..n-1, so ids[rows] is ids: the table joins to genes by id. The metrics file, which
    # says the report is complete, is written last.
    atomic_write_text(out_dir / f"{prefix}_predictions.tsv", predictions_table(ids[rows], rows, y, pred))
    plots.scatter(out_dir / ("scatter.png" if split == "test" else f"scatter_{split}.png"),
                  y[:, 0], pred[:, 0], summary["per_target"]["pearson"][0], summary["per_target"]["r2"][0], split)
    atomic_write_text(out_dir / f"{prefix}_metrics.json", json.dumps(report, indent=2) + "\n")
    return report


def classification_report(out_dir, split, ids, rows, y, logits, rc_average, where, extra) -> dict:
    """Accuracy and auROC on the probabilities exactly as the predictions table holds them, the
    table, and the ROC curve; the metrics file, which says the report is complete, comes last."""
    check_binary(y, where, split)
    prob = probabilities(logits)
    summary = binary_summary(y, prob)
    report = {"split": split, "task": "classification", "n": summary["n"], "accuracy": summary["accuracy"],
              "auroc": summary["auroc"], "positives": summary["positives"], "bce": bce_with_logits(y, logits),
              "rc_average": rc_average, "per_target": summary["per_target"], **(extra or {})}
    out_dir = Path(out_dir)
    prefix = "test" if split == "test" else split
    atomic_write_text(out_dir / f"{prefix}_predictions.tsv", predictions_table(ids, rows, y, prob, "probability"))
    plots.roc(out_dir / ("roc.png" if split == "test" else f"roc_{split}.png"), y[:, 0], prob[:, 0],
              summary["per_target"]["auroc"][0], split)
    atomic_write_text(out_dir / f"{prefix}_metrics.json", json.dumps(report, indent=2) + "\n")
    return report


def describe_report(split: str, report: dict) -> str:
    """The report's one summary line."""
    if report.get("task") == "classification":
        return (f"{split}: n {report['n']}  accuracy {report['accuracy']:.4f}  auroc {report['auroc']:.4f}  "
                f"bce {report['bce']:.4f}")
    return (f"{split}: n {report['n']}  pearson {report['pearson']:.4f}  spearman {report['spearman']:.4f}  "
            f"r2 {report['r2']:.4f}  mse {report['mse']:.4f}")


def predictions_table(ids, rows, y, pred, output: str = "predicted") -> str:
    """TSV: id, row in the split, then true and predicted value(s) per target (`output` names the
    predicted column: "probability" for a classification run)."""
    t = y.shape[1]
    cols = ["true", output] if t == 1 else [f"true_{i}" for i in range(t)] + [f"{output}_{i}" for i in range(t)]
    lines = ["id\trow\t" + "\t".join(cols)]
    lines += ["\t".join([i, str(r)] + [f"{v:.9g}" for v in yt] + [f"{v:.9g}" for v in pt])
              for i, r, yt, pt in zip(ids.tolist(), rows.tolist(), y, pred)]
    return "\n".join(lines) + "\n"


def model_from_checkpoint(state: dict, device, where="checkpoint", trust_code: bool = False):
    """The trained model a checkpoint holds, on `device` (a class outside maize_ddp only when the
    caller trusts the run: maize_ddp.models)."""
    where = checkpoint.checkpoint_file(where)
    try:
        model = models.from_checkpoint_config(state["config"], where, trust_code)
    except (KeyError, TypeError) as e:  # no settings, or ones no model takes
        raise checkpoint.CheckpointError(f"{where}: its model config cannot build a model ({e})") from None
    except errors.ConfigError as e:
        raise checkpoint.CheckpointError(str(e)) from None
    checkpoint.fit_weights(model, state["model"], where)
    return model.to(device)




def run_folder(checkpoint: Path) -> Path:
    """The run a checkpoint belongs to: RUN for RUN or RUN/checkpoints/X.pt, else the .pt's folder."""
    if checkpoint.is_dir():
        return checkpoint
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent


def default_out(checkpoint: Path, data: str, split: str) -> Path:
    """RUN/eval-STORE-SPLIT for the run's best checkpoint, RUN/eval-CKPT-STORE-SPLIT for another
    one (last.pt, say): beside the run's own report, never over it, nor over each other."""
    other = checkpoint.suffix == ".pt" and checkpoint.name != "best.pt"
    return run_folder(checkpoint) / f"eval-{checkpoint.stem + '-' if other else ''}{Path(data).name}-{split}"


def report_files(split: str) -> tuple[str, ...]:
    prefix = "test" if split == "test" else split
    figures = ("scatter.png", "roc.png") if split == "test" else (f"scatter_{split}.png", f"roc_{split}.png")
    return (f"{prefix}_predictions.tsv", f"{prefix}_metrics.json", *figures)


def check_out(out: Path, checkpoint_path: Path, data, split: str) -> None:
    """evaluate writes its report into `out` only where it destroys nothing of anyone else's: not
    inside (or over) its input store; not into another run's folder, nor into a folder a live run
    holds; over report files only when they are an evaluation of this checkpoint's run (or, in
    the run's own folder, its test report, which --out RUN asks to replace)."""
    from maize_ddp import outputs, runlock

    problem = outputs.overlap(out, [data])
    if problem:
        raise ReportError(problem.replace("choose an output", "choose an --out"))
    own_run = run_folder(checkpoint_path)
    holder = runlock.live_holder(out)
    if holder:
        raise ReportError(f"{out}: a live run holds this folder (pid {holder.get('pid')} on {holder.get('host')}); "
                          "evaluate when it has finished, or choose another --out")
    same_run = os.path.realpath(out) == os.path.realpath(own_run)
    if not same_run and ((out / "checkpoints").is_dir() or (out / "config.json").is_file()):
        raise ReportError(f"{out}: is another run's folder; choose another --out")
    metrics = next((out / name for name in report_files(split) if name.endswith("_metrics.json")))
    if metrics.exists():
        try:
            previous = json.loads(metrics.read_text())
        except (OSError, ValueError):
            previous = None
        if not isinstance(previous, dict) or "n" not in previous or "split" not in previous:
            raise ReportError(f"{metrics}: exists and is not an evaluation report; choose another --out")
        if not same_run and os.path.realpath(str(previous.get("data", ""))) != os.path.realpath(str(data)):
            raise ReportError(f"{out}: holds the evaluation of another store ({previous.get('data')}); choose "
                              "another --out")
    elif out.is_dir():
        found = [name for name in report_files(split) if (out / name).exists()]
        if found:
            raise ReportError(f"{out / found[0]}: exists and is not part of an evaluation report; choose "
                              "another --out")






def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m maize_ddp.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", type=Path, help="a run folder (uses checkpoints/best.pt) or a .pt file")
    p.add_argument("--data", required=True, help="a .zarr or .wds store")
    p.add_argument("--split", default="test", help="default: test")
    p.add_argument("--out", type=Path, default=None,
                   help="report folder (default: RUN/eval-STORE-SPLIT, so the run's own test report, "
                        "written by the trainer, is kept; give the run folder to replace it)")
    p.add_argument("--batch-size", type=positive_int, default=128, help="rows per forward pass (default 128)")
    p.add_argument("--num-workers", type=count, default=0, help="DataLoader workers per rank (default 0)")
    p.add_argument("--device", default="auto", help="auto (cuda when available) | cpu | cuda (default auto)")
    add_run_settings(p)
    a = p.parse_args(argv)
    return errors.run_main(lambda: evaluate(a), extra=(torch.distributed.DistError,))


def evaluate(a) -> str | None:
    """The command's work: the report's summary line (rank 0), None on other ranks."""
    from maize_ddp.data import make_loader, open_store

    d = distributed.init(a.device)
    try:
        state = load(a.checkpoint)
        model = model_from_checkpoint(state, d.device, a.checkpoint, a.trust_model_code)
        mc = state["config"]["model"]
        open_store(a.data).check(split=a.split, seq_len=mc["seq_len"], num_targets=mc["num_targets"])
        out = a.out or default_out(a.checkpoint, a.data, a.split)
        distributed.on_main(d, lambda: check_out(out, a.checkpoint, a.data, a.split))
        created = not out.exists()
        out.mkdir(parents=True, exist_ok=True)
        try:
            loader = make_loader(a.data, a.split, batch_size=a.batch_size, rank=d.rank, world_size=d.world_size,
                                 train=False, num_workers=a.num_workers, pin_memory=d.device.type == "cuda")
            amp, rc_average = run_settings(state, a.amp, a.rc_average, d.device)
            report = test_report(d, model, loader, out, amp, rc_average, split=a.split,
                                 extra={"checkpoint": str(a.checkpoint), "data": str(a.data)}, task=task_of(state))
        except BaseException:
            if created and d.is_main:
                with contextlib.suppress(OSError):
                    out.rmdir()  # a failed evaluation leaves no empty report folder (only an empty one goes)
            raise
    finally:
        distributed.shutdown(d)
    return f"{describe_report(a.split, report)}  -> {out}" if report else None


if __name__ == "__main__":
    sys.exit(main())
