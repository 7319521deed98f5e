"""Genome FASTA + GFF3 genes + expression table -> the seed's npz shards (DeepCRE-style windows).

    python -m convert.genome_to_npz --fasta G.fa.gz --gff A.gff3.gz --expression tpm.csv --out DIR

writes DIR/{train,val,test}/{split}-00000.npz (arr_0 one-hot float32 [N, 4, L], arr_1 labels
float32 [N, T], ids: the gene ids, str [N]), DIR/genes.tsv (one line per written gene) and DIR/summary.json.

Each gene's window, read 5'->3' on the gene's strand (defaults: Washburn et al. 2019, DeepCRE):

    [1000 bp before the TSS | 500 bp from the TSS on] NNNN(20) [500 bp up to the TTS | 1000 bp after]

GFF coordinates are 1-based inclusive. On + the TSS is `start`, the TTS `end`; on - the TSS is
`end`, the TTS `start`, and the window is cut on + and reverse-complemented. The TSS base is the
first base "downstream of the TSS" and the TTS base the last base "upstream of the TTS", so both
regions of a gene shorter than 500 + 500 bp simply overlap (as in DeepCRE).

`--classes quartiles --class-column COL` makes one binary target `high` instead (1: the top
quartile of COL, 0: the bottom quartile, the middle half left out), for `--task classification`.
`--folds K` writes K complete datasets DIR/fold-I/{train,val,test} for cross-validation.

Memory is bounded by one chromosome (the FASTA is streamed) plus one shard per split.
See docs/genome.md and docs/evaluation.md.
"""
from __future__ import annotations

import argparse
import csv
import fnmatch
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from maize_ddp.fasta import iter_chromosomes
from maize_ddp.genome_windows import WindowGeometry, bases_off_chromosome, extract_window
from maize_ddp.process_exit import exit_process
from maize_ddp.textio import gzip_errors_as, open_maybe_gzip
from maize_ddp.gff import Gene, read_genes
from maize_ddp.outputs import atomic_output_dir, refuse_existing
from convert.output import run_command
from maize_ddp.errors import Error
from maize_ddp.npz_shards import ShardWriter
from maize_ddp.store_format import FLOAT32_MAX

SPLITS = ("train", "val", "test")
AGGREGATES = {
    "mean": lambda x: x.mean(axis=1),
    "median": lambda x: np.median(x, axis=1),
    "max": lambda x: x.max(axis=1),
    "min": lambda x: x.min(axis=1),
    "sum": lambda x: x.sum(axis=1),
}
TRANSFORMS = {
    "log10p1": lambda x: np.log10(x + 1.0),
    "log2p1": lambda x: np.log2(x + 1.0),
    "lnp1": np.log1p,
    "none": lambda x: x,
}
ONEHOT_DTYPES = ("float32", "float16", "uint8")
MAX_EXAMPLES = 5


class ConversionError(Error, ValueError):
    """Inputs that cannot make a dataset; the message is one line naming the file and problem."""


# ---------------------------------------------------------------------------------------------
# Expression table -> labels


@dataclass
class Labels:
    by_gene: dict[str, np.ndarray]  # gene id -> float32 [T]
    names: list[str]  # one per target
    columns: list[list[str]]  # the table columns behind each target
    path: str
    left_out: dict[str, str] = field(default_factory=dict)  # derived column -> what it is a function of


# A column that is a function of the others (a table's logMaxTPM = log10(1 + max of the runs)) is
# a summary, not a measurement: averaged in with the runs it would weigh one run twice, on another
# scale. Only these simple summaries are recognised; --columns chooses exactly.
def derived_columns(names: list[str], values: np.ndarray) -> dict[str, str]:
    """The columns of values [rows, C] that equal transform(aggregate(the other columns)) on
    every row (to float rounding), each with that formula, e.g. {"logMaxTPM": "log10p1(max of ...)"}."""
    found: dict[str, str] = {}
    if values.shape[1] < 3:
        return found
    for j, name in enumerate(names):
        others = np.delete(values, [k for k in range(len(names)) if k == j or names[k] in found], axis=1)
        column = values[:, j]
        for aggregate, reduce in AGGREGATES.items():
            with np.errstate(all="ignore"):
                summary = reduce(others)
                for transform, f in TRANSFORMS.items():
                    if np.allclose(f(summary), column, rtol=1e-4, atol=1e-6, equal_nan=False):
                        inner = f"{aggregate} of the other {others.shape[1]} columns"
                        found[name] = inner if transform == "none" else f"{transform}({inner})"
                        break
            if name in found:
                break
    return found


