"""Checkpoints that survive being killed mid-write and resume exactly."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch


class CheckpointError(ValueError):
    pass


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file beside `path`, fsync, then rename: a reader sees the old file or
    the new one, never half of one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def save(path: Path, state: dict) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(state, tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load(path: Path) -> dict:
    path = Path(path)
    if path.is_dir():  # a run folder: its best checkpoint
        path = path / "checkpoints" / "best.pt"
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # a truncated or foreign file
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise CheckpointError(f"{path}: not a maize_ddp checkpoint (no model/config entries)")
    return state


def check_model_config(path: Path, saved: dict, current: dict) -> None:
    diff = {k: (saved.get(k), current.get(k)) for k in set(saved) | set(current) if saved.get(k) != current.get(k)}
    if diff:
        detail = ", ".join(f"{k}: checkpoint {a} vs now {b}" for k, (a, b) in sorted(diff.items()))
        raise CheckpointError(f"{path}: checkpoint was made for another model ({detail})")


def read_json(path: Path):
    return json.loads(Path(path).read_text())
