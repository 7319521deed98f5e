"""What a command may write over: "a command deletes or replaces only what it created".

Folders (the converters' outputs, interpret's):

- The output must never be, hold, or lie inside an input (compared as real paths, so symlinks
  and `..` cannot hide it), with or without --overwrite.
- --overwrite replaces only a folder that is one of our outputs (`is_our_output`: each command
  writes a file at the top that says so) holding nothing but what the command wrote (each
  output lists its contents in `.convert-files`: a run folder or a note put inside a store
  later is never deleted with it), or an empty folder; anything else is refused.
- An output is written into `DST.tmp-<pid>` next to DST and renamed to DST only when complete,
  so a folder named DST is always a finished output. Replacing moves the old DST aside to
  `DST.old-<pid>` first. Both carry an owner marker (host and pid) until they are gone; the
  next command writing the same DST on the same host repairs what a killed one left
  (`recover_interrupted`): it puts back a DST.old whose replacement never arrived, and deletes
  the rest. A run on another node of a shared filesystem is never mistaken for a dead one.

Report files (evaluate, cv_report): a file is replaced only when the file already there is one of
ours (its first line says so); a user's file of the same name is refused.
"""
from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import shutil
import socket
from pathlib import Path
from typing import Callable, Iterable

from maize_ddp.errors import Error
from maize_ddp.runlock import alive


class OutputError(Error, ValueError):
    """An output that would destroy or shadow what the command did not create."""


OWNER_FILE = ".convert-owner"
INVENTORY_FILE = ".convert-files"  # every path the command wrote into its output, one a line
# The file each of our commands writes at the top of its output, what in it says so, and what
# the output is (for messages).
OUTPUT_SIGNS = (
    ("zarr.json", lambda doc: str(doc.get("attributes", {}).get("format", "")).startswith("maize_ddp/"),
     "a Zarr store"),
    ("manifest.json", lambda doc: str(doc.get("format", "")).startswith("maize_ddp/"), "a WebDataset store"),
    ("truth.json", lambda doc: doc.get("generator") == "convert.synth", "a convert.synth dataset"),
    ("summary.json", lambda doc: doc.get("generator") in ("convert.genome_to_npz", "convert.table_to_npz")
     or "fasta" in doc.get("settings", {}),  # genome_to_npz before it wrote `generator`
     "an npz dataset of genome_to_npz or table_to_npz"),
    ("interpret.json", lambda doc: doc.get("generator") == "maize_ddp.interpret", "an interpret output"),
    ("design.json", lambda doc: doc.get("generator") == "maize_ddp.design", "a design output"),
    ("motifs.json", lambda doc: doc.get("generator") == "maize_ddp.motifs", "a motifs output"),
)


def output_kind(path) -> str | None:
    """The sign file of the command that wrote the folder at path (a store, synth, genome_to_npz,
    table_to_npz or interpret output), or None when none of ours did."""
    path = Path(path)
    for name, sign, _ in OUTPUT_SIGNS:
        try:
            doc = json.loads((path / name).read_text())
            if isinstance(doc, dict) and sign(doc):
                return name
        except (OSError, ValueError, AttributeError):
            continue  # absent, unreadable or of another shape: not this sign
    return None


def is_our_output(path) -> bool:
    return output_kind(path) is not None


def refuse_existing(dst, overwrite: bool, inputs: Iterable = (), kind: str | None = None) -> None:
    """Refuse a DST that would destroy what this command did not create (see the module doc).
    `kind`, the sign file this command writes: --overwrite replaces only an output of that kind
    (npz_to_zarr never replaces a WebDataset store that happens to sit at DST).

    First repairs what a killed command left beside DST: that may put DST itself back.
    """
    dst = Path(dst)
    refuse_overlap(dst, inputs)
    recover_interrupted(dst)
    if not (dst.exists() or dst.is_symlink()):
        return
    if not overwrite:
        raise OutputError(f"{dst}: already exists (pass --overwrite to replace it)")
    found = output_kind(dst)
    if found is None and not _empty_dir(dst):
        what = "is a training run's folder" if (dst / "checkpoints").is_dir() else "is not a maize_ddp output"
        raise OutputError(f"{dst}: exists and {what}; refusing to replace it")
    what = {name: text for name, _, text in OUTPUT_SIGNS}
    if found is not None and kind is not None and found != kind:
        raise OutputError(f"{dst}: is {what[found]}, and this command writes {what[kind]}; refusing to replace "
                           "it (choose another output, or remove it yourself)")
    if found is not None:
        extra = _not_written_by_us(dst)
        if extra is None:
            raise OutputError(f"{dst}: is {what[found]} that does not list its contents (written before outputs "
                               "did); refusing to replace it (remove it yourself, or choose another output)")
        if extra:
            more = f" and {len(extra) - 1} more" if len(extra) > 1 else ""
            raise OutputError(f"{dst}: holds {extra[0]}{more}, which this command did not write; refusing to "
                               "replace it (move it out, or choose another output)")


def refuse_overlap(dst, inputs: Iterable) -> None:
    """The output must not be, hold, or lie inside any input: writing it would destroy that input."""
    problem = overlap(dst, inputs)
    if problem:
        raise OutputError(problem)


def _empty_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink() and not any(path.iterdir())


