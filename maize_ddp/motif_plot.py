"""One pattern's figure: its contribution weight matrix (CWM: the mean contribution of each base,
letters above the axis raise the prediction, below lower it) and its information-content logo
(letter heights = frequency x bits), drawn with matplotlib letters, as interpret's logos are."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from maize_ddp.attribution_plot import COLOURS, FONT, plt  # matplotlib on Agg
from maize_ddp.checkpoint import atomic_write_bytes
from matplotlib.patches import PathPatch
from matplotlib.textpath import TextPath
from matplotlib.transforms import Affine2D

BASES = "ACGT"


def _stack(ax, matrix: np.ndarray) -> None:
    """Letters of a [4, w] matrix, per column the positive ones stacked up and the negative down,
    smallest nearest the axis."""
    for j in range(matrix.shape[1]):
        up = down = 0.0
        for k in np.argsort(np.abs(matrix[:, j])):
            v = float(matrix[k, j])
            if v > 0:
                _letter(ax, BASES[k], j, up, v)
                up += v
            elif v < 0:
                down += v
                _letter(ax, BASES[k], j, down, -v)
    low = min(0.0, float(np.where(matrix < 0, matrix, 0).sum(axis=0).min(initial=0)))
    high = max(0.0, float(np.where(matrix > 0, matrix, 0).sum(axis=0).max(initial=0)))
    pad = 0.05 * ((high - low) or 1.0)
    ax.set_xlim(0, matrix.shape[1])
    ax.set_ylim(low - pad, high + pad)
    ax.axhline(0, color="k", lw=0.5)


def _letter(ax, char: str, x: float, bottom: float, height: float) -> None:
    """`char` upright, filling [x, x+1] wide and [bottom, bottom+height] tall."""
    path = TextPath((0, 0), char, size=1, prop=FONT)
    box = path.get_extents()
    t = Affine2D().translate(-box.x0, -box.y0).scale(0.9 / box.width, height / box.height).translate(x + 0.05, bottom)
    ax.add_patch(PathPatch(t.transform_path(path), color=COLOURS.get(char, "k"), lw=0))


def logo_figure(path: Path, cwm: np.ndarray, ppm: np.ndarray, title: str) -> None:
    """cwm, ppm: [4, w]. Writes a PNG atomically."""
    width = cwm.shape[1]
    fig, axes = plt.subplots(2, 1, figsize=(max(5.0, 0.45 * width + 1.5), 4.4))
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
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
