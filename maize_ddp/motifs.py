"""From attributions to motifs: TF-MoDISco patterns, matched to known motifs with Tomtom.

    python -m maize_ddp.motifs RUN --data STORE|NPZ_FOLDER|TABLE|FASTA [--split test]
        [--top N | --ids ID ...] --out DIR
    python -m maize_ddp.motifs --attributions INTERPRET_OUT/attributions.npz --out DIR

The per-base scores (ISM by default, as `maize_ddp.interpret` computes them; from a run they are
computed here) go to TF-MoDISco (the `modisco-lite` package): it cuts seqlets, the short stretches
whose summed contribution stands out from a null, clusters them into patterns, separately for
positive (the bases raise the prediction) and negative ones. Each pattern's core is matched
against a motif database with Tomtom (`memelite`): JASPAR CORE plants as `pyjaspar` bundles it,
or a MEME file (--motif-db). Writes, into DIR atomically:

    motifs.tsv          a pattern a line: sign, seqlets, consensus, the best database matches
                        (id, name, family, Tomtom p-value, q-value)
    seqlets.tsv         id first: each seqlet's pattern, start, end, strand, position from the TSS
    patterns.meme       the patterns' cores as a MEME motif file
    logos/PATTERN.png   per pattern: contribution (CWM) and information-content logos
    attributions.npz    (from a run only) the scores used, in interpret's format: rerun with
                        --attributions to try other settings without the model
    motifs.json         what was run (marks the folder as this command's output)

Library: `discover(codes, scores)` -> Discovery (patterns + seqlets), `match(patterns, db)`.
Needs the optional packages: pip install "maize-ddp[motifs]". See docs/motifs.md.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from maize_ddp import errors
from maize_ddp.codes import ALPHABET, COMPLEMENT
from maize_ddp.motif_db import KnownMotif, MotifDBError, jaspar, meme_text, read_meme, require
from maize_ddp.process_exit import exit_process

GENERATOR = "maize_ddp.motifs"
MANIFEST = "motifs.json"
MIN_ROWS = 20  # a null for the seqlet threshold and clusters across rows need more than a handful


class MotifError(errors.Error, ValueError):
    pass


# ---------------------------------------------------------------- results


@dataclass
class Seqlet:
    """One occurrence of a pattern's core: row index, [start, end) in the row (0-based), strand
    (+: the pattern reads as in the row; -: on the reverse complement) and summed contribution."""
    row: int
    start: int
    end: int
    strand: str
    contribution: float


@dataclass
class Pattern:
    name: str  # pos_0, pos_1, ... neg_0, ...: by sign, most seqlets first
    sign: str  # "+" raises the prediction, "-" lowers it
    ppm: np.ndarray  # float [4, w]: base frequencies of the core over the seqlets
    cwm: np.ndarray  # float [4, w]: mean contribution of each base (zero where absent)
    seqlets: list[Seqlet] = field(repr=False)

    @property
    def consensus(self) -> str:
        """The most frequent base at each position; lower case where it is under half the seqlets."""
        best = self.ppm.argmax(axis=0)
        return "".join(ALPHABET[b] if self.ppm[b, j] >= 0.5 else ALPHABET[b].lower() for j, b in enumerate(best))

    @property
    def information(self) -> np.ndarray:
        """Information content per position (bits, uniform background) [w]."""
        p = np.clip(self.ppm, 1e-9, 1)
        return 2 + (p * np.log2(p)).sum(axis=0)


@dataclass
class Discovery:
    patterns: list[Pattern]
    n_rows: int
    seqlets: dict  # {"+": n, "-": n}: the seqlets that passed the threshold, before clustering
    threshold: float
    settings: dict


@dataclass
class Match:
    id: str
    name: str
    family: str
    p: float
    q: float


# ---------------------------------------------------------------- TF-MoDISco


def hypothetical(scores: np.ndarray, codes: np.ndarray, method: str = "ism") -> np.ndarray:
    """Per-base scores [N, 4, L] as TF-MoDISco's hypothetical contributions [N, L, 4] float32.

    ISM (f(base k at l) - f(reference)) is mean-centred at each position, so the reference base's
    entry is minus the mean effect of changing it and the others are what they would contribute in
    its place. Gradient x input has only the reference entry: used as it is (the clusters then see
    the actual contributions only; prefer ISM)."""
    scores = np.asarray(scores, dtype=np.float32)
    if scores.ndim != 3 or scores.shape[1] != 4 or scores.shape[0] != len(codes) or scores.shape[2] != codes.shape[1]:
        raise MotifError(f"scores must be [N, 4, L] matching codes {list(codes.shape)}, got {list(scores.shape)}")
    if not np.isfinite(scores).all():
        raise MotifError("the scores hold NaN or infinite values")
    if method == "ism":
        scores = scores - scores.mean(axis=1, keepdims=True)
    scores = scores * (codes < 4)[:, None, :]  # N positions carry no sequence
    return np.ascontiguousarray(scores.transpose(0, 2, 1), dtype=np.float32)


def one_hot(codes: np.ndarray) -> np.ndarray:
    """uint8 codes [N, L] -> float32 one-hot [N, L, 4] (N: all zero)."""
    return np.eye(5, 4, dtype=np.float32)[codes]


def discover(codes: np.ndarray, scores: np.ndarray, *, method: str = "ism", window: int = 21, flank: int = 10,
             min_seqlets: int = 100, max_seqlets: int = 20000, fdr: float = 0.2, leiden_runs: int = 50,
             min_cluster: int = 20, trim: float = 0.3, seed: int = 0, verbose: bool = False) -> Discovery:
    """TF-MoDISco (modisco-lite) on uint8 codes [N, L] and per-base scores [N, 4, L].

    window/flank: the seqlet's core window and the flank added either side; min_seqlets: a sign
    (positive, negative) is clustered only with more seqlets than this; max_seqlets: at most this
    many of each sign; fdr: the seqlet threshold's target false discovery rate; leiden_runs:
    clusterings tried; min_cluster: seqlets a pattern needs; trim: a pattern's core is the span
    whose positions carry at least this fraction of its largest |contribution|.

    Raises MotifError when there are fewer than MIN_ROWS rows or too few seqlets of either sign.
    modisco-lite fixes its own random seeds; `seed` also seeds numpy's and Python's global
    generators before it runs, so one seed gives one output."""
    require("modiscolite")
    from modiscolite import extract_seqlets
    from modiscolite.tfmodisco import TFMoDISco

    if seed < 0:
        raise MotifError(f"seed must not be negative, not {seed}")
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.dtype != np.uint8 or (codes.size and codes.max() > 4):
        raise MotifError("codes must be uint8 [N, L] with values 0..4 (A, C, G, T, N)")
    n, length = codes.shape
    if n < MIN_ROWS:
        raise MotifError(f"{n} row(s): motif discovery needs at least {MIN_ROWS} (TF-MoDISco learns its seqlet "
                         "threshold from the scores and clusters seqlets across rows); give it more rows")
    if length < window + 2 * flank:
        raise MotifError(f"rows of {length} bp are shorter than a seqlet (--window {window} + 2 x --flank {flank})")
    hyp = hypothetical(scores, codes, method)
    onehot = one_hot(codes)
    contrib = onehot * hyp
    settings = dict(method=method, window=window, flank=flank, min_seqlets=min_seqlets, max_seqlets=max_seqlets,
                    fdr=fdr, leiden_runs=leiden_runs, min_cluster=min_cluster, trim=trim, seed=seed)
    np.random.seed(seed)
    random.seed(seed)
    # the seqlets TFMoDISco will cut, counted by sign first: "too few" is then one clear line
    # rather than a run that silently returns nothing
    suppress = int(0.5 * window) + flank
    try:
        coords, threshold = extract_seqlets.extract_seqlets(
            attribution_scores=contrib.sum(axis=2), window_size=window, flank=flank, suppress=suppress,
            target_fdr=fdr, min_passing_windows_frac=0.03, max_passing_windows_frac=0.2,
            weak_threshold_for_counting_sign=0.8)
    except (ValueError, IndexError) as e:  # no window above the null at all
        raise MotifError(f"no seqlets: the scores of {n} rows have no window that stands out ({e})") from None
    track = contrib.sum(axis=2)
    core = [float(track[c.example_idx, c.start + flank:c.end - flank].sum()) for c in coords]
    counts = {"+": int(sum(s > threshold for s in core)), "-": int(sum(s < -threshold for s in core))}
    if max(counts.values()) <= min_seqlets:
        raise MotifError(f"too few seqlets: {counts['+']} positive and {counts['-']} negative passed the threshold "
                         f"(TF-MoDISco clusters a sign with more than --min-seqlets {min_seqlets}); give more rows "
                         "or lower --min-seqlets")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba and sklearn deprecation chatter
        pos, neg = TFMoDISco(onehot, hyp, sliding_window_size=window, flank_size=flank,
                             min_metacluster_size=min_seqlets, max_seqlets_per_metacluster=max_seqlets,
                             target_seqlet_fdr=fdr, n_leiden_runs=leiden_runs, final_min_cluster_size=min_cluster,
                             verbose=verbose)
    patterns = []
    for sign, found in (("+", pos), ("-", neg)):
        made = [_pattern(p, sign, contrib, trim) for p in (found or [])]
        made.sort(key=lambda p: -len(p.seqlets))  # stable: modisco's order among equals
        for k, p in enumerate(made):
            p.name = f"{'pos' if sign == '+' else 'neg'}_{k}"
        patterns += made
    return Discovery(patterns, n, counts, float(threshold), settings)


def _pattern(found, sign: str, contrib: np.ndarray, trim: float) -> Pattern:
    """A modisco pattern cut to its core, with each seqlet's core coordinates in its row."""
    cwm = np.asarray(found.contrib_scores, dtype=np.float64)  # [w, 4]
    weight = np.abs(cwm).sum(axis=1)
    keep = np.flatnonzero(weight >= trim * weight.max())
    a, b = int(keep.min()), int(keep.max()) + 1
    seqlets, seen = [], set()
    for s in found.seqlets:
        t = s.trim(a, b)  # coordinates in the row; a - strand seqlet reads the row's reverse complement
        key = (int(t.example_idx), int(t.start), bool(t.is_revcomp))
        if key in seen:
            continue
        seen.add(key)
        value = float(contrib[t.example_idx, t.start:t.end].sum())
        seqlets.append(Seqlet(int(t.example_idx), int(t.start), int(t.end), "-" if t.is_revcomp else "+", value))
    seqlets.sort(key=lambda s: (s.row, s.start, s.strand))
    ppm = np.asarray(found.sequence, dtype=np.float64)[a:b].T
    return Pattern("", sign, ppm / ppm.sum(axis=0, keepdims=True).clip(min=1e-12), cwm[a:b].T, seqlets)


