"""A child process that ends with its parent, however the parent ends (a SIGKILL runs no cleanup).

Used by the converters' workers (whose pool would otherwise wait for jobs forever) and by the
ranks torchrun starts: a `kill -9` of torchrun must not leave its ranks training as orphans that
hold the run folder. On Linux the kernel sends SIGKILL when the parent exits (PR_SET_PDEATHSIG;
"the parent" is the thread that started the child, which for both is one that lives as long as
the parent's work); elsewhere a thread checks every second that the parent is still ours. The
parent may have died before this ran: then this process has been handed to another and stops.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1  # linux/prctl.h
PARENT_POLL_S = 1.0  # where there is no PR_SET_PDEATHSIG: how often to look for the parent


def die_with_parent(parent: int) -> None:
    if not (sys.platform.startswith("linux") and _set_parent_death_signal()):
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    if os.getppid() != parent:
        os._exit(1)


def _set_parent_death_signal() -> bool:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    os._exit(1)