def read_labels(
    path: str | os.PathLike,
    targets: Mapping[str, Sequence[str]] | None = None,
    id_column: str | None = None,
    aggregate: str = "mean",
    transform: str = "log10p1",
) -> Labels:
    """Read a CSV/TSV (gzip ok) of expression per gene and turn it into float32 labels [T] per gene.

    `targets` maps a target name to column names or glob patterns (`{"leaf": ["ERR*"]}`); each
    target is transform(aggregate(those columns)). None means one target, "label", over every
    column but the id. aggregate="none" makes each selected column its own target.
    """
    if aggregate != "none" and aggregate not in AGGREGATES:
        raise ConversionError(f"unknown aggregate {aggregate!r} (choose from none, {', '.join(AGGREGATES)})")
    if transform not in TRANSFORMS:
        raise ConversionError(f"unknown transform {transform!r} (choose from {', '.join(TRANSFORMS)})")
    with gzip_errors_as(ConversionError, path), open_maybe_gzip(path) as handle:
        header_line = handle.readline()
        if not header_line.strip():
            raise ConversionError(f"{path}: empty expression table")
        delimiter = "\t" if "\t" in header_line else ","
        header = next(csv.reader([header_line], delimiter=delimiter))
        id_index = _id_column_index(path, header, id_column)
        value_columns = [c for i, c in enumerate(header) if i != id_index]
        names, groups = _resolve_targets(path, value_columns, targets, aggregate)
        chosen_by_default = targets is None and aggregate != "none"
        used = sorted({c for g in groups for c in g}, key=header.index)
        used_index = [header.index(c) for c in used]
        ids, raw, line_nos = [], [], []
        seen: dict[str, int] = {}
        for line_no, row in enumerate(csv.reader(handle, delimiter=delimiter), 2):
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != len(header):
                raise ConversionError(f"{path}: line {line_no} has {len(row)} fields, the header has {len(header)}")
            gene_id = row[id_index].strip()
            if gene_id in seen:
                raise ConversionError(f"{path}: line {line_no}: gene id {gene_id!r} already on line {seen[gene_id]}")
            seen[gene_id] = line_no
            ids.append(gene_id)
            raw.append([_parse_value(path, line_no, header[i], row[i]) for i in used_index])
            line_nos.append(line_no)
    if not ids:
        raise ConversionError(f"{path}: the expression table has a header but no rows")
    values = np.asarray(raw, dtype=np.float64)
    left_out = derived_columns(used, values) if chosen_by_default else {}
    if left_out and len(left_out) < len(groups[0]):
        groups = [[c for c in groups[0] if c not in left_out]]
    else:
        left_out = {}
    position = {c: j for j, c in enumerate(used)}
    columns_of = [[position[c] for c in g] for g in groups]
    reduce = (lambda x: x[:, 0]) if aggregate == "none" else AGGREGATES[aggregate]
    with np.errstate(all="ignore"):
        labels = np.stack([TRANSFORMS[transform](reduce(values[:, cols])) for cols in columns_of], axis=1)
    bad = ~np.isfinite(labels)
    if bad.any():
        row, t = np.argwhere(bad)[0]
        raise ConversionError(
            f"{path}: line {line_nos[row]}: target {names[t]!r} is not finite after {transform} "
            f"(negative expression values?)")
    labels = labels.astype(np.float32)
    return Labels(dict(zip(ids, labels)), names, groups, str(path), left_out)


def _id_column_index(path, header: list[str], id_column: str | None) -> int:
    if id_column is None:
        return 0  # expression tables conventionally lead with the gene id
    if id_column not in header:
        raise ConversionError(f"{path}: no id column {id_column!r} (columns: {_short(header)})")
    return header.index(id_column)


def _resolve_targets(path, value_columns, targets, aggregate) -> tuple[list[str], list[list[str]]]:
    requested = dict(targets) if targets else {"label": ["*"]}
    names, groups = [], []
    for name, patterns in requested.items():
        group: list[str] = []
        for pattern in patterns:
            matched = [c for c in value_columns if fnmatch.fnmatchcase(c, pattern)]
            if not matched:
                raise ConversionError(
                    f"{path}: column {pattern!r} matches no column (columns: {_short(value_columns)})")
            group += [c for c in matched if c not in group]
        if aggregate == "none":  # every column is a target of its own, named after the column
            names += group if (name == "label" or len(group) > 1) else [name]
            groups += [[c] for c in group]
        else:
            names.append(name)
            groups.append(group)
    if len(set(names)) != len(names):
        raise ConversionError(f"{path}: target names repeat: {names}")
    return names, groups


