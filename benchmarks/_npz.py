"""Benchmark data helper: shards whose copies stay distinct rows."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np


def drop_ids(folder) -> None:
    """Rewrite each shard under `folder` without its `ids` member. The benchmarks repeat shards
    (the same file 8 times over) to measure memory against data size; without given ids each
    copy's rows get ids from their own file name, `<file>:<row>`, so the copies do not repeat ids."""
    for path in sorted(Path(folder).rglob("*.npz")):
        with np.load(path) as z:
            if "ids" not in z.files:
                continue
            arrays = {name: z[name] for name in z.files if name != "ids"}
        np.savez_compressed(path, **arrays)


def drop_ids_apart(folder) -> None:
    """drop_ids in a process of its own: a benchmark's own RSS must stay small, since Linux
    carries a process's peak RSS into the children it starts (the cases it measures)."""
    subprocess.run([sys.executable, __file__, str(folder)], check=True)


if __name__ == "__main__":
    drop_ids(sys.argv[1])
