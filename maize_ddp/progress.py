"""The progress bar every long command shows (rank 0 only): rows done, rate and time left on
stderr; a bar for work shorter than a couple of seconds never appears, and in a log file (no
terminal) it writes a line every 30 s instead of redrawing."""
from __future__ import annotations

import sys

from tqdm import tqdm


def bar(iterable=None, total: int | None = None, desc: str = "", unit: str = "rows", enabled: bool = True) -> tqdm:
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not enabled, dynamic_ncols=True,
                file=sys.stderr, mininterval=0.2 if sys.stderr.isatty() else 30, delay=2, leave=False)
