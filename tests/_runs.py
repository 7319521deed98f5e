"""A tiny trained run for the tests of what comes after training (the API, design, docs): synthetic
promoters -> a Zarr store -> `python -m maize_ddp.train` with a small BasenjiModel, on CPU."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
TINY = ["--conv1kc", "16", "--conv2kc", "16", "--conv3kc", "16", "--convdc", "1", "--convdkc", "8",
        "--conv4kc", "16", "--pool1ks", "4", "--pool2ks", "2", "--pool3ks", "2"]


def train_tiny_run(root: Path, *, train: int = 512, val: int = 64, test: int = 96, seq_len: int = 120,
                   epochs: int = 2) -> Path:
    """root/data.zarr and the run root/run trained on it; returns root."""
    from convert import npz_to_zarr, synth

    synth.generate(root / "npz", train=train, val=val, test=test, seq_len=seq_len, shard_size=256, dtype="uint8")
    npz_to_zarr.convert(root / "npz", root / "data.zarr")
    res = subprocess.run([sys.executable, "-m", "maize_ddp.train", "--data", str(root / "data.zarr"), "--out",
                          str(root / "run"), "--epochs", str(epochs), "--warmup-steps", "5", "--device", "cpu", *TINY],
                         env=ENV, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return root