@contextlib.contextmanager
def atomic_output_dir(dst, overwrite: bool = False, inputs: Iterable = (), kind: str | None = None):
    """Yield a fresh temporary folder; on success it becomes DST, on any failure it goes away.

    OSErrors raised inside (a full or read-only disk) become one-line OutputErrors, unless they
    name a file outside the output: those are an input's, and pass through as they are.
    """
    dst = Path(dst)
    inputs = list(inputs)
    refuse_existing(dst, overwrite, inputs, kind)
    tmp = dst.with_name(f"{dst.name}.tmp-{os.getpid()}")
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        _mark(tmp)
    except BaseException as e:  # a full disk, or a SIGTERM that came as the folder was made
        _remove_tree(tmp)
        if isinstance(e, OSError):
            raise OutputError(f"{dst}: cannot create the output folder ({_strerror(e)})") from None
        raise
    try:
        yield tmp
        _write_inventory(tmp)
        refuse_existing(dst, overwrite, inputs, kind)  # DST may have appeared while we worked
        _replace(tmp, dst)
    except BaseException as e:
        _remove_tree(tmp)
        if isinstance(e, OSError) and _about_output(e, tmp, dst):
            raise OutputError(f"{dst}: cannot write the output ({_strerror(e)})") from None
        raise


def _contents(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")} - {OWNER_FILE, INVENTORY_FILE}


def _write_inventory(tmp: Path) -> None:
    (tmp / INVENTORY_FILE).write_text("".join(f"{p}\n" for p in sorted(_contents(tmp))))


def _not_written_by_us(dst: Path) -> list[str] | None:
    """What DST holds beyond the list of what its command wrote (sorted), or None without a list."""
    try:
        written = set((dst / INVENTORY_FILE).read_text().splitlines())
    except OSError:
        return None
    return sorted(_contents(dst) - written) if dst.is_dir() else []


def _replace(tmp: Path, dst: Path) -> None:
    """Swap the finished tmp into DST; a kill at any step leaves what recover_interrupted repairs."""
    old = None
    if dst.is_symlink():  # replacing a link removes the link, never what it points to
        dst.unlink()
    elif dst.exists():
        old = dst.with_name(f"{dst.name}.old-{os.getpid()}")
        _mark(dst)  # so that the moved-aside folder is known to be ours
        os.rename(dst, old)
    try:
        os.rename(tmp, dst)
    except BaseException:
        if old is not None:
            os.rename(old, dst)
            (dst / OWNER_FILE).unlink()
        raise
    (dst / OWNER_FILE).unlink()  # tmp's marker, now in DST
    if old is not None:
        _remove_tree(old)


def recover_interrupted(dst) -> None:
    """Repair what commands killed while writing DST on this host left beside it.

    DST.old-PID is the previous DST, moved aside by an --overwrite killed before it finished:
    put back if DST is missing (its replacement never arrived), deleted otherwise.
    DST.tmp-PID is an unfinished output: deleted. Only folders whose owner marker names this
    host and a process that is gone are touched.
    """
    dst = Path(dst)
    for old in _stale(dst, "old"):
        with contextlib.suppress(OSError):
            if dst.exists() or dst.is_symlink():
                _remove_tree(old)
            else:
                os.rename(old, dst)
                (dst / OWNER_FILE).unlink()
    for tmp in _stale(dst, "tmp"):
        _remove_tree(tmp)


def _stale(dst: Path, kind: str) -> list[Path]:
    """DST.<kind>-* folders marked by a process of this host that is gone."""
    host, found = socket.gethostname(), []
    for path in sorted(dst.parent.glob(glob.escape(dst.name) + f".{kind}-*")):
        try:
            owner_host, pid = (path / OWNER_FILE).read_text().split()
            pid = int(pid)
        except (OSError, ValueError):
            continue  # not ours, or not an output folder: leave it
        if owner_host == host and pid != os.getpid() and not alive(pid):
            found.append(path)
    return found


def _mark(folder: Path) -> None:
    (folder / OWNER_FILE).write_text(f"{socket.gethostname()} {os.getpid()}\n")


def _remove_tree(path: Path) -> None:
    """Delete a folder of ours, its owner marker last: a kill midway leaves it still known as ours."""
    with contextlib.suppress(OSError):
        for child in path.iterdir():
            if child.name == OWNER_FILE:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
        (path / OWNER_FILE).unlink(missing_ok=True)
        path.rmdir()


def _about_output(e: OSError, tmp: Path, dst: Path) -> bool:
    """An OSError is the output's if it names no file (a write to an open one) or one of ours."""
    if not isinstance(e.filename, (str, bytes, os.PathLike)):
        return True
    where = Path(os.path.abspath(os.fsdecode(e.filename)))
    return any(where.is_relative_to(os.path.abspath(p)) for p in (tmp, dst))


def _strerror(e: OSError) -> str:
    if e.errno == errno.EFBIG:
        return "File too large (a file size limit or a full disk)"
    return e.strerror or str(e)


def overlap(dst, inputs: Iterable) -> str | None:
    """Why `dst` may not be written beside `inputs`, or None."""
    out = Path(os.path.realpath(dst))
    for item in inputs:
        real = Path(os.path.realpath(item))
        relation = ("is" if out == real else "holds" if real.is_relative_to(out)
                    else "lies inside" if out.is_relative_to(real) else None)
        if relation:
            return (f"{dst}: the output {relation} the input {os.fspath(item)}; choose an output outside "
                    "the inputs")
    return None


def first_line(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            return fh.readline(4096).decode("utf-8", "replace").rstrip("\r\n")
    except OSError:
        return ""


def foreign_files(folder: Path, ours: dict[str, Callable[[Path], bool]]) -> list[str]:
    """The files among `ours` (name -> is this file ours?) that exist in `folder` and are not ours."""
    return [name for name, is_ours in ours.items() if (Path(folder) / name).exists() and not is_ours(Path(folder) / name)]
