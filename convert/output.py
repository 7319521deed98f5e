"""The output side shared by the converters: an atomic output folder, progress, the CLI shell.

A store is written into `DST.tmp-<pid>` next to DST and renamed to DST only when complete, so
a folder named DST is always a finished store. A killed conversion leaves its temporary
folder behind; the next conversion to the same DST on the same host removes it once its
owner process is gone (a marker file records host and pid, so a run on another node of a
shared filesystem is never mistaken for a dead one).
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import glob
import os
import shutil
import signal
import socket
import sys
import time
from pathlib import Path

from .shards import ConvertError

OWNER_FILE = ".convert-owner"
BAR_DELAY_S = 0.5  # no bar for runs (or failures) quicker than this: a bad input gets one line


def refuse_existing(dst, overwrite: bool) -> None:
    dst = Path(dst)
    if (dst.exists() or dst.is_symlink()) and not overwrite:
        raise ConvertError(f"{dst}: already exists (pass --overwrite to replace it)")


@contextlib.contextmanager
def atomic_output_dir(dst, overwrite: bool = False):
    """Yield a fresh temporary folder; on success it becomes DST, on any failure it goes away.

    OSErrors raised inside (a full or read-only disk) become one-line ConvertErrors: reading
    the inputs turns its own OSErrors into ConvertErrors first, so what is left is output.
    """
    dst = Path(dst)
    refuse_existing(dst, overwrite)
    remove_stale_temporaries(dst)
    tmp = dst.with_name(f"{dst.name}.tmp-{os.getpid()}")
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        (tmp / OWNER_FILE).write_text(f"{socket.gethostname()} {os.getpid()}\n")
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ConvertError(f"{dst}: cannot create the output folder ({_strerror(e)})") from None
    try:
        yield tmp
        (tmp / OWNER_FILE).unlink()
        _replace(tmp, dst, overwrite)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):
            raise ConvertError(f"{dst}: cannot write the output ({_strerror(e)})") from None
        raise


def _replace(tmp: Path, dst: Path, overwrite: bool) -> None:
    if not (dst.exists() or dst.is_symlink()):
        os.rename(tmp, dst)
        return
    refuse_existing(dst, overwrite)  # it may have appeared while we worked
    old = dst.with_name(f"{dst.name}.old-{os.getpid()}")
    os.rename(dst, old)
    os.rename(tmp, dst)
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink()


def remove_stale_temporaries(dst: Path) -> None:
    """Delete DST.tmp-* folders left by conversions on this host whose process is gone."""
    host = socket.gethostname()
    for tmp in dst.parent.glob(glob.escape(dst.name) + ".tmp-*"):
        try:
            owner_host, pid = (tmp / OWNER_FILE).read_text().split()
            pid = int(pid)
        except (OSError, ValueError):
            continue  # not ours, or not a conversion folder: leave it
        if owner_host == host and pid != os.getpid() and not _alive(pid):
            shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _strerror(e: OSError) -> str:
    if e.errno == errno.EFBIG:
        return "File too large (a file size limit or a full disk)"
    return e.strerror or str(e)


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


def run_cli(convert, args: dict) -> int:
    """Run a converter for a CLI: one `error:` line and exit 1 for bad input, no traceback."""
    previous = signal.signal(signal.SIGTERM, exit_on_sigterm)
    try:
        summary = convert(**args)
    except ConvertError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    for warning in summary["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    print(summary_line(summary))
    return 0
