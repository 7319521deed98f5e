"""Databases of known motifs: a user's MEME file, or JASPAR as bundled by `pyjaspar`.

A database is a list of `KnownMotif` (id, name, family, ppm float64 [4, w] over A, C, G, T, each
column summing to 1). `read_meme` is strict: a file that is not a MEME motif file over ACGT is one
`MotifDBError` naming the file and line, never a half-read database. `write_meme` writes MEME
version 4 text, which MEME suite tools, `memelite` and this reader all take.

No torch here: the motifs command reads a database before it loads a model.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from maize_ddp.errors import Error

JASPAR_TAXA = ("plants", "vertebrates", "insects", "nematodes", "fungi", "urochordates", "all")
INSTALL = 'pip install "maize-ddp[motifs]" (or: pip install modisco-lite memelite pyjaspar)'


class MotifDBError(Error, ValueError):
    pass


class MissingPackage(Error, ImportError):
    """An optional package this feature needs is not installed: the message says what to install."""


def require(module: str):
    """Import an optional package of the motifs extra, or one line saying how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingPackage(f"motif discovery needs the package {module!r} ({e}): {INSTALL}") from None


@dataclass
class KnownMotif:
    id: str
    name: str
    ppm: np.ndarray  # float64 [4, w], columns sum to 1
    family: str = ""


# ---------------------------------------------------------------- MEME files


_MATRIX = re.compile(r"letter-probability matrix:")
_WIDTH = re.compile(r"\bw=\s*(\d+)")  # optional in the format: without it the rows run to the first other line


def _numbers(text: str) -> list[float] | None:
    try:
        return [float(v) for v in text.split()]
    except ValueError:
        return None


def read_meme(path) -> list[KnownMotif]:
    """The motifs of a MEME file (version 4 text format: `MOTIF id [name]`, then a
    `letter-probability matrix: ... [w= W]` line and W rows of 4 probabilities; without w=, the
    rows up to the first blank or other line)."""
    path = Path(path)
    try:
        lines = path.read_text(errors="replace").splitlines()
    except IsADirectoryError:
        raise MotifDBError(f"{path}: is a folder, not a MEME motif file") from None
    if not any(line.startswith("MEME version") for line in lines[:50]):
        raise MotifDBError(f"{path}: not a MEME motif file (no 'MEME version' line at the top)")
    for line in lines:
        if line.startswith("ALPHABET"):
            letters = line.split("=", 1)[-1].strip()
            if letters and letters.upper() not in ("ACGT", "ACGT DNA"):
                raise MotifDBError(f"{path}: alphabet {letters!r}; only DNA (ACGT) motifs can be matched")
    motifs: list[KnownMotif] = []
    i = 0
    while i < len(lines):
        words = lines[i].split()
        if not words or words[0] != "MOTIF":
            i += 1
            continue
        if len(words) < 2:
            raise MotifDBError(f"{path}: line {i + 1}: MOTIF without an id")
        motif_id, name, at = words[1], " ".join(words[2:]) or words[1], i + 1
        i += 1
        while i < len(lines) and not _MATRIX.search(lines[i]):
            if lines[i].startswith("MOTIF"):
                raise MotifDBError(f"{path}: line {at}: motif {motif_id!r} has no letter-probability matrix")
            i += 1
        if i == len(lines):
            raise MotifDBError(f"{path}: line {at}: motif {motif_id!r} has no letter-probability matrix")
        given = _WIDTH.search(lines[i])
        width = int(given.group(1)) if given else None
        rows = []
        i += 1
        while width is None or len(rows) < width:
            if i == len(lines):
                if width is None and rows:
                    break
                raise MotifDBError(f"{path}: motif {motif_id!r}: the file ends after {len(rows)} of its "
                                   f"{width if width is not None else 'expected'} rows")
            text = lines[i].strip()
            if width is None and rows and (not text or _numbers(text) is None):
                break  # the end of a matrix without w=
            i += 1
            if not text:
                continue
            row = _numbers(text)
            if row is None:
                raise MotifDBError(f"{path}: line {i}: motif {motif_id!r}: expected 4 probabilities, "
                                   f"got {text[:40]!r}")
            if len(row) != 4 or min(row) < 0 or not np.isfinite(row).all() or abs(sum(row) - 1) > 0.02:
                raise MotifDBError(f"{path}: line {i}: motif {motif_id!r}: expected 4 probabilities summing "
                                   f"to 1, got {text[:40]!r}")
            rows.append(row)
        if width == 0:
            raise MotifDBError(f"{path}: line {at}: motif {motif_id!r} has width 0")
        ppm = np.asarray(rows, dtype=np.float64).T
        motifs.append(KnownMotif(motif_id, name, ppm / ppm.sum(axis=0, keepdims=True)))
    if not motifs:
        raise MotifDBError(f"{path}: no motifs (no MOTIF entries with a letter-probability matrix)")
    return motifs