def _parse_value(path, line_no: int, column: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ConversionError(f"{path}: line {line_no}, column {column!r}: {text!r} is not a finite number")
    if abs(value) > FLOAT32_MAX:
        raise ConversionError(f"{path}: line {line_no}, column {column!r}: {text!r} is beyond float32's range "
                              "(±3.4e38), as labels are stored")
    return value


# ---------------------------------------------------------------------------------------------
# Splits


def chromosome_split(chrom: str, val_chroms: set[str], test_chroms: set[str]) -> str:
    return "test" if chrom in test_chroms else "val" if chrom in val_chroms else "train"


def block_split(extents: list[tuple[int, int]], fractions: Sequence[float]) -> list[str | None]:
    """Contiguous train|val|test blocks along one chromosome; None marks a gene dropped at a seam."""
    return [None if b is None else SPLITS[b] for b in block_index(extents, fractions)]


def block_index(extents: list[tuple[int, int]], fractions: Sequence[float]) -> list[int | None]:
    """The contiguous block (0, 1, ...) of each gene along one chromosome, block sizes in
    proportion to `fractions`; None marks a gene dropped at a seam.

    `extents` are the genes' window spans (start, end), sorted by gene position. A gene whose
    window overlaps a window of an earlier block is dropped, so no base of sequence is shared
    between blocks even where neighbouring genes' flanks overlap.
    """
    n = len(extents)
    bounds = np.round(np.cumsum(fractions) * n).astype(int)
    bounds[-1] = n
    splits: list[str | None] = []
    earlier_end = -(1 << 62)  # furthest window end of the blocks already laid down
    block_end = earlier_end
    block = 0
    for i, (start, end) in enumerate(extents):
        while i >= bounds[block]:
            block += 1
            earlier_end = max(earlier_end, block_end)
        if block > 0 and start < earlier_end:
            splits.append(None)
            continue
        splits.append(block)
        block_end = max(block_end, end)
    return splits


# ---------------------------------------------------------------------------------------------
# Output


@dataclass
class BuildSummary:
    out: str
    seq_len: int
    targets: list[str]
    target_columns: list[list[str]]
    split_mode: str
    aggregate: str = "mean"
    transform: str = "log10p1"
    rows: dict[str, int] = field(default_factory=dict)
    shards: dict[str, int] = field(default_factory=dict)
    gff_features: int = 0
    gff_genes: int = 0  # after type/biotype/strand/id filtering
    wrong_biotype: int = 0
    no_id: int = 0
    no_strand: int = 0
    duplicate_id: int = 0
    missing_from_table: int = 0
    missing_examples: list[str] = field(default_factory=list)
    table_rows: int = 0
    table_rows_unused: int = 0
    on_missing_chroms: int = 0
    missing_chroms: list[str] = field(default_factory=list)
    skipped_off_edge: int = 0
    padded: int = 0
    dropped_at_block_seams: int = 0
    classes: dict | None = None  # the high/low rule and its thresholds (--classes)
    left_out: dict = field(default_factory=dict)  # derived columns not averaged in (Labels.left_out)
    warnings: list[str] = field(default_factory=list)  # printed as `warning:` lines on stderr
    seconds: float = 0.0

    def lines(self) -> list[str]:
        total = sum(self.rows.values())
        splits = ", ".join(f"{s} {self.rows.get(s, 0)}" for s in SPLITS)
        targets = "; ".join(self._formula(n, c) for n, c in zip(self.targets, self.target_columns))
        lines = [
            f"wrote {total} genes to {self.out} ({splits}) in {self.seconds:.1f} s",
            f"  window {self.seq_len} bp; split {self.split_mode}",
            f"  {len(self.targets)} target(s): {targets}",
            *(f"  left out {name} = {formula}: a summary, not a measurement (--columns to choose)"
              for name, formula in self.left_out.items()),
            f"  GFF: {self.gff_features} features of the chosen type, {self.gff_genes} kept "
            f"({self.wrong_biotype} other biotype, {self.no_strand} without strand, {self.no_id} without id, "
            f"{self.duplicate_id} duplicate ids)",
            f"  table: {self.table_rows} rows; {self.missing_from_table} GFF genes missing from it"
            + (f" (e.g. {', '.join(self.missing_examples)})" if self.missing_examples else "")
            + f"; {self.table_rows_unused} table rows match no kept GFF gene",
            f"  windows: {self.skipped_off_edge} skipped off a chromosome end, {self.padded} padded with N, "
            f"{self.dropped_at_block_seams} dropped at split seams (window overlapping another split)",
        ]
        if self.classes:
            c = self.classes
            lines.append(f"  classes: high = {c['column']} >= {c['high_threshold']:.6g} (top quartile, {c['high']} genes), "
                         f"low = {c['column']} <= {c['low_threshold']:.6g} (bottom quartile, {c['low']}); "
                         f"{c['middle_dropped']} genes in between left out")
        if self.on_missing_chroms:
            lines.append(f"  {self.on_missing_chroms} genes on chromosomes absent from the FASTA: "
                         f"{_short(self.missing_chroms)}")
        return lines

    def _formula(self, name: str, columns: list[str]) -> str:
        # every column, in full: the user checks here what the labels are made of
        inner = columns[0] if len(columns) == 1 else f"{self.aggregate} of {len(columns)} columns: {', '.join(columns)}"
        return f"{name} = {inner}" if self.transform == "none" else f"{name} = {self.transform}({inner})"


def _short(items: Sequence[str], limit: int = MAX_EXAMPLES) -> str:
    items = list(items)
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "")


