"""A command's output folder by the converters' rules (convert.output), for commands that compute
first and write at the end (interpret): write into DST.tmp-PID, rename into place when complete;
never replace anything but an earlier output of the same command (its manifest says so) or an
empty folder, and never an input.

convert.output recognises only the converters' outputs, so a replaced folder of ours is moved
aside here first (marked as the converters mark theirs, so convert.output.recover_interrupted
puts it back if we are killed between the two renames), then written with atomic_output_dir.
"""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from convert.output import (OWNER_FILE, _mark, _remove_tree, atomic_output_dir, is_our_output, recover_interrupted,
                            refuse_overlap)
from convert.shards import ConvertError


def is_manifest_of(path: Path, manifest: str, generator: str) -> bool:
    try:
        return json.loads((Path(path) / manifest).read_text()).get("generator") == generator
    except (OSError, ValueError, AttributeError):
        return False


def check_output(dst, overwrite: bool, inputs, manifest: str, generator: str) -> None:
    """Refuse DST early (before hours of work) when it could not be written at the end."""
    dst = Path(dst)
    refuse_overlap(dst, inputs)
    recover_interrupted(dst)
    if not (dst.exists() or dst.is_symlink()):
        return
    if not overwrite:
        raise ConvertError(f"{dst}: already exists (pass --overwrite to replace it)")
    empty = dst.is_dir() and not dst.is_symlink() and not any(dst.iterdir())
    if not (empty or is_manifest_of(dst, manifest, generator) or is_our_output(dst)):
        raise ConvertError(f"{dst}: exists and is not a {generator} output; refusing to replace it")


@contextlib.contextmanager
def output_dir(dst, overwrite: bool, inputs, manifest: str, generator: str):
    """Yield a temporary folder that becomes DST on success; an older output is replaced."""
    dst = Path(dst)
    check_output(dst, overwrite, inputs, manifest, generator)
    old = None
    if dst.exists() and not dst.is_symlink() and not is_our_output(dst):
        old = dst.with_name(f"{dst.name}.old-{os.getpid()}")
        _mark(dst)
        os.rename(dst, old)
    try:
        with atomic_output_dir(dst, overwrite, inputs) as tmp:
            yield tmp
    except BaseException:
        if old is not None and not dst.exists():
            os.rename(old, dst)
            (dst / OWNER_FILE).unlink(missing_ok=True)
        raise
    if old is not None:
        _remove_tree(old)
