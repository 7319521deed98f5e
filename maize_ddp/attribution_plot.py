"""One sequence's attribution figure: per method, the importance at each reference base along the
whole window with its landmarks (TSS, TTS, the N spacer), and a sequence-logo zoom on the most
important window, where each reference letter is as tall as its importance (down when negative).

A 3 kb window is too long for readable letters, hence the two scales.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.font_manager import FontProperties
from matplotlib.patches import Patch, PathPatch
from matplotlib.ticker import FuncFormatter
from matplotlib.textpath import TextPath
from matplotlib.transforms import Affine2D

from maize_ddp.plots import new_figure, save_png

COLOURS = {"A": "#109648", "C": "#255C99", "G": "#F7B32B", "T": "#D62839", "N": "#999999"}
FONT = FontProperties(family="DejaVu Sans", weight="bold")
ZOOM_PAD = 10  # bases shown either side of the top window


def letter_at(ax, char: str, x: float, bottom: float, height: float) -> None:
    """Draw `char` upright, filling [x, x+1] wide and [bottom, bottom + height] tall (height > 0)."""
    path = TextPath((0, 0), char, size=1, prop=FONT)
    box = path.get_extents()
    t = Affine2D().translate(-box.x0, -box.y0).scale(0.9 / box.width, height / box.height).translate(x + 0.05, bottom)
    ax.add_patch(PathPatch(t.transform_path(path), color=COLOURS.get(char, "k"), lw=0))


def letter(ax, char: str, x: float, height: float) -> None:
    """Draw `char` filling [x, x+1] wide and [0, height] tall (height < 0: below the axis, upright)."""
    letter_at(ax, char, x, min(0.0, height), abs(height))


def mark_landmarks(ax, marks: dict) -> None:
    for name, at in marks.items():
        if name == "spacer":
            ax.axvspan(at[0], at[1], color="0.85", zorder=0, label="N spacer")
        else:
            ax.axvline(at, color="k", ls="--", lw=0.8)
            ax.annotate(name, (at, 1), xycoords=("data", "axes fraction"), xytext=(2, -10),
                        textcoords="offset points", fontsize=8)


def position_label(x: float, marks: dict) -> str:
    """A window position as biologists read it: bp from the TSS (0 = the TSS base), and right of
    the N spacer bp from the TTS; the plain position when the data record no TSS."""
    if "TSS" not in marks:
        return f"{x:.0f}"
    if "TTS" in marks and "spacer" in marks and x >= marks["spacer"][1]:
        return f"TTS{x - marks['TTS']:+.0f}" if x != marks["TTS"] else "TTS"
    return f"{x - marks['TSS']:+.0f}" if x != marks["TSS"] else "TSS"


def tick_positions(marks: dict, lo: int, hi: int) -> list[int]:
    """Round distances from the TSS (and right of the spacer from the TTS) within [lo, hi)."""
    step = next((s for s in (1, 2, 5, 10, 20, 50, 100, 200, 250, 500, 1000, 2000, 5000) if (hi - lo) / s <= 8), 10000)
    if "TSS" not in marks:
        return list(range(lo - lo % step + (step if lo % step else 0), hi, step))
    parts = [(marks["TSS"], lo, hi)]
    if "TTS" in marks and "spacer" in marks:
        parts = [(marks["TSS"], lo, min(hi, marks["spacer"][0])), (marks["TTS"], max(lo, marks["spacer"][1]), hi)]
    ticks = []
    for origin, a, b in parts:
        first = origin + -((origin - a) // step) * step
        ticks += [x for x in range(first, b, step) if a <= x < b]
    return ticks


def axis_name(marks: dict) -> str:
    if "TSS" not in marks:
        return "position in the window (bp)"
    return "bp from the TSS" + (" (right of the N spacer: from the TTS)" if "TTS" in marks and "spacer" in marks else "")


def legend(ax, marks: dict, window) -> None:
    handles = [Patch(color="#b2182b", label="base raises the prediction"),
               Patch(color="#2166ac", label="base lowers it")]
    if "spacer" in marks:
        handles.append(Patch(color="0.85", label="N spacer"))
    if window is not None:
        handles.append(Patch(color="orange", alpha=0.25, label="top window (zoomed below)"))
    ax.legend(handles=handles, loc="lower left", fontsize=7, ncol=len(handles), frameon=False,
              bbox_to_anchor=(0, 1.0), borderaxespad=0.2)


def figure(path: Path, row_id: str, sequence: str, tracks: dict, marks: dict, window: tuple[int, int] | None,
           prediction: float) -> None:
    """tracks: method -> importance [L]; window: the top window (start, end) to zoom on."""
    methods = list(tracks)
    fig = new_figure(figsize=(10, 2.1 * (len(methods) + 1)))
    axes = fig.subplots(len(methods) + 1, 1, squeeze=False)
    axes = axes[:, 0]
    length = len(sequence)
    x = np.arange(length)
    for ax, method in zip(axes, methods):
        v = tracks[method]
        ax.fill_between(x, 0, np.where(v > 0, v, 0), step="mid", color="#b2182b", lw=0)
        ax.fill_between(x, 0, np.where(v < 0, v, 0), step="mid", color="#2166ac", lw=0)
        mark_landmarks(ax, marks)
        if window is not None:
            ax.axvspan(*window, color="orange", alpha=0.25, zorder=0)
        ax.set_xlim(0, length)
        ax.set_xticks(tick_positions(marks, 0, length))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: position_label(x, marks)))
        ax.set_ylabel(method)
        ax.axhline(0, color="k", lw=0.5)
    axes[0].set_title(f"{row_id}: predicted {prediction:.3g}; importance at the reference bases", fontsize=10, pad=16)
    legend(axes[0], marks, window)
    axes[len(methods) - 1].set_xlabel(axis_name(marks))
    # the logo zoom, of the first method's track
    ax = axes[-1]
    lo, hi = (0, min(length, 60)) if window is None else (max(0, window[0] - ZOOM_PAD), min(length, window[1] + ZOOM_PAD))
    v = tracks[methods[0]]
    for i in range(lo, hi):
        if v[i] != 0:
            letter(ax, sequence[i], i, float(v[i]))
    span = float(np.abs(v[lo:hi]).max(initial=0)) or 1.0
    ax.set_xlim(lo, hi)
    ax.set_ylim(min(0.0, float(v[lo:hi].min(initial=0))) - 0.05 * span, max(0.0, float(v[lo:hi].max(initial=0))) + 0.05 * span)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_ylabel(f"{methods[0]} (logo)")
    ax.set_xticks(tick_positions(marks, lo, hi))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: position_label(x, marks)))
    ax.set_xlabel(f"{axis_name(marks)}: {position_label(lo, marks)} to {position_label(hi - 1, marks)}"
                  + (", the top window shaded above" if window else ""))
    fig.tight_layout()
    save_png(fig, path, dpi=90)