# ---------------------------------------------------------------------------------------------
# The whole conversion


def build_dataset(
    fasta: str | os.PathLike,
    gff: str | os.PathLike,
    expression: str | os.PathLike,
    out: str | os.PathLike,
    *,
    geometry: WindowGeometry | None = None,
    feature_type: str = "gene",
    biotype: str | None = None,
    biotype_attribute: str | None = None,
    id_attribute: str = "ID",
    strip_prefix: str | None = None,
    id_column: str | None = None,
    targets: Mapping[str, Sequence[str]] | None = None,
    aggregate: str = "mean",
    transform: str = "log10p1",
    classes: str | None = None,
    class_column: str | None = None,
    val_chroms: Sequence[str] = (),
    test_chroms: Sequence[str] = (),
    split_fractions: Sequence[float] | None = None,
    folds: int | None = None,
    edge: str = "skip",
    allow_missing_chroms: bool = False,
    shard_size: int = 1000,
    dtype: str = "float32",
    compress: bool = False,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
) -> BuildSummary | list[BuildSummary]:
    """Write the npz dataset to `out` (atomically) and return what was written and skipped.

    Splits: genes on `val_chroms`/`test_chroms` go to val/test and the rest to train; without
    them, each chromosome is cut into contiguous train|val|test blocks by `split_fractions`
    (default 0.8 0.1 0.1). `folds` = K > 1 writes K datasets out/fold-I instead (see
    fold_splitters) and returns their summaries. `classes="quartiles"` labels genes 1 (top
    quartile of `class_column`) or 0 (bottom quartile) and leaves the middle half out.
    `edge` is "skip" or "pad" for windows running off a chromosome.
    Raises ConversionError/GffError/FastaError (all ValueError) on bad input, ConvertError for an
    `out` it must not write (an input, or not one of our outputs); nothing is left at `out`.
    """
    began = time.perf_counter()
    log = log or (lambda message: None)
    geometry = geometry or WindowGeometry()
    val_set, test_set = set(val_chroms), set(test_chroms)
    fractions = _check_options(val_set, test_set, split_fractions, edge, shard_size, dtype)
    _check_classes_and_folds(classes, class_column, targets, folds, val_set | test_set, split_fractions)
    out = Path(out)
    inputs = [fasta, gff, expression]
    refuse_existing(out, overwrite, inputs, kind="summary.json")  # before the long read: fail fast

    scan = read_genes(gff, feature_type, id_attribute, strip_prefix, biotype, biotype_attribute)
    if classes:
        targets, aggregate, transform = {"high": [class_column]}, "none", "none"
    labels = read_labels(expression, targets, id_column, aggregate, transform)
    joined = [g for g in scan.genes if g.gene_id in labels.by_gene]
    missing = [g.gene_id for g in scan.genes if g.gene_id not in labels.by_gene]
    if not joined:
        raise ConversionError(
            f"{gff}: attribute {id_attribute!r} joins no gene to {expression} "
            f"(GFF ids like {_short([g.gene_id for g in scan.genes], 3)}; table ids like "
            f"{_short(list(labels.by_gene), 3)}; see --id-attribute, --strip-prefix, --id-column)")
    table_rows, table_rows_unused = len(labels.by_gene), len(labels.by_gene) - len(joined)
    class_rule = None
    if classes:
        labels, joined, class_rule = quartile_classes(labels, joined, class_column)
    by_chrom: dict[str, list[Gene]] = {}
    for gene in joined:
        by_chrom.setdefault(gene.chrom, []).append(gene)
    for genes in by_chrom.values():
        genes.sort(key=lambda g: (g.start, g.end))
    for flag, chroms in (("--val-chroms", val_set), ("--test-chroms", test_set)):
        unknown = sorted(chroms - set(by_chrom))
        if unknown:
            raise ConversionError(f"{flag}: no kept gene lies on {_short(unknown)} "
                                  f"(chromosomes with genes: {_short(sorted(by_chrom))})")

    def new_summary(where: Path, split_mode: str) -> BuildSummary:
        return BuildSummary(
            out=str(where), seq_len=geometry.length, targets=labels.names, target_columns=labels.columns,
            aggregate=aggregate, transform=transform, split_mode=split_mode, classes=class_rule, left_out=labels.left_out,
            gff_features=scan.features, gff_genes=len(scan.genes), wrong_biotype=scan.wrong_biotype,
            no_id=scan.no_id, no_strand=scan.no_strand, duplicate_id=scan.duplicate_id,
            missing_from_table=len(missing), missing_examples=missing[:MAX_EXAMPLES],
            table_rows=table_rows, table_rows_unused=table_rows_unused,
        )

    # `genes`: how genes were read from the GFF, so maize_ddp.variants finds the same genes
    settings = dict(fasta=str(fasta), gff=str(gff), expression=str(expression),
                    geometry=asdict(geometry), edge=edge, dtype=dtype, layout="N4L",
                    genes=dict(feature_type=feature_type, id_attribute=id_attribute, strip_prefix=strip_prefix,
                               biotype=biotype, biotype_attribute=biotype_attribute))
    if class_rule:
        settings["classes"] = class_rule  # converters copy settings into the store (`origin`)
    write = dict(fasta=fasta, gff=gff, by_chrom=by_chrom, geometry=geometry, edge=edge, labels=labels,
                 allow_missing=allow_missing_chroms, shard_size=shard_size, dtype=dtype, compress=compress,
                 joined=len(joined), log=log)
    with atomic_output_dir(out, overwrite, inputs, kind="summary.json") as tmp:
        if folds:
            layout = fold_splitters(by_chrom, folds)
            caveat = fold_caveat(folds, len(by_chrom))
            summaries = []
            for i, (splitter, description) in enumerate(layout):
                log(f"fold {i}: {description}")
                summary = new_summary(out / f"fold-{i}", f"fold {i} of {folds}: {description}")
                summary.warnings += [caveat] if caveat and i == 0 else []
                _write_dataset(tmp / f"fold-{i}", splitter, summary, began,
                               {**settings, "fold": i, "folds": folds}, **write)
                summaries.append(summary)
            doc = {"generator": "convert.genome_to_npz", "folds": folds,
                   "mode": "chromosomes" if len(by_chrom) >= folds else "position blocks",
                   "fold_list": [{"fold": i, "folder": f"fold-{i}", "split": d, "rows": s.rows}
                                 for i, ((_, d), s) in enumerate(zip(layout, summaries))], "settings": settings}
            # folds.json describes the folds; summary.json marks the folder as ours (--overwrite)
            (tmp / "folds.json").write_text(json.dumps(doc, indent=2) + "\n")
            (tmp / "summary.json").write_text(json.dumps({k: doc[k] for k in ("generator", "folds", "mode",
                                                                                "settings")}, indent=2) + "\n")
            return summaries
        if fractions is None:
            def splitter(chrom, extents):
                return [chromosome_split(chrom, val_set, test_set)] * len(extents)
            mode = "by chromosome"
        else:
            def splitter(chrom, extents):
                return block_split(extents, fractions)
            mode = "in contiguous blocks per chromosome " + "/".join(f"{f:g}" for f in fractions)
        summary = new_summary(out, mode)
        _write_dataset(tmp, splitter, summary, began, settings, **write)
    return summary


