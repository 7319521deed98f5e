"""What would a variant do? Reference vs alternate prediction of every gene window it falls in.

    python -m maize_ddp.variants RUN|CKPT --vcf V.vcf[.gz] --fasta GENOME --gff GENES --out variants.tsv

The windows are those that built the run's data: the genome window geometry its store recorded
(StoreMeta.origin, carried into the checkpoint), strand-aware, cut with convert.genome_to_npz's
own code; a run whose data record no geometry is refused. SNPs and indels up to --max-indel bp
(how an indel changes a window: maize_ddp.variant_windows); multi-allelic sites give one row per
allele; symbolic alleles (<DEL>, *, breakends) are counted, not scored. Predictions are the run's
(its precision, its reverse-complement averaging). The VCF is streamed and windows are batched;
the FASTA is read one chromosome at a time (again only when the VCF moves to another one).

variants.tsv: id (the gene id) first, then chrom, pos, variant (the VCF ID), ref, alt, strand,
region (tss|tts), window_pos (0-based), ref_pred, alt_pred, delta (alt - ref; per target with
several). VARIANTS.summary.json beside it counts what was scored, outside every window, skipped.
A malformed VCF line or a REF that disagrees with the FASTA is one error line naming the VCF
line, unless --skip-invalid, which counts them. Both files are written atomically.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from maize_ddp import distributed, errors, models, progress
from maize_ddp.checkpoint import atomic_write_text, load, temp_path
from maize_ddp.codes import ascii_to_codes, codes_to_ascii
from maize_ddp.chrom_names import ChromNames, read_map
from maize_ddp.arguments import add_run_settings, count, positive_int
from maize_ddp.inference import Predictor, recorded_origin, target_columns
from maize_ddp.origin import geometry as origin_geometry
from maize_ddp.process_exit import exit_process
from maize_ddp.vcf import Site, VcfError, read_sites, symbolic

HEADER_START = "id\tchrom\tpos\tvariant\t"
EXAMPLES = 5


class VariantError(errors.Error, ValueError):
    pass


# ---------------------------------------------------------------- the run's windows


def run_geometry(state: dict, where) -> tuple:
    """The WindowGeometry and edge rule the run's data were cut with: the checkpoint's record of
    its store's origin, else the store at the run's `data` path; an error when neither has one."""
    from maize_ddp.genome_windows import WindowGeometry

    origin = recorded_origin(state)
    if origin_geometry(origin) is None:
        data = state.get("config", {}).get("data")
        origin = None
        if data and Path(data).exists():
            from maize_ddp.data import open_store

            meta = open_store(data).meta
            origin = meta.origin if meta else None
        if origin_geometry(origin) is None:
            raise VariantError(
                f"{where}: the run's data record no genome window geometry (neither the checkpoint nor the "
                f"store {data or '?'} has an origin from convert.genome_to_npz); variants need the windows "
                "the data were built with: build them with convert.genome_to_npz and convert them again")
    geo = origin_geometry(origin)
    fields = ("tss_upstream", "tss_downstream", "tts_upstream", "tts_downstream", "spacer", "promoter_only")
    settings = origin["settings"]
    return WindowGeometry(**{k: geo[k] for k in fields if k in geo}), settings.get("edge", "skip"), \
        settings.get("genes") or {}


GENE_DEFAULTS = {"feature_type": "gene", "id_attribute": "ID", "strip_prefix": None, "biotype": None,
                 "biotype_attribute": None}


def gene_options(a, recorded: dict) -> dict:
    """How to read genes from the GFF: a flag as given, else as genome_to_npz read them for the
    run's data (recorded in its origin), else genome_to_npz's default."""
    return {k: getattr(a, k, None) if getattr(a, k, None) is not None else recorded.get(k, default)
            for k, default in GENE_DEFAULTS.items()}


# ---------------------------------------------------------------- counting


@dataclass
class Summary:
    lines: int = 0  # VCF data lines read
    alleles: int = 0
    scored_rows: int = 0
    scored_alleles: int = 0
    outside_windows: int = 0  # alleles in no kept gene's window
    symbolic: int = 0
    too_long: int = 0
    no_alt: int = 0
    invalid_lines: int = 0
    invalid_examples: list = field(default_factory=list)
    genes_off_edge: int = 0
    chromosomes_without_genes: list = field(default_factory=list)  # as the VCF names them
    matched_sites: int = 0  # sites on a chromosome with genes (whose REF was checked)
    chromosome_names: list = field(default_factory=list)  # VCF names resolved other than as they are

    def invalid(self, message: str) -> None:
        self.invalid_lines += 1
        if len(self.invalid_examples) < EXAMPLES:
            self.invalid_examples.append(message)

    def line(self, out) -> str:
        return (f"{self.lines} VCF lines, {self.alleles} alleles: {self.scored_alleles} in gene windows "
                f"({self.scored_rows} rows), {self.outside_windows} outside every window, {self.symbolic} symbolic, "
                f"{self.too_long} longer than --max-indel, {self.invalid_lines} invalid lines skipped -> {out}")


# ---------------------------------------------------------------- scoring


class Scorer:
    """Batches alternate windows (and each gene's reference window, predicted once per gene)."""

    def __init__(self, predictor: Predictor, batch_size: int, write):
        self.predictor, self.batch_size, self.write = predictor, batch_size, write
        self.ref_pred: dict[str, np.ndarray] = {}  # gene id -> prediction, for the current chromosome
        self.pending: list[tuple] = []  # (row fields, gene id, ref window or None, alt window)

    def predict(self, windows: list[np.ndarray]) -> np.ndarray:
        return self.predictor.array(np.stack(windows), len(windows))

    def add(self, fields: list[str], gene_id: str, ref: np.ndarray | None, alt: np.ndarray) -> None:
        self.pending.append((fields, gene_id, ref, alt))
        if len(self.pending) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        need = {}
        for _, gene_id, ref, _ in self.pending:
            if gene_id not in self.ref_pred and ref is not None:
                need[gene_id] = ref
        if need:
            for gene_id, pred in zip(need, self.predict(list(need.values()))):
                self.ref_pred[gene_id] = pred
        alt_pred = self.predict([alt for *_, alt in self.pending])
        for (fields, gene_id, _, _), alt in zip(self.pending, alt_pred):
            ref = self.ref_pred[gene_id]
            values = [f"{v:.6g}" for v in ref] + [f"{v:.6g}" for v in alt] + [f"{v:.6g}" for v in alt - ref]
            self.write("\t".join(fields + values) + "\n")
        self.pending = []

    def new_chromosome(self) -> None:
        self.flush()
        self.ref_pred.clear()  # memory bounded by one chromosome's genes


def header(num_targets: int, origin: dict | None = None) -> str:
    """The table's header: with several targets a column of each value per target, named as the
    run's data named them (delta_leaf), else numbered (delta_0)."""
    cols = ["id", "chrom", "pos", "variant", "ref", "alt", "strand", "region", "window_pos"]
    cols += [c for w in ("ref_pred", "alt_pred", "delta") for c in target_columns(w, origin, num_targets)]
    return "\t".join(cols) + "\n"


class Genome:
    """One FASTA chromosome at a time, read again from the start when another one is asked for."""

    def __init__(self, path):
        self.path, self.name, self.codes = path, None, None

    def chromosome(self, name: str) -> np.ndarray | None:
        from maize_ddp.fasta import iter_chromosomes

        if name != self.name:
            self.name, self.codes = name, None
            for chrom, codes in iter_chromosomes(self.path, keep=lambda n: n == name):
                if codes is not None:
                    self.codes = codes
                    break
        return self.codes


def score_vcf(a, predictor: Predictor, geometry, edge, out_file, num_targets: int, origin=None) -> Summary:
    from maize_ddp.gff import read_genes
    from maize_ddp.variant_windows import alt_window, ref_window, window_position

    summary = Summary()
    scan = read_genes(a.gff, **a.genes)
    by_chrom: dict[str, list] = {}
    for g in scan.genes:
        by_chrom.setdefault(g.chrom, []).append(g)
    windows: dict = {}  # chromosome -> ChromosomeWindows (None: no genes there)
    names = ChromNames(set(by_chrom), a.fasta, read_map(a.chrom_map) if a.chrom_map else None, where=str(a.gff))
    genome = Genome(a.fasta)
    scorer = Scorer(predictor, a.batch_size, out_file.write)
    out_file.write(header(num_targets, origin))
    current = None
    for site in progress.bar(read_sites(a.vcf), desc=f"scoring {a.vcf.name}", unit="lines"):
        if isinstance(site, VcfError):
            if not a.skip_invalid:
                raise site
            summary.lines += 1
            summary.invalid(str(site))
            continue
        summary.lines += 1
        name = names(site.chrom)  # the genome's name for the VCF's chromosome (1 -> Chr1, NC_...)
        if site.chrom != current:
            for note in names.notes[len(summary.chromosome_names):]:
                print(f"[variants] {note}", file=sys.stderr, flush=True)
            summary.chromosome_names = list(names.notes)
            scorer.new_chromosome()
            current = site.chrom
        slot = name if name is not None else ("unresolved", site.chrom)
        if slot not in windows:
            windows[slot] = _chromosome_windows(name, site.chrom, by_chrom, genome, geometry, edge, summary, a)
        cw = windows[slot]
        p, r = site.pos - 1, len(site.ref)
        summary.alleles += len(site.alts)
        if cw is None:
            summary.outside_windows += len(site.alts)
            continue
        summary.matched_sites += 1
        chrom = genome.chromosome(name)
        problem = _ref_problem(site, chrom, a)  # every site of a chromosome with genes, in a window or not
        if problem:
            if not a.skip_invalid:
                raise VariantError(problem)
            summary.invalid(problem)
            summary.alleles -= len(site.alts)
            continue
        genes = cw.genes_at(p, r)
        if not genes:
            summary.outside_windows += len(site.alts)
            continue
        for alt in site.alts:
            if alt == ".":
                summary.no_alt += 1
                continue
            if symbolic(alt):
                summary.symbolic += 1
                continue
            if max(len(alt), r) - 1 > a.max_indel and len(alt) != r:
                summary.too_long += 1
                continue
            alt_codes = ascii_to_codes(alt)
            summary.scored_alleles += 1
            for gene in genes:
                region, pos = window_position(gene, geometry, p, r)
                fields = [gene.gene_id, site.chrom, str(site.pos), site.id, site.ref, alt, gene.strand, region, str(pos)]
                ref = ref_window(chrom, gene, geometry) if gene.gene_id not in scorer.ref_pred else None
                scorer.add(fields, gene.gene_id, ref, alt_window(chrom, gene, geometry, p, r, alt_codes))
                summary.scored_rows += 1
    scorer.flush()
    if summary.lines == 0:
        raise VariantError(f"{a.vcf}: no variant lines (an empty VCF?)")
    if summary.matched_sites == 0 and summary.invalid_lines < summary.lines:
        seen = ", ".join(repr(c) for c in summary.chromosomes_without_genes[:5])
        ours = ", ".join(repr(c) for c in sorted(by_chrom)[:5])
        raise VariantError(f"{a.vcf}: none of its chromosomes ({seen}) is one the genes of {a.gff} sit on "
                           f"({ours}); are they from the same assembly? Map the names with --chrom-map FILE "
                           "(two columns: VCF name, genome name)")
    return summary


def _chromosome_windows(name, vcf_name, by_chrom, genome, geometry, edge, summary, a):
    from maize_ddp.genome_windows import bases_off_chromosome
    from maize_ddp.variant_windows import ChromosomeWindows

    genes = by_chrom.get(name) if name is not None else None
    if not genes:
        if len(summary.chromosomes_without_genes) < 50:
            summary.chromosomes_without_genes.append(vcf_name)
        return None
    chrom = genome.chromosome(name)
    if chrom is None:
        raise VariantError(f"{a.fasta}: no chromosome {name!r}, which the VCF and {a.gff} name "
                           "(are they from the same assembly?)")
    if edge == "skip":  # as the data: a window running off the chromosome was not built
        kept = [g for g in genes if not bases_off_chromosome(geometry.regions(g), len(chrom))]
        summary.genes_off_edge += len(genes) - len(kept)
        genes = kept
    return ChromosomeWindows.of(genes, geometry)


def _ref_problem(site: Site, chrom: np.ndarray, a) -> str | None:
    p, r = site.pos - 1, len(site.ref)
    if p + r > len(chrom):
        return (f"{a.vcf}: line {site.line}: {site.chrom}:{site.pos} REF {site.ref[:20]} runs past the chromosome's "
                f"end ({len(chrom)} bp in {a.fasta})")
    genome_ref = codes_to_ascii(chrom[p:p + r])
    if any(x != y and "N" not in (x, y) for x, y in zip(site.ref, genome_ref)):  # N matches anything
        return (f"{a.vcf}: line {site.line}: REF {site.ref[:20]} at {site.chrom}:{site.pos}, but {a.fasta} has "
                f"{genome_ref[:20]} there (a VCF of another assembly? see --skip-invalid)")
    return None


# ---------------------------------------------------------------- command line


def _is_our_summary(path: Path) -> bool:
    try:
        return json.loads(path.read_text()).get("generator") == "maize_ddp.variants"
    except (OSError, ValueError, AttributeError):
        return False


def check_out(out: Path, overwrite: bool, inputs) -> None:
    """--out is a new file, or (with --overwrite) an earlier variants table: nothing else is replaced."""
    for item in inputs:
        if Path(item).exists() and os.path.realpath(item) == os.path.realpath(out):
            raise VariantError(f"{out}: is the input {item}; choose another --out")
    if out.is_dir():
        raise VariantError(f"{out}: is a folder; --out is the TSV file to write")
    summary = summary_path(out)
    if summary.exists() and not _is_our_summary(summary):
        raise VariantError(f"{summary}: exists and is not a variants summary; not replacing it (choose another --out)")
    if not out.exists():
        return
    if not overwrite:
        raise VariantError(f"{out}: exists; pass --overwrite to replace it")
    with open(out, "rb") as fh:
        if not fh.read(64).decode("utf-8", "replace").startswith(HEADER_START):
            raise VariantError(f"{out}: is not a variants table; not replacing it")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m maize_ddp.variants", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", type=Path, help="a run folder (uses checkpoints/best.pt) or a .pt file")
    p.add_argument("--vcf", required=True, type=Path, help="VCF, plain or gzip/bgzip")
    p.add_argument("--fasta", required=True, type=Path, help="the genome FASTA the data were built from")
    p.add_argument("--gff", required=True, type=Path, help="the GFF3 the data were built from")
    p.add_argument("--out", required=True, type=Path, help="variants TSV (a summary .summary.json goes beside it)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it is an earlier variants table")
    p.add_argument("--skip-invalid", action="store_true",
                   help="count malformed VCF lines and REF/FASTA disagreements instead of stopping")
    p.add_argument("--max-indel", type=count, default=50, help="longest indel scored, in bp (default 50)")
    p.add_argument("--chrom-map", type=Path, help="VCF chromosome names to the genome's: two columns per line "
                   "(default: as they are, else without chr/chromosome prefixes, else by the FASTA headers' "
                   "'chromosome N'; see maize_ddp/chrom_names.py)")
    p.add_argument("--batch-size", type=positive_int, default=128, help="windows per forward pass (default 128)")
    p.add_argument("--device", default="auto", help="auto (cuda when available) | cpu | cuda (default auto)")
    genes = p.add_argument_group("genes (default: as convert.genome_to_npz read them for the run's data)")
    genes.add_argument("--feature-type", help="GFF column 3 to use, as genome_to_npz's flag")
    genes.add_argument("--id-attribute", help="GFF attribute of the gene id, as genome_to_npz's flag")
    genes.add_argument("--strip-prefix", help="prefix removed from GFF ids, as genome_to_npz's flag")
    genes.add_argument("--biotype", help="keep only genes of this biotype, as genome_to_npz's flag")
    genes.add_argument("--biotype-attribute", help="attribute holding the biotype, as genome_to_npz's flag")
    add_run_settings(p)
    return p


