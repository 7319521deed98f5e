"""benchmarks/bench_gpu.py on CPU at a tiny size: every loop of the table runs, through the real trainer."""
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def test_bench_gpu_prints_the_table_on_cpu(tmp_path):
    # the compile test's model, batch and length: inductor's cache holds its graphs after that test
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py"), "--tiny", "--batch-sizes", "16",
                          "--precisions", "off", "--rows", "256", "--seq-len", "64", "--work", str(tmp_path)],
                         env=ENV, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = {}
    for line in res.stdout.splitlines():
        m = re.match(r"\| ([a-z -]+) \| fp32 \| 16 \| ([\d,]+) \| ([\d.]+) \| ([\d.]+) \| n/a \(CPU\) \|$", line)
        if m:
            rows[m[1]] = (float(m[2].replace(",", "")), float(m[3]), float(m[4]))
    assert set(rows) == {"ideal eager", "ideal compiled", "trainer", "trainer --compile"}, res.stdout
    assert rows["ideal eager"][1] == 1.0 and all(r[0] > 0 for r in rows.values())
    for kind, (speed, ratio, _) in rows.items():  # each ratio is its row's speed over the ideal eager loop's
        assert abs(ratio - speed / rows["ideal eager"][0]) < 0.01, kind
    # the trainer rows ran the real train_epoch: its steps.jsonl, 16 steps an epoch, two epochs
    logs = list(tmp_path.glob("run_*/steps.jsonl"))
    assert len(logs) == 2 and all(p.read_text().count("\n") == 2 for p in logs)
    assert "eager trainer / ideal eager loop, batch 16:" in res.stdout
