"""Checkpoints and run files that survive being killed mid-write and resume exactly.

Every write goes to a temp file beside its target, `.NAME.tmp-PID`, and is renamed over it:
a reader sees the old file or the new one, never half of one. A write that fails removes its
temp file and names the target; a kill leaves the temp file for remove_stale_temps().
"""
from __future__ import annotations

import json
import os
import pickle
import re
from pathlib import Path

import torch

from maize_ddp.errors import Error, file_error

TEMP_NAME = re.compile(r"^\..+\.tmp-(\d+)$")


class CheckpointError(Error, ValueError):
    pass


def temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def atomic_write(path: Path, write) -> None:
    """Run write(fh) on a temp file beside `path`, fsync, rename over `path`."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as e:  # a full disk, a kill by Ctrl-C: never leave the temp file
        tmp.unlink(missing_ok=True)
        stop = e.__context__
        while stop is not None and not isinstance(stop, KeyboardInterrupt):
            stop = stop.__context__
        if stop is not None:  # Ctrl-C or SIGTERM inside torch.save's writer, retold by it as a RuntimeError
            raise stop from None
        if isinstance(e, (OSError, RuntimeError)) and not isinstance(e, Error):
            # torch.save reports a short write as RuntimeError ("unexpected pos"), the OSError
            # behind it as its context
            raise file_error(e if isinstance(e, OSError) else (e.__context__ or e), path) from None
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


# best.pt and last.pt share one schema (docs/FORMATS.md, "Checkpoints"): what a reader needs (model,
# config, store, epoch, launch id and round), and in last.pt the training state a resume needs.
# A file without `schema` was written before it had a number: version 1 reads it the same way.
SCHEMA = 1


def save(path: Path, state: dict) -> None:
    # through a Python file object, so that a failed write surfaces as its OSError
    atomic_write(path, lambda fh: torch.save({"schema": SCHEMA, **state}, fh))


def remove_stale_temps(folder: Path, live=lambda pid: False) -> list[Path]:
    """Remove the temp files a killed writer left in `folder` (`.NAME.tmp-PID`), except those
    whose writer `live(pid)` says may still be writing. Returns what was removed."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except FileNotFoundError:
        return removed
    for p in entries:
        m = TEMP_NAME.match(p.name)
        if m and p.is_file() and not live(int(m[1])):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def checkpoint_file(path) -> Path:
    """The file a checkpoint argument names: a run folder means its checkpoints/best.pt."""
    path = Path(path)
    return path / "checkpoints" / "best.pt" if path.is_dir() else path


def load(path: Path) -> dict:
    """A checkpoint's entries. Only tensors and plain values are read (weights_only=True): a
    pickle can name any function to call while it is read, so a shared run folder would otherwise
    run its author's code on the reader's machine. maize_ddp writes nothing else; a file that
    holds anything else is refused before any of it runs."""
    path = checkpoint_file(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"(?:GLOBAL|global) ([\w.]+)", str(e))
        what = f" ({found[1]})" if found else ""
        raise CheckpointError(f"{path}: refused: it holds an object other than tensors and plain values{what}, "
                              "which could run code when loaded; maize_ddp checkpoints never do") from None
    except Exception as e:  # a truncated or foreign file
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise CheckpointError(f"{path}: not a maize_ddp checkpoint (no model/config entries)")
    schema = state.get("schema", SCHEMA)
    if not isinstance(schema, int) or schema > SCHEMA:
        raise CheckpointError(f"{path}: checkpoint schema {schema!r}, and this maize_ddp reads up to {SCHEMA}: "
                              "it was written by a newer maize_ddp; upgrade to read it")
    return state


RESUMABLE = ("model", "optimizer", "epoch", "batch", "history", "ranks", "stale_epochs")


def load_resumable(path: Path) -> dict:
    """A checkpoint a run can continue from (last.pt), or a CheckpointError saying what it lacks."""
    state = load(path)
    missing = [key for key in RESUMABLE if key not in state]
    if missing:
        raise CheckpointError(f"{path}: not a checkpoint a run can resume from (no {', '.join(missing)}; a best.pt "
                              "copied over last.pt?): restore last.pt or start a new run")
    return state


def fit_weights(module: torch.nn.Module, weights, path: Path) -> None:
    """Load `weights` into `module`, or a CheckpointError naming the file: weights that do not
    fit the model their own config describes (missing or extra tensors, other shapes)."""
    try:
        module.load_state_dict(weights)
    except (RuntimeError, TypeError, AttributeError, ValueError) as e:
        detail = " ".join(str(e).split())
        raise CheckpointError(f"{path}: its weights do not fit the model its config describes "
                              f"({detail[:300]}{'...' if len(detail) > 300 else ''})") from None


def check_model_config(path: Path, saved: dict, current: dict) -> None:
    diff = {k: (saved.get(k), current.get(k)) for k in set(saved) | set(current) if saved.get(k) != current.get(k)}
    if diff:
        detail = ", ".join(f"{k}: checkpoint {a} vs now {b}" for k, (a, b) in sorted(diff.items()))
        raise CheckpointError(f"{path}: checkpoint was made for another model ({detail})")


def read_json(path: Path):
    return json.loads(Path(path).read_text())
