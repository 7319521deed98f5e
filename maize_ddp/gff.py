"""GFF3 gene records: just what a sequence window needs (where, which strand, which id).

Only lines of the chosen feature type are kept, so even a large annotation costs memory in
proportion to its genes, not its exons. Coordinates stay as GFF3 writes them: 1-based, inclusive.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import unquote

from maize_ddp.textio import gzip_errors_as, open_maybe_gzip
from maize_ddp.errors import Error

# Ensembl writes `biotype=`, NCBI RefSeq `gene_biotype=`; without an explicit choice we look at both.
DEFAULT_BIOTYPE_ATTRIBUTES = ("gene_biotype", "biotype")


class GffError(Error, ValueError):
    """The GFF3 file is malformed or the filter finds nothing; the message names the file."""


@dataclass(frozen=True)
class Gene:
    gene_id: str
    chrom: str
    start: int  # 1-based, inclusive
    end: int  # 1-based, inclusive
    strand: str  # "+" or "-"


@dataclass
class GeneScan:
    """Genes that passed the filter, plus counts of what was left out and why."""

    genes: list[Gene] = field(default_factory=list)
    features: int = 0  # lines of the chosen feature type
    wrong_biotype: int = 0
    no_id: int = 0
    no_strand: int = 0
    duplicate_id: int = 0
    attribute_keys: set[str] = field(default_factory=set)  # to suggest alternatives in errors


def parse_attributes(column: str) -> dict[str, str]:
    """`ID=gene:X;Name=Y%3BZ` -> {"ID": "gene:X", "Name": "Y;Z"} (GFF3 percent-escapes decoded)."""
    attributes = {}
    for item in column.strip().split(";"):
        key, sep, value = item.partition("=")
        if sep:
            attributes[key.strip()] = unquote(value.strip())
    return attributes


def read_genes(
    path: str | os.PathLike,
    feature_type: str = "gene",
    id_attribute: str = "ID",
    strip_prefix: str | None = None,
    biotype: str | None = None,
    biotype_attribute: str | None = None,
) -> GeneScan:
    """Scan a GFF3 (plain or gzip) and return the genes of `feature_type` that pass the filter.

    The gene id is attribute `id_attribute` with `strip_prefix` removed where present
    (`ID=gene:Zm00001d000001` with strip_prefix="gene:" -> `Zm00001d000001`). A gene listed
    twice under one id is kept once: a second copy would be the same label on another window.
    """
    biotype_keys = (biotype_attribute,) if biotype_attribute else DEFAULT_BIOTYPE_ATTRIBUTES
    scan = GeneScan()
    seen_ids: set[str] = set()
    with gzip_errors_as(GffError, path), open_maybe_gzip(path) as handle:
        for line_no, line in enumerate(handle, 1):
            if line.startswith("##FASTA"):
                break  # GFF3 may carry the sequences after this directive; they are not features
            if not line.strip() or line.startswith("#"):
                continue
            cols = line.rstrip("\n").split("\t")
            if len(cols) != 9:
                raise GffError(f"{path}: line {line_no}: expected 9 tab-separated columns, found {len(cols)}")
            if cols[2] != feature_type:
                continue
            scan.features += 1
            try:
                start, end = int(cols[3]), int(cols[4])
            except ValueError:
                raise GffError(f"{path}: line {line_no}: start/end {cols[3]!r}/{cols[4]!r} are not integers") from None
            if start < 1 or end < start:
                raise GffError(f"{path}: line {line_no}: invalid coordinates {start}..{end}")
            attributes = parse_attributes(cols[8])
            scan.attribute_keys.update(attributes)
            if biotype is not None and not any(attributes.get(k) == biotype for k in biotype_keys):
                scan.wrong_biotype += 1
                continue
            if cols[6] not in ("+", "-"):
                scan.no_strand += 1  # without a strand there is no TSS to anchor the window on
                continue
            gene_id = attributes.get(id_attribute)
            if not gene_id:
                scan.no_id += 1
                continue
            if strip_prefix and gene_id.startswith(strip_prefix):
                gene_id = gene_id[len(strip_prefix):]
            if gene_id in seen_ids:
                scan.duplicate_id += 1
                continue
            seen_ids.add(gene_id)
            scan.genes.append(Gene(gene_id, cols[0], start, end, cols[6]))
    _check_scan(scan, path, feature_type, id_attribute, biotype, biotype_keys)
    return scan


def _check_scan(scan, path, feature_type, id_attribute, biotype, biotype_keys) -> None:
    if scan.features == 0:
        raise GffError(f"{path}: no features of type {feature_type!r} (see --feature-type)")
    if scan.genes:
        return
    if scan.wrong_biotype == scan.features:
        keys = "/".join(biotype_keys)
        raise GffError(f"{path}: no {feature_type!r} feature has {keys}={biotype} (see --biotype, --biotype-attribute)")
    if scan.no_id:
        keys = ", ".join(sorted(scan.attribute_keys))
        raise GffError(f"{path}: no {feature_type!r} feature has attribute {id_attribute!r} (attributes seen: {keys})")
    raise GffError(f"{path}: no {feature_type!r} feature has a strand (+ or -)")
