"""The two figures of a run: true vs predicted on test, and the learning curves."""
from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from maize_ddp.checkpoint import atomic_write_bytes  # noqa: E402


def _save(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def scatter(path: Path, y_true: np.ndarray, y_pred: np.ndarray, pearson: float, r2: float, title: str = "test"):
    """Points for small n; hexbin density shading once points would hide each other."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
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


def curves(path: Path, history: list[dict]):
    epochs = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, [h["train_loss"] for h in history], "o-", label="train")
    ax1.plot(epochs, [h["val_loss"] for h in history], "o-", label="validation")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("MSE loss")
    ax1.legend()
    ax2.plot(epochs, [h["val_pearson"] for h in history], "o-", color="C2")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("validation Pearson r")
    _save(fig, path)