# ---------------------------------------------------------------- Tomtom


def match(patterns: list[Pattern], db: list[KnownMotif], top: int = 3) -> tuple[list[list[Match]], str | None]:
    """The `top` best database matches of each pattern's core by Tomtom (memelite), best first,
    with p-values and Benjamini-Hochberg q-values over the whole database; and a note when the
    database is too small for reliable p-values (memelite's warning), else None."""
    if not patterns:
        return [], None
    tomtom = require("memelite").tomtom
    queries = [np.ascontiguousarray((p.ppm + 1e-3) / (p.ppm + 1e-3).sum(axis=0)) for p in patterns]
    targets = [np.ascontiguousarray(m.ppm) for m in db]
    note = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pvalues = tomtom(queries, targets)[0]  # [Q, T]: the best alignment's p-value per pair
    for w in caught:
        if "target motifs" in str(w.message):
            note = (f"the motif database has {len(db)} motifs: Tomtom's p-values use its columns as the background "
                    "and are unreliable below 25 motifs")
    pvalues = np.nan_to_num(np.asarray(pvalues, dtype=np.float64), nan=1.0).clip(0, 1)
    out = []
    for p in pvalues:
        q = bh_qvalues(p)
        best = np.lexsort((np.arange(len(p)), p))[:top]
        out.append([Match(db[j].id, db[j].name, db[j].family, float(p[j]), float(q[j])) for j in best])
    return out, note


