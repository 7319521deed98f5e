"""Opening text inputs (tables, FASTA, GFF, VCF) that may be gzip-compressed.

Gzip is detected from the file's magic bytes, not its name, so `genes.tsv`, `genes.tsv.gz`
and bgzip output all just work.
"""
from __future__ import annotations

import contextlib
import gzip
import io
import os
import zlib

_GZIP_MAGIC = b"\x1f\x8b"


def open_maybe_gzip(path: str | os.PathLike, text: bool = True):
    """Open a file for reading, decompressing it when it starts with the gzip magic bytes."""
    with open(path, "rb") as probe:
        gzipped = probe.read(2) == _GZIP_MAGIC
    # GzipFile.readline is pure Python; a BufferedReader on top reads lines in C (~3x faster).
    raw = io.BufferedReader(gzip.GzipFile(path, "rb"), 1 << 20) if gzipped else open(path, "rb", 1 << 20)
    if not text:
        return raw
    # errors="replace": a stray non-UTF-8 byte in a free-text attribute must not stop a run.
    # utf-8-sig: the invisible byte-order mark Excel puts before a CSV's first column name.
    return io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline=None)


@contextlib.contextmanager
def gzip_errors_as(error_cls: type[ValueError], path: str | os.PathLike):
    """Report a damaged gzip stream as a one-line input error naming the file, not a traceback."""
    try:
        yield
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise error_cls(f"{path}: corrupt or truncated gzip data ({exc})") from None
