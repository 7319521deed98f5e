"""docs/api.md runs: its Python blocks, in order and in one namespace, on a run trained here."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"
TINY = ["--conv1kc", "16", "--conv2kc", "16", "--conv3kc", "16", "--convdc", "1", "--convdkc", "8",
        "--conv4kc", "16", "--pool1ks", "4", "--pool2ks", "2", "--pool3ks", "2"]


def test_the_api_walkthrough_runs_as_written(tmp_path, monkeypatch):
    from convert import npz_to_zarr, synth

    synth.generate(tmp_path / "npz", train=256, val=64, test=64, seq_len=120, shard_size=256, dtype="uint8")
    npz_to_zarr.convert(tmp_path / "npz", tmp_path / "data.zarr")
    res = subprocess.run([sys.executable, "-m", "maize_ddp.train", "--data", str(tmp_path / "data.zarr"), "--out",
                          str(tmp_path / "run"), "--epochs", "1", "--warmup-steps", "2", "--device", "cpu", *TINY],
                         env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 5
    code = "\n".join(blocks)
    code = code.replace('RUN = "runs/demo"', f'RUN = "{tmp_path / "run"}"')
    code = code.replace('DATA = "demo/data.zarr"', f'DATA = "{tmp_path / "data.zarr"}"')
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(DOC), "exec"), {})
    assert (tmp_path / "importance.png").stat().st_size > 0
