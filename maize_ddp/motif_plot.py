"""One pattern's figure: its contribution weight matrix (CWM: the mean contribution of each base,
letters above the axis raise the prediction, below lower it) and its information-content logo
(letter heights = frequency x bits), drawn with matplotlib letters, as interpret's logos are."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from maize_ddp.attribution_plot import letter_at
from maize_ddp.plots import new_figure, save_png

BASES = "ACGT"


def _stack(ax, matrix: np.ndarray) -> None:
    """Letters of a [4, w] matrix, per column the positive ones stacked up and the negative down,
    smallest nearest the axis."""
    for j in range(matrix.shape[1]):
        up = down = 0.0
        for k in np.argsort(np.abs(matrix[:, j])):
            v = float(matrix[k, j])
            if v > 0:
                letter_at(ax, BASES[k], j, up, v)
                up += v
            elif v < 0:
                down += v
                letter_at(ax, BASES[k], j, down, -v)
    low = min(0.0, float(np.where(matrix < 0, matrix, 0).sum(axis=0).min(initial=0)))
    high = max(0.0, float(np.where(matrix > 0, matrix, 0).sum(axis=0).max(initial=0)))
    pad = 0.05 * ((high - low) or 1.0)
    ax.set_xlim(0, matrix.shape[1])
    ax.set_ylim(low - pad, high + pad)
    ax.axhline(0, color="k", lw=0.5)


def logo_figure(path: Path, cwm: np.ndarray, ppm: np.ndarray, title: str) -> None:
    """cwm, ppm: [4, w]. Writes a PNG atomically."""
    width = cwm.shape[1]
    fig = new_figure(figsize=(max(5.0, 0.45 * width + 1.5), 4.4))
    axes = fig.subplots(2, 1)
    _stack(axes[0], cwm)
    axes[0].set_ylabel("contribution")
    p = np.clip(ppm, 1e-9, 1)
    bits = 2 + (p * np.log2(p)).sum(axis=0)
    _stack(axes[1], ppm * bits)
    axes[1].set_ylim(0, 2)
    axes[1].set_ylabel("bits")
    axes[1].set_xlabel("position in the pattern's core")
    axes[0].set_title(title, fontsize=9)
    for ax in axes:
        ax.set_xticks(np.arange(width) + 0.5, [str(i) for i in range(width)], fontsize=7)
    fig.tight_layout()
    save_png(fig, path, dpi=90)
