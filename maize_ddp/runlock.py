"""One live run per run folder: RUN/run.lock names the process that owns the folder.

Rank 0 takes the lock before it writes anything and removes it when the run ends. The lock
holds host, pid (with the process's start time, so a recycled pid is not taken for the holder)
and launch id. A lock is taken over when
  - it was left by this same launch (torchrun --max-restarts, a SLURM requeue): the old process
    group is gone, whichever host it ran on;
  - its holder ran on this host and is no longer alive (a kill, a crash, a reboot).
Otherwise the folder is in use, or held from another host where this one cannot tell whether
the holder is alive: refused, with the holder named and how to remove the lock if it is stale.
"""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from maize_ddp.errors import Error

LOCK_NAME = "run.lock"


class RunLockError(Error):
    pass


def process_start(pid: int) -> str | None:
    """The start time of process `pid` in clock ticks since boot (Linux), None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def alive(pid: int, start: str | None = None) -> bool:
    """Whether process `pid` (on this host) still runs, and is the one that started at `start`."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, another user's
    now = process_start(pid)
    return start is None or now is None or now == start


class RunLock:
    def __init__(self, folder: Path, launch_id: str | None):
        self.path = Path(folder) / LOCK_NAME
        self.me = {"host": socket.gethostname(), "pid": os.getpid(), "start": process_start(os.getpid()),
                   "launch_id": launch_id, "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        self.held = False
        self.took_over: dict | None = None  # the stale holder replaced, if any

    def acquire(self) -> "RunLock":
        for _ in range(5):  # another process may take or drop the lock between our steps
            if self._create():
                self.held = True
                return self
            holder = self._read()
            if holder is None:
                continue  # removed meanwhile, or not yet written: look again
            if not self._stale(holder):
                raise RunLockError(self._refusal(holder))
            self.path.unlink(missing_ok=True)
            self.took_over = holder
        raise RunLockError(f"{self.path.parent}: could not take the run lock {self.path} (other processes keep "
                           "taking it)")

    def release(self) -> None:
        """Remove the lock if it is still ours (a restart of this launch may have taken it over)."""
        holder = self._read() if self.held else None
        if holder and (holder.get("host"), holder.get("pid")) == (self.me["host"], self.me["pid"]):
            self.path.unlink(missing_ok=True)
        self.held = False

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(self.me) + "\n")
        return True

    def _read(self) -> dict | None:
        for _ in range(20):
            try:
                text = self.path.read_text()
            except FileNotFoundError:
                return None
            try:
                holder = json.loads(text)
                if isinstance(holder, dict):
                    return holder
            except ValueError:
                pass
            time.sleep(0.05)  # created but not yet written
        return {"host": "?", "pid": "?", "unreadable": True}

    def _stale(self, holder: dict) -> bool:
        me = self.me
        if me["launch_id"] is not None and holder.get("launch_id") == me["launch_id"]:
            return True  # an earlier round of this launch: torchrun restarted it or SLURM requeued it
        if holder.get("host") != me["host"] or not isinstance(holder.get("pid"), int):
            return False  # another host: whether it lives cannot be told from here
        return not alive(holder["pid"], holder.get("start"))

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