def quartile_classes(labels: Labels, genes: list[Gene], column: str) -> tuple[Labels, list[Gene], dict]:
    """High/low labels as DeepCRE makes them: 1 for genes at or above the 75th percentile of
    `column`, 0 at or below the 25th, the middle half dropped. The thresholds are computed once,
    over every gene that joins the table (before windows are cut), so that all folds share them."""
    values = np.array([float(labels.by_gene[g.gene_id][0]) for g in genes])
    low, high = (float(q) for q in np.quantile(values, [0.25, 0.75]))
    kept, by_gene = [], {}
    for gene, value in zip(genes, values):
        label = 1.0 if value >= high else 0.0 if value <= low else None
        if label is not None:
            kept.append(gene)
            by_gene[gene.gene_id] = np.array([label], np.float32)
    rule = {"rule": "quartiles", "column": column, "low_threshold": low, "high_threshold": high,
            "high": int(sum(v[0] == 1 for v in by_gene.values())), "low": int(sum(v[0] == 0 for v in by_gene.values())),
            "middle_dropped": len(genes) - len(kept),
            "thresholds_over": f"the {len(genes)} genes joining the table, before windows are cut"}
    if not rule["high"] or not rule["low"]:
        raise ConversionError(f"{labels.path}: column {column!r} gives no high or no low genes "
                              f"(quartiles {low:g} and {high:g} over {len(genes)} genes)")
    return Labels(by_gene, ["high"], [[column]], labels.path), kept, rule


def fold_caveat(k: int, chromosomes: int) -> str | None:
    """A fold trains on (K-2)/K of the genes (one part tests, one validates): said when that is
    under 60 %, so a small K is a choice, not a surprise."""
    if k >= 5:
        return None
    parts = "chromosome groups" if chromosomes >= k else f"position blocks of {'each' if chromosomes > 1 else 'the'} chromosome"
    return (f"--folds {k} by {parts}: each fold trains on {k - 2} of {k} parts of the genes ({(k - 2) / k:.0%}), "
            f"validates on one and tests on one; --folds 5 trains on 60 %, --folds 10 on 80 %")


