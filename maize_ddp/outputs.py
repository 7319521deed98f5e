"""What a command may write over: the library's side of "a command deletes or replaces only what
it created" (the converters' folders follow the same rules in convert/output.py).

- An output must never be, hold, or lie inside an input (compared as real paths, so symlinks and
  `..` cannot hide it): a later `--overwrite` of the input would delete it, or writing it would
  change the input.
- A file of a report is replaced only when the file already there is one of ours (its first line
  says so); a user's file of the same name is refused.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable


def overlap(dst, inputs: Iterable) -> str | None:
    """Why `dst` may not be written beside `inputs`, or None."""
    out = Path(os.path.realpath(dst))
    for item in inputs:
        real = Path(os.path.realpath(item))
        relation = ("is" if out == real else "holds" if real.is_relative_to(out)
                    else "lies inside" if out.is_relative_to(real) else None)
        if relation:
            return (f"{dst}: the output {relation} the input {os.fspath(item)}; choose an output outside "
                    "the inputs")
    return None


def first_line(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            return fh.readline(4096).decode("utf-8", "replace").rstrip("\r\n")
    except OSError:
        return ""


def foreign_files(folder: Path, ours: dict[str, Callable[[Path], bool]]) -> list[str]:
    """The files among `ours` (name -> is this file ours?) that exist in `folder` and are not ours."""
    return [name for name, is_ours in ours.items() if (Path(folder) / name).exists() and not is_ours(Path(folder) / name)]
