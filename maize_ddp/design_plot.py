"""The design trajectory figure: the best design's score per round, one line per start sequence,
and the goal's value as a dashed line when the goal is a value."""
from __future__ import annotations

from pathlib import Path

from maize_ddp.plots import new_figure, save_png

LEGEND_MAX = 12  # more start sequences than this: lines without a legend


def trajectory_figure(path: Path, designs, title: str, goal_value: float | None = None) -> None:
    """`designs`: maize_ddp.design.Design records (every round's rank 1 is drawn)."""
    lines: dict[int, tuple[str, list[int], list[float]]] = {}
    for d in sorted(designs, key=lambda d: (d.start, d.round)):
        if d.rank == 1:
            lines.setdefault(d.start, (d.id, [], []))
            lines[d.start][1].append(d.round)
            lines[d.start][2].append(d.score)
    fig = new_figure(figsize=(6.4, 4.2))
    ax = fig.subplots()
    many = len(lines) > LEGEND_MAX
    for row_id, rounds, scores in lines.values():
        ax.plot(rounds, scores, marker="" if many else "o", markersize=3, linewidth=0.8 if many else 1.4,
                alpha=0.5 if many else 0.9, label=None if many else row_id)
    if goal_value is not None:
        ax.axhline(goal_value, color="black", linestyle="--", linewidth=1, label="goal")
    ax.set_xlabel("round (0 = start sequence)")
    ax.set_ylabel("score of the best design (predicted)")
    ax.set_title(f"in-silico evolution: {title}", fontsize=10)
    ax.xaxis.get_major_locator().set_params(integer=True)
    if not many or goal_value is not None:
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    save_png(fig, path, dpi=100)
