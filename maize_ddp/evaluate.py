"""A run's report on a store split.

    python -m maize_ddp.evaluate RUN_DIR|CKPT --data STORE [--split test] [--out DIR] [--rc-average]

The report goes to RUN/eval-STORE-SPLIT/ unless --out says where: the run's own test report,
written by the trainer, is never replaced unless --out names the run folder. The work is
maize_ddp.report's, as the trainer's test report is: every row exactly once across ranks.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
from pathlib import Path

import torch

from maize_ddp import distributed, errors
from maize_ddp.arguments import add_run_settings, count, positive_int
from maize_ddp.checkpoint import load
from maize_ddp.inference import Predictor, task_of
from maize_ddp.process_exit import exit_process
from maize_ddp.report import ReportError, test_report, describe_report


def run_folder(checkpoint: Path) -> Path:
    """The run a checkpoint belongs to: RUN for RUN or RUN/checkpoints/X.pt, else the .pt's folder."""
    if checkpoint.is_dir():
        return checkpoint
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent


def default_out(checkpoint: Path, data: str, split: str) -> Path:
    """RUN/eval-STORE-SPLIT for the run's best checkpoint, RUN/eval-CKPT-STORE-SPLIT for another
    one (last.pt, say): beside the run's own report, never over it, nor over each other."""
    other = checkpoint.suffix == ".pt" and checkpoint.name != "best.pt"
    return run_folder(checkpoint) / f"eval-{checkpoint.stem + '-' if other else ''}{Path(data).name}-{split}"


def report_files(split: str) -> tuple[str, ...]:
    prefix = "test" if split == "test" else split
    figures = ("scatter.png", "roc.png") if split == "test" else (f"scatter_{split}.png", f"roc_{split}.png")
    return (f"{prefix}_predictions.tsv", f"{prefix}_metrics.json", *figures)


def check_out(out: Path, checkpoint_path: Path, data, split: str) -> None:
    """evaluate writes its report into `out` only where it destroys nothing of anyone else's: not
    inside (or over) its input store; not into another run's folder, nor into a folder a live run
    holds; over report files only when they are an evaluation of this checkpoint's run (or, in
    the run's own folder, its test report, which --out RUN asks to replace)."""
    from maize_ddp import outputs, runlock

    problem = outputs.overlap(out, [data])
    if problem:
        raise ReportError(problem.replace("choose an output", "choose an --out"))
    own_run = run_folder(checkpoint_path)
    holder = runlock.live_holder(out)
    if holder:
        raise ReportError(f"{out}: a live run holds this folder (pid {holder.get('pid')} on {holder.get('host')}); "
                          "evaluate when it has finished, or choose another --out")
    same_run = os.path.realpath(out) == os.path.realpath(own_run)
    if not same_run and ((out / "checkpoints").is_dir() or (out / "config.json").is_file()):
        raise ReportError(f"{out}: is another run's folder; choose another --out")
    metrics = next((out / name for name in report_files(split) if name.endswith("_metrics.json")))
    if metrics.exists():
        try:
            previous = json.loads(metrics.read_text())
        except (OSError, ValueError):
            previous = None
        if not isinstance(previous, dict) or "n" not in previous or "split" not in previous:
            raise ReportError(f"{metrics}: exists and is not an evaluation report; choose another --out")
        if not same_run and os.path.realpath(str(previous.get("data", ""))) != os.path.realpath(str(data)):
            raise ReportError(f"{out}: holds the evaluation of another store ({previous.get('data')}); choose "
                              "another --out")
    elif out.is_dir():
        found = [name for name in report_files(split) if (out / name).exists()]
        if found:
            raise ReportError(f"{out / found[0]}: exists and is not part of an evaluation report; choose "
                              "another --out")






def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m maize_ddp.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", type=Path, help="a run folder (uses checkpoints/best.pt) or a .pt file")
    p.add_argument("--data", required=True, help="a .zarr or .wds store")
    p.add_argument("--split", default="test", help="default: test")
    p.add_argument("--out", type=Path, default=None,
                   help="report folder (default: RUN/eval-STORE-SPLIT, so the run's own test report, "
                        "written by the trainer, is kept; give the run folder to replace it)")
    p.add_argument("--batch-size", type=positive_int, default=128, help="rows per forward pass (default 128)")
    p.add_argument("--num-workers", type=count, default=0, help="DataLoader workers per rank (default 0)")
    p.add_argument("--device", default="auto", help="auto (cuda when available) | cpu | cuda (default auto)")
    add_run_settings(p)
    a = p.parse_args(argv)
    return errors.run_main(lambda: evaluate(a), extra=(torch.distributed.DistError,))


def evaluate(a) -> str | None:
    """The command's work: the report's summary line (rank 0), None on other ranks."""
    from maize_ddp.data import make_loader, open_store

    d = distributed.init(a.device)
    try:
        state = load(a.checkpoint)
        predictor = Predictor.of_checkpoint(state, d.device, a.checkpoint, a.trust_model_code, a.amp, a.rc_average)
        mc = state["config"]["model"]
        open_store(a.data).check(split=a.split, seq_len=mc["seq_len"], num_targets=mc["num_targets"])
        out = a.out or default_out(a.checkpoint, a.data, a.split)
        distributed.on_main(d, lambda: check_out(out, a.checkpoint, a.data, a.split))
        created = not out.exists()
        out.mkdir(parents=True, exist_ok=True)
        try:
            loader = make_loader(a.data, a.split, batch_size=a.batch_size, rank=d.rank, world_size=d.world_size,
                                 train=False, num_workers=a.num_workers, pin_memory=d.device.type == "cuda")
            report = test_report(d, predictor, loader, out, split=a.split,
                                 extra={"checkpoint": str(a.checkpoint), "data": str(a.data)}, task=task_of(state))
        except BaseException:
            if created and d.is_main:
                with contextlib.suppress(OSError):
                    out.rmdir()  # a failed evaluation leaves no empty report folder (only an empty one goes)
            raise
    finally:
        distributed.shutdown(d)
    return f"{describe_report(a.split, report)}  -> {out}" if report else None


if __name__ == "__main__":
    exit_process(main())
