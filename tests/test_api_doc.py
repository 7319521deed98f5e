"""docs/api.md runs: its Python blocks, in order and in one namespace, on a run trained here."""
import re
from pathlib import Path

import pytest
from _runs import train_tiny_run

pytestmark = pytest.mark.e2e
DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def test_the_api_walkthrough_runs_as_written(tmp_path, monkeypatch):
    train_tiny_run(tmp_path, train=256, test=64, epochs=1)
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 5
    code = "\n".join(blocks)
    code = code.replace('RUN = "runs/demo"', f'RUN = "{tmp_path / "run"}"')
    code = code.replace('DATA = "demo/data.zarr"', f'DATA = "{tmp_path / "data.zarr"}"')
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(DOC), "exec"), {})
    assert (tmp_path / "importance.png").stat().st_size > 0
