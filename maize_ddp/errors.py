"""Errors a user can act on, and how a command prints them: one line naming the file or flag.

Anything else is a bug in maize_ddp and keeps its traceback; a command catches only these,
OSError (retold to name its file) and the store's StoreError.
"""
from __future__ import annotations

import errno
import os
import signal
import sys
from typing import Callable


class Error(Exception):
    """Base of maize_ddp's own errors: the message names the file or flag and the cause."""


class ConfigError(Error, ValueError):
    """A setting that cannot work: the message names its flag."""


def _lower(text: str) -> str:
    return text[:1].lower() + text[1:]


def describe(e: BaseException) -> str:
    """The one line for an error. Python's OSError may name no file ("[Errno 28] No space
    left on device"): this one names it whenever it is known."""
    if isinstance(e, OSError):
        cause = _lower(e.strerror or str(e))
        return f"{e.filename}: {cause}" if e.filename else cause
    return str(e)


def file_error(e: BaseException, path, doing: str = "cannot write") -> OSError:
    """`e` retold for `path`: OSError whose describe() is 'PATH: cannot write (no space left on
    device)'. A write that failed with no OSError of its own (torch.save's C++ writer reports
    a short write as 'unexpected pos') is put down to a full disk when the disk is full."""
    code = getattr(e, "errno", None)
    if code is None and disk_full(path):
        code = errno.ENOSPC
    cause = _lower(os.strerror(code)) if code else str(e)
    return OSError(code, f"{doing} ({cause})", str(path))


def disk_full(path) -> bool:
    try:
        st = os.statvfs(os.path.dirname(os.path.abspath(path)))
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 1 << 20  # under 1 MiB left


class Terminated(KeyboardInterrupt):
    """SIGTERM: a scheduler's time limit or preemption, a kill. Unwinds as Ctrl-C does, so temp
    files go and locks are released, and the command says why it stopped."""


_stop_requested: list[int] = []  # the signals received (SIGINT, SIGTERM), for raise_if_stopped


def raise_on_sigterm() -> None:
    """SIGTERM raises Terminated and Ctrl-C KeyboardInterrupt, as ever; each is also remembered, so
    that a long loop stops at its next step even where the exception was swallowed (raised inside
    a destructor or a library's callback, which Python reports as "Exception ignored" and goes on)."""
    def stop(signum, frame):
        _stop_requested.append(signum)
        raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()
    _stop_requested.clear()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def raise_if_stopped() -> None:
    """Raise again the stop a signal asked for (see raise_on_sigterm); nothing if none came."""
    if _stop_requested:
        raise Terminated() if _stop_requested[-1] == signal.SIGTERM else KeyboardInterrupt()


def stacks_on_sigusr1() -> None:
    """`kill -USR1 PID` prints every thread's Python stack to stderr and the process goes on: what
    a run that seems hung is doing (faulthandler; no cost until the signal comes)."""
    import faulthandler

    if hasattr(signal, "SIGUSR1") and sys.__stderr__ is not None:
        faulthandler.register(signal.SIGUSR1, file=sys.__stderr__, all_threads=True, chain=False)


def run_main(work: Callable[[], str | None], extra: tuple[type[BaseException], ...] = ()) -> int:
    """A command's main: run `work` and print the line it returns. A user's error (ours, an
    OSError, or one of `extra`) is one `error:` line and exit 1; Ctrl-C is exit 130; anything
    else is a bug and keeps its traceback."""
    try:
        message = work()
        if message:
            print(message, flush=True)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader of our output left (`| head -1`): stop quietly, as a shell tool does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except (Error, OSError, *extra) as e:
        print(f"error: {describe(e)}", file=sys.stderr)
        return 1
    return 0
