"""One live run per run folder: RUN/run.lock names the process that owns the folder.

Rank 0 takes the lock before it writes anything and removes it when the run ends. The lock
holds host, pid with the process's start time (a recycled pid is not taken for the holder),
launch id and launch round (how often SLURM requeued and torchrun restarted the launch).
A lock is taken over when
  - its holder ran on this host and is no longer alive (a kill, a crash, a reboot, the
    previous round of a restarted launch);
  - it was left by an earlier round of this same launch on another host (a SLURM requeue onto
    another node): that round's process group is gone.
Otherwise the folder is in use (a second trainer of the same SLURM allocation included), or held
from another host where this one cannot tell whether the holder is alive: refused, with the
holder named and how to remove the lock if it is stale.

Reading the lock, judging it and replacing it is one step for every process on this host (an
flock on the run folder), so two processes that find the same stale lock never both take it,
and the lock file appears whole (written aside, then linked into place).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from pathlib import Path

from maize_ddp.errors import Error

LOCK_NAME = "run.lock"


class RunLockError(Error):
    pass


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat after the command name (Linux): state first; None where unknown."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def process_start(pid: int) -> str | None:
    """The start time of process `pid` in clock ticks since boot (Linux), None where unknown."""
    fields = _stat_fields(pid)
    return fields[19] if fields else None


def alive(pid: int, start: str | None = None) -> bool:
    """Whether process `pid` (on this host) still runs, and is the one that started at `start`.
    A zombie (ended, not yet reaped by its new parent) runs no more."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, another user's
    fields = _stat_fields(pid)
    if fields and fields[0] in ("Z", "X"):
        return False
    now = fields[19] if fields else None
    return start is None or now is None or now == start


@contextlib.contextmanager
def serialized(folder: Path):
    """Hold an exclusive flock on `folder` itself: the lock's read-judge-write is one step for
    every process on this host. A file system without flock (some network mounts) goes on
    without it: the lock file is still created exclusively, only takeovers can race there."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # and with it the flock


def owner_key(record: dict) -> tuple:
    return record.get("host"), record.get("pid"), record.get("start")


def live_holder(folder) -> dict | None:
    """Who holds `folder`'s run lock, if a run may be going on there (alive on this host, or on
    another host where that cannot be told); None for no lock or a dead holder's."""
    try:
        holder = json.loads((Path(folder) / LOCK_NAME).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(holder, dict):
        return None
    if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
        return holder if alive(holder["pid"], holder.get("start")) else None
    return holder


class RunLock:
    def __init__(self, folder: Path, launch_id: str | None, launch_round: list[int] | None = None):
        self.path = Path(folder) / LOCK_NAME
        self.me = {"host": socket.gethostname(), "pid": os.getpid(), "start": process_start(os.getpid()),
                   "launch_id": launch_id, "round": list(launch_round or [0, 0]),
                   "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        self.held = False
        self.took_over: dict | None = None  # the stale holder replaced, if any

    def acquire(self) -> "RunLock":
        with serialized(self.path.parent):
            holder = self._read()
            if holder is not None:
                if not self._stale(holder):
                    raise RunLockError(self._refusal(holder))
                self.took_over = holder
            self._write(replace=holder is not None)
        self.held = True
        return self

    def release(self) -> None:
        """Remove the lock if it is still ours (a restart of this launch may have taken it over)."""
        if not self.held:
            return
        self.held = False
        with serialized(self.path.parent):
            holder = self._read()
            if holder and owner_key(holder) == owner_key(self.me):
                self.path.unlink(missing_ok=True)

    def _write(self, replace: bool) -> None:
        """The lock, whole: written aside, then renamed over a stale one or linked into place
        (link fails if a lock appeared meanwhile, from a host the flock does not reach)."""
        tmp = self.path.with_name(f".{LOCK_NAME}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(self.me) + "\n")
        try:
            if replace:
                os.replace(tmp, self.path)
            else:
                try:
                    os.link(tmp, self.path)
                except FileExistsError:
                    raise RunLockError(self._refusal(self._read() or {})) from None
        finally:
            tmp.unlink(missing_ok=True)

    def _read(self) -> dict | None:
        try:
            holder = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (ValueError, UnicodeDecodeError):
            holder = None
        return holder if isinstance(holder, dict) else {"host": "?", "pid": "?", "unreadable": True}

    def _stale(self, holder: dict) -> bool:
        me = self.me
        if holder.get("host") == me["host"] and isinstance(holder.get("pid"), int):
            return not alive(holder["pid"], holder.get("start"))
        # another host: whether it lives cannot be told from here, unless it was an earlier round
        # of this launch (SLURM requeued the job onto another node)
        return (me["launch_id"] is not None and holder.get("launch_id") == me["launch_id"]
                and isinstance(holder.get("round"), list) and holder["round"] < me["round"])

    def _refusal(self, holder: dict) -> str:
        who = f"pid {holder.get('pid')} on {holder.get('host')}"
        if holder.get("launch_id"):
            who += f", launch {holder['launch_id']}"
        if holder.get("since"):
            who += f", since {holder['since']}"
        if holder.get("host") == self.me["host"]:
            return (f"{self.path.parent}: run folder is in use by another run ({who}); wait for it to end "
                    "or choose another --out")
        return (f"{self.path.parent}: run folder is locked by a run on another host ({who}); if no run is "
                f"going on there, remove {self.path} and start again")

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