def summary_path(out: Path) -> Path:
    return out.with_name(out.name.removesuffix(".tsv") + ".summary.json")


def run(a) -> Summary:
    """The command: load the run, then score_variants."""
    check_out(a.out, a.overwrite, [a.vcf, a.fasta, a.gff])
    device = distributed.pick_device(a.device, 0)
    state = load(a.checkpoint)
    predictor = Predictor.of_checkpoint(state, device, a.checkpoint, a.trust_model_code, a.amp, a.rc_average)
    return score_variants(predictor, state, a.checkpoint, a.vcf, a.fasta, a.gff, a.out, overwrite=a.overwrite,
                          chrom_map=a.chrom_map,
                          max_indel=a.max_indel, skip_invalid=a.skip_invalid, batch_size=a.batch_size,
                          **{k: getattr(a, k) for k in GENE_DEFAULTS})


def score_variants(predictor: Predictor, state: dict, where, vcf, fasta, gff, out, *, overwrite: bool = False, chrom_map=None, max_indel: int = 50, skip_invalid: bool = False,
                   batch_size: int = 128, **genes) -> Summary:
    """Score every allele of `vcf` in the gene windows the run's data were cut with, by `predictor`
    (the run's model and settings), writing the variants table `out` and its summary beside it (the
    module doc); `state` is the checkpoint's record (its config and store origin), `genes` GFF
    reading flags that override the recorded ones."""
    a = SimpleNamespace(checkpoint=where, vcf=Path(vcf), fasta=Path(fasta), gff=Path(gff), out=Path(out),
                        overwrite=overwrite, chrom_map=Path(chrom_map) if chrom_map else None, max_indel=max_indel,
                        skip_invalid=skip_invalid, batch_size=batch_size,
                        **{k: genes.get(k) for k in GENE_DEFAULTS})
    unknown = set(genes) - set(GENE_DEFAULTS)
    if unknown:
        raise VariantError(f"unknown gene option(s) {sorted(unknown)} (choose from {', '.join(GENE_DEFAULTS)})")
    check_out(a.out, a.overwrite, [a.vcf, a.fasta, a.gff])
    geometry, edge, recorded_genes = run_geometry(state, where)
    a.genes = gene_options(a, recorded_genes)
    seq_len = models.io_shape(state)[0]
    if geometry.length != seq_len:
        raise VariantError(f"{where}: the model takes {seq_len} bp, the recorded window "
                           f"geometry makes {geometry.length} bp")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(a.out)
    try:
        with open(tmp, "w") as fh:  # streamed: memory does not grow with the VCF
            summary = score_vcf(a, predictor, geometry, edge, fh, models.io_shape(state)[1],
                                recorded_origin(state))
        doc = {"generator": "maize_ddp.variants", "checkpoint": str(a.checkpoint), "vcf": str(a.vcf),
               "fasta": str(a.fasta), "gff": str(a.gff), "geometry": geometry.__dict__, "edge": edge,
               "rc_average": predictor.rc_average, **summary.__dict__}
        atomic_write_text(summary_path(a.out), json.dumps(doc, indent=2) + "\n")
        os.replace(tmp, a.out)  # the table last: once it is there, it is complete
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return summary


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    return errors.run_main(lambda: run(a).line(a.out))


if __name__ == "__main__":
    exit_process(main())