def bh_qvalues(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q-values (monotone) of one query's p-values against every target."""
    p = np.asarray(p, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    ranked = p[order] * len(p) / np.arange(1, len(p) + 1)
    q = np.minimum.accumulate(ranked[::-1])[::-1].clip(max=1)
    out = np.empty_like(q)
    out[order] = q
    return out


# ---------------------------------------------------------------- tables


def motifs_table(discovery: Discovery, matches: list[list[Match]], top: int = 3) -> str:
    """pattern, sign, seqlets, rows (rows with one), width, consensus, mean_contribution (per
    seqlet), then per match k: match{k}_id, _name, _family, _p, _q (empty when none)."""
    head = ["pattern", "sign", "seqlets", "rows", "width", "consensus", "mean_contribution"]
    for k in range(1, top + 1):
        head += [f"match{k}_{c}" for c in ("id", "name", "family", "p", "q")]
    lines = ["\t".join(head)]
    for i, p in enumerate(discovery.patterns):
        mean = np.mean([s.contribution for s in p.seqlets]) if p.seqlets else 0.0
        cells = [p.name, p.sign, str(len(p.seqlets)), str(len({s.row for s in p.seqlets})), str(p.ppm.shape[1]),
                 p.consensus, f"{mean:.6g}"]
        found = matches[i] if i < len(matches) else []
        for k in range(top):
            m = found[k] if k < len(found) else None
            cells += [m.id, _clean(m.name), _clean(m.family), f"{m.p:.3g}", f"{m.q:.3g}"] if m else [""] * 5
        lines.append("\t".join(cells))
    return "\n".join(lines) + "\n"


def seqlets_table(discovery: Discovery, ids, codes: np.ndarray, tss: int | None = None) -> str:
    """id, pattern, start, end (0-based, end exclusive, in the row), strand, from_tss (start - TSS
    when the data record the TSS, else empty), contribution, sequence (as the pattern reads it)."""
    lines = ["id\tpattern\tstart\tend\tstrand\tfrom_tss\tcontribution\tsequence"]
    for p in discovery.patterns:
        for s in p.seqlets:
            bases = codes[s.row, s.start:s.end]
            if s.strand == "-":
                bases = COMPLEMENT[bases[::-1]]
            seq = "".join(ALPHABET[b] for b in bases)
            rel = "" if tss is None else str(s.start - tss)
            lines.append(f"{ids[s.row]}\t{p.name}\t{s.start}\t{s.end}\t{s.strand}\t{rel}\t{s.contribution:.6g}\t{seq}")
    return "\n".join(lines) + "\n"


def patterns_meme(patterns: list[Pattern]) -> str:
    return meme_text([(f"{p.name} {p.consensus}", p.ppm, len(p.seqlets)) for p in patterns])


def _clean(text: str) -> str:
    return " ".join(str(text).split())


# ---------------------------------------------------------------- inputs


def read_attributions(path, method: str | None = None):
    """interpret's attributions.npz: (ids [N] str, codes uint8 [N, L], scores [N, 4, L], method,
    prediction [N] or None). `method`: ism or saliency (default ism when the file has it)."""
    path = Path(path)
    try:
        z = np.load(path, allow_pickle=False)
    except (ValueError, EOFError, zipfile.BadZipFile):  # not a zip (numpy then talks of pickles), or a truncated one
        raise MotifError(f"{path}: not a readable .npz file (expected maize_ddp.interpret's attributions.npz)") from None
    if not hasattr(z, "files"):
        raise MotifError(f"{path}: a single array, not an .npz file of ids, codes and scores")
    with z:
        have = set(z.files)
        method = method or ("ism" if "ism" in have else "saliency")
        missing = [k for k in ("ids", "codes", method) if k not in have]
        if missing:
            raise MotifError(f"{path}: no {missing[0]!r} array (expected maize_ddp.interpret's attributions.npz with "
                             f"ids, codes and ism and/or saliency; it has {', '.join(sorted(have)) or 'none'})")
        try:
            ids, codes, scores = z["ids"].astype(str), z["codes"], z[method].astype(np.float32)
            pred = z["prediction"] if "prediction" in have else None
        except (ValueError, EOFError, OSError, zipfile.BadZipFile) as e:
            raise MotifError(f"{path}: cannot read its arrays ({e})") from None
    if codes.dtype != np.uint8 or codes.ndim != 2 or scores.shape != (len(codes), 4, codes.shape[1]) \
            or len(ids) != len(codes):
        raise MotifError(f"{path}: expected ids [N], codes uint8 [N, L] and {method} [N, 4, L]; got "
                         f"{list(ids.shape)}, {codes.dtype}{list(codes.shape)}, {list(scores.shape)}")
    return ids, codes, scores, method, pred


def landmarks_beside(path) -> dict:
    """The landmarks (TSS ...) interpret recorded in the interpret.json next to its attributions.npz."""
    try:
        doc = json.loads((Path(path).parent / "interpret.json").read_text())
    except (OSError, ValueError):
        return {}
    marks = doc.get("landmarks") if isinstance(doc, dict) and doc.get("generator") == "maize_ddp.interpret" else None
    return marks if isinstance(marks, dict) else {}


def choose(ids, pred, wanted: list[str] | None, top: int | None) -> np.ndarray:
    """Row indices: the ids asked for (in that order, each once), the `top` highest predictions
    (best first; ties: the earlier row), or all. From a run or from --attributions alike."""
    if wanted:
        from maize_ddp.inputs import unique_ids

        wanted = unique_ids(wanted)
        where = {str(i): k for k, i in enumerate(ids)}
        missing = [i for i in wanted if i not in where]
        if missing:
            raise MotifError(f"--ids: no row with id {missing[0]!r}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
        return np.array([where[i] for i in wanted], dtype=np.int64)
    if top:
        if pred is None:
            raise MotifError("--top needs predictions, and the attributions file has none")
        return np.lexsort((np.arange(len(pred)), -np.asarray(pred, dtype=np.float64)))[:top]
    return np.arange(len(ids))


def attributions_from_run(run, data, split: str = "test", *, ids: list[str] | None = None, top: int | None = None,
                          method: str = "ism", target: int = 0, batch_size: int | None = None, rows_per_step: int = 8,
                          show_progress: bool = True, **table):
    """(ids, codes, scores [N, 4, L], prediction [N], origin) of a run's rows: the ids asked for, the
    `top` highest predictions, or every row of the input; `table` as Run.predict takes it."""
    from maize_ddp import progress
    from maize_ddp.attribution import ism_batch
    from maize_ddp.inputs import open_rows, rows_with_ids

    batch_size = batch_size or ism_batch(run.device)
    source = open_rows(data, split, run.seq_len, seq_col=table.get("seq_col"), id_col=table.get("id_col"),
                       align=table.get("align") or run.align)
    if ids:
        chosen, codes = rows_with_ids(source, ids)
    else:
        chosen, blocks = [], []
        for block_ids, block in source.blocks():
            chosen += [str(i) for i in block_ids]
            blocks.append(block)
        if not chosen:
            raise MotifError(f"{source.where}: no rows")
        codes = np.concatenate(blocks)
        if top:
            pick = choose(chosen, run.predict(codes, batch_size=batch_size)[:, target], None, top)
            chosen, codes = [chosen[k] for k in pick], codes[pick]
    pred = run.predict(codes, batch_size=batch_size)[:, target]
    scores = np.zeros((len(codes), 4, codes.shape[1]), np.float32)
    bar = progress.bar(total=len(codes), desc=f"attributions ({method})", unit="seqs", enabled=show_progress)
    for s in range(0, len(codes), rows_per_step):
        scores[s:s + rows_per_step] = run.attribute(codes[s:s + rows_per_step], method=method, target=target,
                                                    batch_size=batch_size)
        bar.update(len(codes[s:s + rows_per_step]))
    bar.close()
    return np.asarray(chosen, dtype=str), codes, scores, pred.astype(np.float32), source.origin


def load_db(motif_db: Path | None, taxon: str = "plants", release: str | None = None) -> tuple[list[KnownMotif], str]:
    """The database and a description of it: a MEME file, else JASPAR CORE for the taxon."""
    if motif_db is not None:
        return read_meme(motif_db), str(motif_db)
    from maize_ddp.motif_db import describe_jaspar

    return jaspar(taxon, release), describe_jaspar(taxon, release)


# ---------------------------------------------------------------- writing


def write_output(tmp: Path, discovery: Discovery, matches, ids, codes, tss, top: int, figures: int | None,
                 info: dict, attributions: dict | None = None) -> None:
    """The output files; logos for the first `figures` patterns (None: every one)."""
    (tmp / "motifs.tsv").write_text(motifs_table(discovery, matches, top))
    (tmp / "seqlets.tsv").write_text(seqlets_table(discovery, ids, codes, tss))
    (tmp / "patterns.meme").write_text(patterns_meme(discovery.patterns))
    drawn = discovery.patterns if figures is None else discovery.patterns[:figures]
    if drawn:
        from maize_ddp.motif_plot import logo_figure

        (tmp / "logos").mkdir()
        for i, p in enumerate(drawn):
            best = matches[i][0] if i < len(matches) and matches[i] else None
            title = f"{p.name} ({p.sign}): {len(p.seqlets)} seqlets, {p.consensus}" + (
                f"\nbest match {best.id} {best.name} (q={best.q:.2g})" if best else "")
            logo_figure(tmp / "logos" / f"{p.name}.png", p.cwm, p.ppm, title)
    if attributions is not None:
        np.savez_compressed(tmp / "attributions.npz", **attributions)
    (tmp / MANIFEST).write_text(json.dumps({"generator": GENERATOR, **info}, indent=2) + "\n")  # last


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("modisco-lite", "memelite", "pyjaspar"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


# ---------------------------------------------------------------- command line








def build_parser() -> argparse.ArgumentParser:
    from maize_ddp.arguments import add_trust_flag, count, fraction, positive_int
    from maize_ddp.motif_db import JASPAR_TAXA
    from maize_ddp.sequences import ALIGNMENTS

    p = argparse.ArgumentParser(prog="python -m maize_ddp.motifs", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Needs: pip install \"maize-ddp[motifs]\" (modisco-lite, memelite, pyjaspar). "
                                       "See docs/motifs.md.")
    p.add_argument("checkpoint", type=Path, nargs="?",
                   help="a run folder (uses checkpoints/best.pt) or a .pt file; or give --attributions instead")
    src = p.add_argument_group("input")
    src.add_argument("--attributions", type=Path, metavar="NPZ",
                     help="maize_ddp.interpret's attributions.npz (instead of RUN and --data)")
    src.add_argument("--data", type=Path,
                     help="with RUN: a .zarr/.wds store, a folder of .npz shards, a sequence table (TSV/CSV) or a FASTA file")
    src.add_argument("--split", help="split of a store (default: test; for --ids, the split that holds them; "
                                     "ignored for other inputs)")
    src.add_argument("--seq-col", help="a table's sequence column")
    src.add_argument("--id-col", help="a table's id column (default <file name>:<row>)")
    src.add_argument("--align", choices=ALIGNMENTS,
                     help="fit a table's sequences to the model's length (default: as the run's data were)")
    which = src.add_mutually_exclusive_group()
    which.add_argument("--ids", nargs="+", metavar="ID", help="use only these rows (by id)")
    which.add_argument("--top", type=positive_int, help="use the N rows with the highest prediction (default: every row)")
    src.add_argument("--method", choices=["ism", "saliency"],
                     help="which scores (default ism; from --attributions: ism when the file has it)")
    src.add_argument("--target", default="0", help="with RUN: which target to explain, its index or name (default 0)")
    src.add_argument("--tss", type=count,
                     help="position of the TSS in the rows, for seqlets.tsv's from_tss (default: what the data record)")
    mod = p.add_argument_group("TF-MoDISco")
    mod.add_argument("--window", type=positive_int, default=21, help="seqlet core window in bp (default 21)")
    mod.add_argument("--flank", type=count, default=10, help="bases added either side of a seqlet (default 10)")
    mod.add_argument("--min-seqlets", type=positive_int, default=100,
                     help="a sign is clustered only with more seqlets than this (default 100)")
    mod.add_argument("--max-seqlets", type=positive_int, default=20000, help="at most this many seqlets per sign (default 20000)")
    mod.add_argument("--fdr", type=fraction, default=0.2, help="target FDR of the seqlet threshold (default 0.2)")
    mod.add_argument("--leiden-runs", type=positive_int, default=50, help="Leiden clusterings tried (default 50)")
    mod.add_argument("--min-cluster", type=positive_int, default=20, help="seqlets a pattern needs (default 20)")
    mod.add_argument("--trim", type=fraction, default=0.3,
                     help="a pattern's core: positions with at least this fraction of its largest |contribution| (default 0.3)")
    mod.add_argument("--seed", type=count, default=0, help="random seed (default 0): one seed, one output")
    db = p.add_argument_group("matching (Tomtom)")
    db.add_argument("--motif-db", type=Path, metavar="FILE.meme",
                    help="a MEME motif file to match against (default: JASPAR CORE from pyjaspar)")
    db.add_argument("--jaspar-taxon", choices=JASPAR_TAXA, default="plants",
                    help="JASPAR CORE taxonomic group (default plants; all: every group)")
    db.add_argument("--jaspar-release", help="a JASPAR release pyjaspar bundles, e.g. JASPAR2024 (default: its newest)")
    db.add_argument("--matches", type=positive_int, default=3, help="best matches reported per pattern (default 3)")
    out = p.add_argument_group("output")
    out.add_argument("--out", required=True, type=Path, help="output folder (new, or see --overwrite)")
    out.add_argument("--overwrite", action="store_true", help="replace --out if it is an earlier motifs output")
    out.add_argument("--figures", type=count, default=None, metavar="N",
                     help="draw logos/ for the first N patterns (default: every pattern; 0: none)")
    run = p.add_argument_group("model (with RUN)")
    run.add_argument("--batch-size", type=positive_int, default=None,
                     help="mutants (ISM) per forward pass (default 512 on a GPU, 128 on CPU)")
    run.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    add_trust_flag(run)
    return p


def run(a, say=print) -> dict:
    from maize_ddp.outputs import atomic_output_dir, refuse_existing

    if (a.checkpoint is None) == (a.attributions is None):
        raise errors.ConfigError("give RUN with --data, or --attributions NPZ (one of the two)")
    if a.checkpoint is not None and a.data is None:
        raise errors.ConfigError("RUN needs --data (or give --attributions instead of RUN)")
    if a.attributions is not None and a.data is not None:
        raise errors.ConfigError("--data goes with RUN; --attributions already holds the rows")
    for module in ("modiscolite", "memelite"):
        require(module)
    if a.checkpoint is not None:
        from maize_ddp.checkpoint import checkpoint_file

        inputs = [a.data, checkpoint_file(a.checkpoint)]
    else:
        inputs = [a.attributions]
    inputs += [a.motif_db] if a.motif_db else []
    refuse_existing(a.out, a.overwrite, inputs, MANIFEST)
    db, db_name = load_db(a.motif_db, a.jaspar_taxon, a.jaspar_release)  # a bad database fails before the work
    started = time.perf_counter()
    attributions = None
    if a.attributions is not None:
        ids, codes, scores, method, pred = read_attributions(a.attributions, a.method)
        pick = choose(ids, pred, a.ids, a.top)
        ids, codes, scores = ids[pick], codes[pick], scores[pick]
        marks, origin = landmarks_beside(a.attributions), None
    else:
        from maize_ddp.inputs import split_holding
        from maize_ddp.origin import landmarks, target_index
        from maize_ddp.run import Run

        model = Run.load(a.checkpoint, device=a.device, trust_code=a.trust_model_code)
        a.target = target_index(model.origin, model.num_targets, a.target, "--target")
        method = a.method or "ism"
        a.split = a.split or (split_holding(a.data, a.ids) if a.ids else "test")
        ids, codes, scores, pred, origin = attributions_from_run(
            model, a.data, a.split, ids=a.ids, top=a.top, method=method, target=a.target,
            batch_size=a.batch_size, seq_col=a.seq_col, id_col=a.id_col, align=a.align)
        marks = landmarks(origin, model.seq_len)
        attributions = {"ids": ids, "codes": codes, "prediction": pred, method: scores}
    tss = a.tss if a.tss is not None else marks.get("TSS")
    discovery = discover(codes, scores, method=method, window=a.window, flank=a.flank, min_seqlets=a.min_seqlets,
                         max_seqlets=a.max_seqlets, fdr=a.fdr, leiden_runs=a.leiden_runs, min_cluster=a.min_cluster,
                         trim=a.trim, seed=a.seed)
    matches, note = match(discovery.patterns, db, a.matches)
    if note:
        say(f"[motifs] note: {note}")
    seconds = time.perf_counter() - started
    info = {"input": str(a.attributions or a.checkpoint), "data": str(a.data) if a.data else None,
            "split": a.split if a.data else None, "method": method, "target": a.target if a.data else None,
            "rows": len(ids), "seq_len": int(codes.shape[1]), "tss": tss, "landmarks": marks, "origin": origin,
            "seqlets": discovery.seqlets, "threshold": discovery.threshold,
            "patterns": {"+": sum(p.sign == "+" for p in discovery.patterns),
                         "-": sum(p.sign == "-" for p in discovery.patterns)},
            "settings": discovery.settings, "motif_db": db_name, "motif_db_size": len(db), "note": note,
            "versions": versions(), "seconds": round(seconds, 3)}
    with atomic_output_dir(a.out, a.overwrite, inputs, MANIFEST) as tmp:
        write_output(tmp, discovery, matches, ids, codes, tss, a.matches, a.figures, info, attributions)
    return info


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)

    def work() -> str:
        info = run(a, say=lambda line: print(line, file=sys.stderr, flush=True))
        pats = info["patterns"]
        return (f"{pats['+']} positive and {pats['-']} negative pattern(s) from {info['rows']} rows "
                f"({info['seqlets']['+']} + {info['seqlets']['-']} seqlets) in {info['seconds']:.1f} s -> {a.out}")
    return errors.run_main(work, extra=(MotifDBError,))


if __name__ == "__main__":
    exit_process(main())