def fold_splitters(by_chrom: dict[str, list[Gene]], k: int) -> list[tuple[Callable, str]]:
    """K folds, each a splitter (chrom, window extents) -> split per gene, and a description.

    With at least K chromosomes, fold I tests chromosome group I (chromosomes dealt to K groups
    in turn, so one chromosome each when there are K) and validates on group I+1 (mod K). With
    fewer, every chromosome's genes are cut into K contiguous position blocks: fold I tests block
    I and validates on block I+1 (mod K), on every chromosome; the rest is train. Genes whose
    window overlaps another block's are dropped (block_index), the same genes in every fold, so
    no sequence is shared between a fold's splits and every kept gene is tested exactly once."""
    if k < 3:
        raise ConversionError(f"--folds must be at least 3 (each fold needs a test, a val and a train part), got {k}")
    chroms = list(by_chrom)
    if len(chroms) >= k:
        groups = [chroms[i::k] for i in range(k)]

        def by_chromosome(i):
            test, val = set(groups[i]), set(groups[(i + 1) % k])
            return (lambda chrom, extents: [chromosome_split(chrom, val, test)] * len(extents),
                    f"test {_short(groups[i])}, val {_short(groups[(i + 1) % k])}")
        return [by_chromosome(i) for i in range(k)]
    if min(len(genes) for genes in by_chrom.values()) < k:
        few = min(by_chrom, key=lambda c: len(by_chrom[c]))
        raise ConversionError(f"--folds {k}: chromosome {few} has only {len(by_chrom[few])} genes, fewer than the folds")

    def by_block(i):
        roles = {i: "test", (i + 1) % k: "val"}
        return (lambda chrom, extents: [None if b is None else roles.get(b, "train")
                                        for b in block_index(extents, [1 / k] * k)],
                f"test position block {i + 1}/{k}, val block {(i + 1) % k + 1}/{k} of every chromosome")
    return [by_block(i) for i in range(k)]