def meme_text(motifs, background=(0.25, 0.25, 0.25, 0.25)) -> str:
    """MEME version 4 text of (name, ppm [4, w], nsites) triples, or of KnownMotifs."""
    out = ["MEME version 4", "", "ALPHABET= ACGT", "", "strands: + -", "",
           "Background letter frequencies", "A {:.3f} C {:.3f} G {:.3f} T {:.3f}".format(*background), ""]
    for m in motifs:
        if isinstance(m, KnownMotif):
            name, ppm, nsites = f"{m.id} {m.name}" if m.name != m.id else m.id, m.ppm, 20
        else:
            name, ppm, nsites = m
        ppm = np.asarray(ppm, dtype=np.float64)
        out += [f"MOTIF {name}", f"letter-probability matrix: alength= 4 w= {ppm.shape[1]} nsites= {nsites} E= 0"]
        out += [" ".join(f"{v:.6f}" for v in col) for col in ppm.T]
        out.append("")
    return "\n".join(out)


# ---------------------------------------------------------------- JASPAR


def jaspar(taxon: str = "plants", release: str | None = None, collection: str = "CORE") -> list[KnownMotif]:
    """The latest version of every matrix of a JASPAR collection for one taxonomic group ("all":
    every group), from the sqlite releases `pyjaspar` bundles (default: its newest release)."""
    pyjaspar = require("pyjaspar")
    if taxon not in JASPAR_TAXA:
        raise MotifDBError(f"--jaspar-taxon {taxon!r}: choose from {', '.join(JASPAR_TAXA)}")
    release = release or pyjaspar.JASPAR_LATEST_RELEASE
    if release not in pyjaspar.jaspar_releases:
        raise MotifDBError(f"--jaspar-release {release!r}: pyjaspar {pyjaspar.__version__} bundles "
                           f"{', '.join(sorted(pyjaspar.jaspar_releases))}")
    db = pyjaspar.jaspardb(release=release)
    query = {"collection": collection, "all_versions": False}
    if taxon != "all":
        query["tax_group"] = [taxon]
    motifs = []
    for m in db.fetch_motifs(**query):
        counts = np.array([m.counts[b] for b in "ACGT"], dtype=np.float64)
        counts += 1e-3 * counts.sum(axis=0, keepdims=True).clip(min=1)  # no zero column, no log(0) downstream
        motifs.append(KnownMotif(m.matrix_id, m.name, counts / counts.sum(axis=0, keepdims=True),
                                 "/".join(m.tf_family or [])))
    if not motifs:
        raise MotifDBError(f"{release} has no {collection} motifs for taxon {taxon!r}")
    return motifs


def describe_jaspar(taxon: str = "plants", release: str | None = None) -> str:
    pyjaspar = require("pyjaspar")
    return f"{release or pyjaspar.JASPAR_LATEST_RELEASE} CORE {taxon} (pyjaspar {pyjaspar.__version__})"
