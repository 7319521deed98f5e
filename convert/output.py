"""The converters' command-line side: progress bars, the summary line, the shared parser and the
CLI shell. Their output folders follow maize_ddp.outputs (atomic, replaced only when ours).
"""
from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from typing import Callable

from maize_ddp.errors import Error

BAR_DELAY_S = 0.5  # no bar for runs (or failures) quicker than this: a bad input gets one line


def dir_bytes(path) -> int:
    """Bytes of all files under path (their sizes, not blocks)."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


# ---------------------------------------------------------------- progress


class Progress:
    """A tqdm bar on stderr counting rows, with the input read rate in MB/s; silent if quiet."""

    def __init__(self, total: int, desc: str, quiet: bool, unit: str = "rows"):
        self.bar = None
        self.start = time.perf_counter()
        self.source_bytes = 0
        if not quiet:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=unit, unit_scale=True,
                            file=sys.stderr, dynamic_ncols=True, leave=False, delay=BAR_DELAY_S,
                            mininterval=0.1 if sys.stderr.isatty() else 30)  # a log file: a line per 30 s

    def update(self, rows: int, source_bytes: int) -> None:
        self.source_bytes += source_bytes
        if self.bar is not None:
            rate = self.source_bytes / 1e6 / max(time.perf_counter() - self.start, 1e-9)
            self.bar.set_postfix_str(f"{rate:.1f} MB/s", refresh=False)
            self.bar.update(rows)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


# ---------------------------------------------------------------- CLI


def summary_line(summary: dict) -> str:
    splits = ", ".join(f"{name} {s['n']}" for name, s in summary["splits"].items())
    line = (f"wrote {summary['rows']} rows ({splits}) of {summary['seq_len']} bp, "
            f"{summary['num_targets']} target{'s' if summary['num_targets'] != 1 else ''} to "
            f"{summary['dst']}: {summary['store_bytes'] / 1e6:.1f} MB from "
            f"{summary['source_bytes'] / 1e6:.1f} MB of npz in {summary['seconds']:.1f} s")
    if summary["dropped_nonfinite"]:
        line += f"; dropped {summary['dropped_nonfinite']} rows with non-finite labels"
    return line


def converter_parser(prog: str, description: str, dst_help: str) -> argparse.ArgumentParser:
    """The arguments every npz converter takes; each adds its own layout flags."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("src", help="folder with train/ val/ test/ of .npz shards (or one split's shards with --split)")
    p.add_argument("dst", help=dst_help)
    p.add_argument("--split", help="SRC is the .npz shards of this one split")
    p.add_argument("--workers", type=int, default=1, help="decoding processes (default 1)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing DST")
    p.add_argument("--drop-nonfinite", action="store_true", help="drop rows with NaN/inf labels instead of failing")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)  # unwinds, so the temporary folder is removed


def run_command(work: Callable[[], object], report: Callable[[object], None]) -> int:
    """Run a command's work for its CLI and report the result. A user's error (the project's
    errors, an OSError naming its file) is one `error:` line and exit 1, Ctrl-C exit 130, never a
    traceback; SIGTERM (a batch scheduler's stop) unwinds, so temporary output is removed."""
    previous = signal.signal(signal.SIGTERM, exit_on_sigterm)
    try:
        result = work()
    except Error as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # a missing input: the OS message names the file
        print(f"error: {e.filename}: {e.strerror or e}" if e.filename else f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    report(result)
    return 0


def run_cli(convert, args: dict) -> int:
    """Run an npz converter for its CLI: warnings, then the summary line."""
    def report(summary: dict) -> None:
        for warning in summary["warnings"]:
            print(f"warning: {warning}", file=sys.stderr)
        print(summary_line(summary))
    return run_command(lambda: convert(**args), report)
