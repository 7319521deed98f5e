"""benchmarks/gpu_check.sh --dry-run: the GPU check's every step, end to end on CPU at a tiny size.

The same script runs on a lent GPU machine in one call; here it must pass through bench_gpu.py's four
loops (the trainer's real train_epoch among them), a preset run on a promoter table, attribution
throughput and two 2-process DDP runs with --backend gloo, and collect their figures in one report.
"""
import os
import re
import subprocess
import sys

from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def write_promoter_table(path, rows=200, seq_len=170, seed=0):
    """A STARR-seq-like table: activity counts a TATA box, plus noise; ids as the Jores table's."""
    rng = np.random.default_rng(seed)
    lines = ["gene\tsequence\tenrichment"]
    for i in range(rows):
        seq = "".join(rng.choice(list("ACGT"), seq_len))
        tata = rng.random() < 0.5
        if tata:
            seq = seq[:100] + "TATAAAT" + seq[107:]
        lines.append(f"AT1G{i:05d}\t{seq}\t{1.5 * tata + rng.normal(0, 0.5):.6f}")
    path.write_text("\n".join(lines) + "\n")


def test_dry_run_collects_every_step(tmp_path):
    table = tmp_path / "leaf.tsv"
    write_promoter_table(table)
    out = tmp_path / "out"
    # TMPDIR stays as it is: inductor's cache of compiled graphs lives there (warm after the compile tests)
    env = {**os.environ, "JORES_LEAF": str(table), "OMP_NUM_THREADS": "1", "PYTHON": sys.executable}
    res = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run", str(out)], env=env,
                         capture_output=True, text=True, timeout=900)
    log = (out / "check.log").read_text() if (out / "check.log").exists() else ""
    assert res.returncode == 0, res.stdout[-2000:] + log[-4000:]
    report = (out / "gpu.md").read_text()
    assert report.rstrip().endswith("All steps passed.")

    # 1. bench_gpu.py: the four loops, each ratio its row's speed over the ideal eager loop's
    rows = {}
    for line in report.splitlines():
        m = re.match(r"\| ([a-z -]+) \| fp32 \| 16 \| ([\d,]+) \| ([\d.]+) \| ([\d.]+) \| n/a \(CPU\) \|$", line)
        if m:
            rows[m[1]] = (float(m[2].replace(",", "")), float(m[3]))
    assert set(rows) == {"ideal eager", "ideal compiled", "trainer", "trainer --compile"}, report
    for kind, (speed, ratio) in rows.items():
        assert speed > 0 and abs(ratio - speed / rows["ideal eager"][0]) < 0.01, kind
    assert "eager trainer / ideal eager loop, batch 16:" in report

    # 2. the preset on the table: 200 rows split 80/10/10 by a hash of the id, one epoch (dry run)
    m = re.search(r"one process: (\d+) epochs, test r \*\*(-?[\d.]+)\*\*, R² (-?[\d.]+) \(n (\d+)\)", report)
    assert m and m[1] == "1" and 0 < int(m[4]) < 60, report

    # 3. attribution throughput: ISM and saliency rows
    assert re.search(r"\| default \(short\) \| 300 \| ism \| 256 \| 2 \| [\d.]+ \|", report)
    assert re.search(r"\| default \(short\) \| 300 \| saliency \|", report)

    # 4. DDP with --backend gloo on two processes: both runs, and every test row counted once over the ranks
    ddp = re.findall(r"^\| (fp32|bf16-compile) \| 1 \| ([\d,]+) \| (-?[\d.]+) \| (-?[\d.]+) \| (\d+) \|$", report, re.M)
    assert [r[0] for r in ddp] == ["fp32", "bf16-compile"], report
    assert all(r[4] == "64" for r in ddp)
    assert log.count("backend gloo") >= 4  # each rank of each run said so


def test_a_failing_step_is_named_and_the_others_still_run(tmp_path):
    """A Python that cannot run anything: every step fails, each is named, the exit is non-zero."""
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho broken python >&2\nexit 3\n")
    fake.chmod(0o755)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": str(fake), "TMPDIR": str(tmp_path), "JORES_LEAF": str(tmp_path / "absent.tsv")}
    res = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run", str(out)], env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 1
    report = (out / "gpu.md").read_text()
    assert "Failed steps: bench (exit 3) real (no data) interpret (exit 3) ddp-data (exit 3) ddp-fp32 (exit 3) " \
           "ddp-bf16-compile (exit 3)." in report, report
    assert all(f"## {n}." in report for n in range(1, 5))
    assert (out / "check.log").read_text().count("broken python") >= 6
