"""The figures of a run: true vs predicted on test (a ROC curve for classification), and the
learning curves.

Figures are drawn with matplotlib's object API, not pyplot: no global backend is chosen (a notebook
keeps its own), nothing is left open, and matplotlib is imported only when a figure is drawn, so a
rank or a data-loader worker that draws none does not pay for it.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from maize_ddp.checkpoint import atomic_write_bytes


def new_figure(**kw):
    """A matplotlib Figure that belongs to no pyplot state (savefig renders PNG with Agg)."""
    from matplotlib.figure import Figure

    return Figure(**kw)


def save_png(fig, path: Path, **kw) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", **kw)
    atomic_write_bytes(path, buf.getvalue())


def _save(fig, path: Path) -> None:
    save_png(fig, path, dpi=120, bbox_inches="tight")


def scatter(path: Path, y_true: np.ndarray, y_pred: np.ndarray, pearson: float, r2: float, title: str = "test"):
    """Points for small n; hexbin density shading once points would hide each other."""
    fig = new_figure(figsize=(5.5, 5))
    ax = fig.subplots()
    lo = float(min(y_true.min(), y_pred.min()))
    hi = float(max(y_true.max(), y_pred.max()))
    if len(y_true) > 2000:
        hb = ax.hexbin(y_true, y_pred, gridsize=60, bins="log", mincnt=1, cmap="viridis")
        fig.colorbar(hb, ax=ax, label="count (log)")
    else:
        ax.scatter(y_true, y_pred, s=6, alpha=0.5, edgecolors="none")
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="y = x")
    ax.set_xlabel("true")
    ax.set_ylabel("predicted")
    ax.set_title(f"{title}: r = {pearson:.3f}, R² = {r2:.3f}, n = {len(y_true)}")
    ax.legend(loc="upper left")
    _save(fig, path)


def roc_points(y_true: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) at every distinct threshold, from (0, 0) to (1, 1)."""
    order = np.argsort(-np.asarray(score, dtype=np.float64), kind="stable")
    y, s = np.asarray(y_true)[order] == 1, np.asarray(score, dtype=np.float64)[order]
    last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]  # the last row of each tied score
    tp, fp = np.cumsum(y)[last], np.cumsum(~y)[last]
    return (np.r_[0, fp] / max(fp[-1], 1), np.r_[0, tp] / max(tp[-1], 1)) if len(s) else (np.zeros(1), np.zeros(1))


def roc(path: Path, y_true: np.ndarray, prob: np.ndarray, auroc: float, title: str = "test", curves=None):
    """The ROC curve; `curves` adds more as (label, y, score) triples (cv_report: one per fold)."""
    fig = new_figure(figsize=(5.5, 5))
    ax = fig.subplots()
    for label, y, s in curves or ():
        ax.plot(*roc_points(y, s), lw=1, alpha=0.6, label=label)
    ax.plot(*roc_points(y_true, prob), lw=2, color="k" if curves else "C0", label=f"auROC {auroc:.3f}")
    ax.plot([0, 1], [0, 1], "k--", lw=1, alpha=0.5)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"{title}: auROC = {auroc:.3f}, n = {len(y_true)}")
    ax.legend(loc="lower right", fontsize="small")
    _save(fig, path)


def curves(path: Path, history: list[dict]):
    """Losses and the validation score (Pearson r, or auROC for a classification run)."""
    epochs = [h["epoch"] for h in history]
    classification = bool(history) and "val_auroc" in history[0]
    fig = new_figure(figsize=(10, 4), layout="constrained")  # the right panel's label clear of the left
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(epochs, [h["train_loss"] for h in history], "o-", label="train")
    ax1.plot(epochs, [h["val_loss"] for h in history], "o-", label="validation")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("BCE loss" if classification else "MSE loss")
    ax1.legend()
    ax2.plot(epochs, [h["val_auroc" if classification else "val_pearson"] for h in history], "o-", color="C2")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("validation auROC" if classification else "validation Pearson r")
    for ax in (ax1, ax2):
        ax.xaxis.get_major_locator().set_params(integer=True)  # epochs: no 1.5
    _save(fig, path)