def _write_dataset(folder: Path, splitter, summary: BuildSummary, began: float, settings: dict, *, fasta, gff,
                   by_chrom, geometry, edge, labels, allow_missing, shard_size, dtype, compress, joined, log) -> None:
    """One pass over the FASTA writing one dataset (shards, genes.tsv, summary.json) to `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    writers = {s: ShardWriter(folder, s, shard_size, dtype=dtype, compress=compress) for s in SPLITS}
    with open(folder / "genes.tsv", "w") as table:
        table.write("\t".join(["split", "row", "gene_id", "chrom", "start", "end", "strand",
                               "n_padded", *labels.names]) + "\n")
        fasta_names = []
        for chrom, codes in iter_chromosomes(fasta, keep=lambda name: name in by_chrom):
            fasta_names.append(chrom)
            if codes is None:
                continue
            _write_chromosome(chrom, codes, by_chrom[chrom], geometry, edge, splitter, labels, writers, table,
                              summary, fasta)
            log(f"{chrom}: {len(by_chrom[chrom])} genes, {len(codes):,} bp")
            del codes  # free this chromosome before the reader builds the next one
    _check_chromosomes(fasta, gff, fasta_names, by_chrom, allow_missing, summary)
    for writer in writers.values():
        writer.flush()
    summary.rows = {s: w.rows for s, w in writers.items()}
    summary.shards = {s: w.shards for s, w in writers.items()}
    if not any(summary.rows.values()):
        raise ConversionError(
            f"{fasta}: no gene left to write: {joined} joined the table, "
            f"{summary.skipped_off_edge} windows ran off a chromosome end (see --edge pad)")
    summary.seconds = time.perf_counter() - began
    # `generator` marks the folder as ours: --overwrite replaces nothing else.
    (folder / "summary.json").write_text(json.dumps({"generator": "convert.genome_to_npz", **asdict(summary),
                                                     "settings": settings}, indent=2) + "\n")


def _check_classes_and_folds(classes, class_column, targets, folds, chroms, split_fractions) -> None:
    if classes not in (None, "quartiles"):
        raise ConversionError(f"--classes must be quartiles, got {classes!r}")
    if classes and not class_column:
        raise ConversionError("--classes needs --class-column, the table column to rank genes by (e.g. logMaxTPM)")
    if class_column and not classes:
        raise ConversionError("--class-column needs --classes quartiles")
    if classes and targets:
        raise ConversionError("--classes makes the single target `high`; drop --columns/--target")
    if folds and (chroms or split_fractions is not None):
        raise ConversionError("--folds chooses every split itself; drop --val-chroms/--test-chroms/--split-fractions")
    if folds is not None and folds < 3:
        raise ConversionError(f"--folds must be at least 3 (each fold needs a test, a val and a train part), got {folds}")


def _check_options(val_set, test_set, split_fractions, edge, shard_size, dtype) -> tuple[float, ...] | None:
    """Validate the options that need no file; returns the block fractions (None: chromosome split)."""
    if edge not in ("skip", "pad"):
        raise ConversionError(f"--edge must be skip or pad, got {edge!r}")
    if shard_size < 1:
        raise ConversionError(f"--shard-size must be >= 1, got {shard_size}")
    if dtype not in ONEHOT_DTYPES:
        raise ConversionError(f"--dtype must be one of {', '.join(ONEHOT_DTYPES)}, got {dtype!r}")
    if val_set & test_set:
        raise ConversionError(f"chromosomes in both --val-chroms and --test-chroms: {_short(sorted(val_set & test_set))}")
    if val_set or test_set:
        if split_fractions is not None:
            raise ConversionError("choose --split-fractions or --val-chroms/--test-chroms, not both")
        return None
    fractions = tuple(float(f) for f in (split_fractions or (0.8, 0.1, 0.1)))
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
        raise ConversionError(f"--split-fractions needs 3 non-negative numbers summing to 1, got {list(fractions)}")
    return fractions


def _write_chromosome(chrom, codes, genes, geometry, edge, splitter, labels, writers, table, summary, fasta) -> None:
    kept, padded = [], []
    for gene in genes:
        if gene.end > len(codes):
            raise ConversionError(
                f"{fasta}: gene {gene.gene_id} ends at {chrom}:{gene.end}, beyond the chromosome's "
                f"{len(codes)} bp (are FASTA and GFF from the same assembly?)")
        off = bases_off_chromosome(geometry.regions(gene), len(codes))
        if off and edge == "skip":
            summary.skipped_off_edge += 1
            continue
        kept.append(gene)
        padded.append(off)
    splits = splitter(chrom, [_extent(geometry.regions(g)) for g in kept])
    for gene, off, split in zip(kept, padded, splits):
        if split is None:
            summary.dropped_at_block_seams += 1
            continue
        label = labels.by_gene[gene.gene_id]
        row = writers[split].add(extract_window(codes, gene, geometry), label, gene.gene_id)
        summary.padded += off > 0
        table.write("\t".join([split, str(row), gene.gene_id, chrom, str(gene.start), str(gene.end),
                               gene.strand, str(off), *(str(v) for v in label)]) + "\n")


def _extent(regions: list[tuple[int, int]]) -> tuple[int, int]:
    return min(a for a, _ in regions), max(b for _, b in regions)


def _check_chromosomes(fasta, gff, fasta_names, by_chrom, allow_missing, summary) -> None:
    in_fasta = set(fasta_names)
    absent = [c for c in by_chrom if c not in in_fasta]
    if not absent:
        return
    if len(absent) == len(by_chrom):
        raise ConversionError(
            f"chromosome names do not match: {fasta} has {_short(fasta_names, 3)}, "
            f"{gff} has genes on {_short(sorted(by_chrom), 3)}")
    if not allow_missing:
        raise ConversionError(
            f"{gff} has genes on chromosomes missing from {fasta}: {_short(absent)} "
            f"(pass --allow-missing-chroms to skip those genes)")
    summary.missing_chroms = absent
    summary.on_missing_chroms = sum(len(by_chrom[c]) for c in absent)


# ---------------------------------------------------------------------------------------------
# Command line


def _parse_target(text: str) -> tuple[str, list[str]]:
    name, sep, columns = text.partition("=")
    if not sep or not name or not columns:
        raise argparse.ArgumentTypeError(f"expected NAME=COLUMN[,COLUMN...], got {text!r}")
    return name, [c for c in columns.split(",") if c]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m convert.genome_to_npz",
        description="Cut a window around every gene (TSS and TTS regions) and write npz shards "
                    "with its expression label. See docs/genome.md.")
    io_ = p.add_argument_group("inputs and output")
    io_.add_argument("--fasta", required=True, help="genome FASTA, plain or gzip")
    io_.add_argument("--gff", required=True, help="GFF3 annotation, plain or gzip")
    io_.add_argument("--expression", required=True, help="CSV or TSV (gzip ok): gene id column + value columns")
    io_.add_argument("--out", required=True, help="output folder (must not exist unless --overwrite)")
    io_.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    io_.add_argument("--shard-size", type=int, default=1000, help="genes per npz shard (default 1000)")
    io_.add_argument("--dtype", choices=ONEHOT_DTYPES, default="float32", help="one-hot dtype (default float32)")
    io_.add_argument("--compress", action="store_true", help="write np.savez_compressed shards")
    io_.add_argument("--quiet", action="store_true", help="no per-chromosome progress on stderr")

    win = p.add_argument_group("window (bp)")
    win.add_argument("--tss-upstream", type=int, default=1000, help="bases before the TSS (default 1000)")
    win.add_argument("--tss-downstream", type=int, default=500, help="bases from the TSS on (default 500)")
    win.add_argument("--tts-upstream", type=int, default=500, help="bases up to and incl. the TTS (default 500)")
    win.add_argument("--tts-downstream", type=int, default=1000, help="bases after the TTS (default 1000)")
    win.add_argument("--spacer", type=int, default=20, help="N bases between the two regions (default 20)")
    win.add_argument("--promoter-only", action="store_true", help="keep only the TSS region")
    win.add_argument("--edge", choices=("skip", "pad"), default="skip",
                     help="windows running off a chromosome end: skip the gene (default) or pad with N")

    genes = p.add_argument_group("genes")
    genes.add_argument("--feature-type", default="gene", help="GFF column 3 to use (default gene)")
    genes.add_argument("--biotype", help="keep only genes with this biotype, e.g. protein_coding")
    genes.add_argument("--biotype-attribute", help="attribute holding the biotype (default gene_biotype or biotype)")
    genes.add_argument("--id-attribute", default="ID", help="GFF attribute joining the table, e.g. locus_tag (default ID)")
    genes.add_argument("--strip-prefix", help="remove this prefix from GFF ids, e.g. 'gene:' or 'gene-'")
    genes.add_argument("--allow-missing-chroms", action="store_true",
                       help="skip genes on chromosomes absent from the FASTA instead of failing")

    tgt = p.add_argument_group("targets")
    tgt.add_argument("--id-column", help="table column with gene ids (default the first)")
    tgt.add_argument("--columns", nargs="+", metavar="COL",
                     help="value columns or glob patterns, e.g. 'ERR*' (default all but the id)")
    tgt.add_argument("--target", action="append", type=_parse_target, metavar="NAME=COL[,COL...]",
                     help="one target per flag, e.g. --target leaf=ERR1,ERR2 --target root='SRR*'")
    tgt.add_argument("--aggregate", choices=("none", *AGGREGATES), default="mean",
                     help="combine a target's columns (default mean; none: one target per column)")
    tgt.add_argument("--transform", choices=tuple(TRANSFORMS), default="log10p1",
                     help="applied after aggregating (default log10p1 = log10(x + 1))")

    tgt.add_argument("--classes", choices=("quartiles",),
                     help="binary target `high` for --task classification: 1 = top quartile of --class-column, "
                          "0 = bottom quartile, the middle half left out (DeepCRE's rule)")
    tgt.add_argument("--class-column", metavar="COL", help="the table column ranking genes for --classes, e.g. logMaxTPM")

    spl = p.add_argument_group("split")
    spl.add_argument("--val-chroms", nargs="+", default=[], metavar="CHROM", help="chromosomes for val (default: none; see --split-fractions)")
    spl.add_argument("--test-chroms", nargs="+", default=[], metavar="CHROM", help="chromosomes for test (default: none; see --split-fractions)")
    spl.add_argument("--split-fractions", nargs=3, type=float, metavar=("TRAIN", "VAL", "TEST"),
                     help="contiguous blocks per chromosome (default 0.8 0.1 0.1 when no --*-chroms)")
    spl.add_argument("--folds", type=int, default=None, metavar="K",
                     help="write K cross-validation datasets OUT/fold-I/{train,val,test}: one chromosome group per "
                          "fold when there are at least K chromosomes, else K position blocks per chromosome "
                          "(see docs/evaluation.md)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.target and args.columns:
        print("error: use --columns or --target, not both", file=sys.stderr)
        return 1
    targets = dict(args.target) if args.target else ({"label": args.columns} if args.columns else None)

    def work():
        geometry = WindowGeometry(args.tss_upstream, args.tss_downstream, args.tts_upstream,
                                  args.tts_downstream, args.spacer, args.promoter_only)
        return build_dataset(
            args.fasta, args.gff, args.expression, args.out, geometry=geometry,
            feature_type=args.feature_type, biotype=args.biotype, biotype_attribute=args.biotype_attribute,
            id_attribute=args.id_attribute, strip_prefix=args.strip_prefix, id_column=args.id_column,
            targets=targets, aggregate=args.aggregate, transform=args.transform,
            classes=args.classes, class_column=args.class_column, folds=args.folds,
            val_chroms=args.val_chroms, test_chroms=args.test_chroms, split_fractions=args.split_fractions,
            edge=args.edge, allow_missing_chroms=args.allow_missing_chroms, shard_size=args.shard_size,
            dtype=args.dtype, compress=args.compress, overwrite=args.overwrite,
            log=None if args.quiet else (lambda message: print(message, file=sys.stderr, flush=True)),
        )
    def show(result) -> None:
        for summary in result if isinstance(result, list) else [result]:
            for warning in summary.warnings:
                print(f"warning: {warning}", file=sys.stderr)
            print("\n".join(summary.lines()))
    return run_command(work, show)


if __name__ == "__main__":
    exit_process(main())
