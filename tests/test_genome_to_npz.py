"""convert.genome_to_npz on a tiny genome, annotation and expression table written by each test."""
from __future__ import annotations

import csv
import gzip
import json
import random
from pathlib import Path

import numpy as np
import pytest

from maize_ddp.fasta import FastaError, iter_chromosomes
from convert.genome_to_npz import (
    ConversionError,
    WindowGeometry,
    block_split,
    build_dataset,
    extract_window,
    main,
)
from maize_ddp.gff import Gene, GffError, parse_attributes, read_genes
from maize_ddp.codes import ascii_to_codes, codes_to_ascii, onehot_to_codes

# 40 bp, numbered 1-based in blocks of ten so windows can be checked by hand:
#          1-10        11-20       21-30       31-40
CHR_A = "AACCGGTTAC" "GATTACAGGC" "TCAGCATGCA" "CCGTAAGTTC"
# 4 bp before the TSS + 3 from it, 2 NN, 2 up to the TTS + 3 after it: 14 bp
SMALL = WindowGeometry(tss_upstream=4, tss_downstream=3, tts_upstream=2, tts_downstream=3, spacer=2)


def gff_line(chrom, start, end, strand, gene_id, feature="gene", biotype="protein_coding", extra=""):
    attrs = f"ID=gene:{gene_id};locus_tag={gene_id};gene_biotype={biotype}{extra}"
    return f"{chrom}\ttest\t{feature}\t{start}\t{end}\t.\t{strand}\t.\t{attrs}\n"


def write_inputs(tmp: Path, chroms: dict[str, str], genes: list[tuple], table: dict[str, list],
                 columns=("s1", "s2"), gz=False, sep=","):
    """Write genome.fa, genes.gff3 and expr.csv; genes are (chrom, start, end, strand, id)."""
    opener = gzip.open if gz else open
    suffix = ".gz" if gz else ""
    fasta, gff, expr = tmp / f"genome.fa{suffix}", tmp / f"genes.gff3{suffix}", tmp / "expr.csv"
    with opener(fasta, "wt") as f:
        for name, seq in chroms.items():
            f.write(f">{name} description words\n")
            f.writelines(seq[i:i + 7] + "\n" for i in range(0, len(seq), 7))  # wrapped lines
    with opener(gff, "wt") as f:
        f.write("##gff-version 3\n")
        for chrom, start, end, strand, gene_id in genes:
            f.write(gff_line(chrom, start, end, strand, gene_id))
            f.write(f"{chrom}\ttest\tmRNA\t{start}\t{end}\t.\t{strand}\t.\tID=rna-{gene_id};Parent=gene:{gene_id}\n")
    with open(expr, "w") as f:
        f.write(sep.join(["gene_id", *columns]) + "\n")
        for gene_id, values in table.items():
            f.write(sep.join([gene_id, *map(str, values)]) + "\n")
    return fasta, gff, expr


def read_genes_tsv(out: Path) -> list[dict]:
    with open(out / "genes.tsv") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def load_split(out: Path, split: str):
    shards = sorted((out / split).glob("*.npz"))
    xs, ys = zip(*[(np.load(p)["arr_0"], np.load(p)["arr_1"]) for p in shards])
    return np.concatenate(xs), np.concatenate(ys)


# ---------------------------------------------------------------------------------------------
# Windows


def test_window_plus_strand_hand_checked():
    # + gene 11..20: TSS region = 7..13 (7-10 before, 11-13 from the TSS) = TTACGAT,
    # TTS region = 19..23 (19-20 up to the TTS, 21-23 after it) = GCTCA.
    gene = Gene("g", "chrA", 11, 20, "+")
    assert SMALL.regions(gene) == [(6, 13), (18, 23)]
    assert codes_to_ascii(extract_window(ascii_to_codes(CHR_A), gene, SMALL)) == "TTACGAT" + "NN" + "GCTCA"


def test_window_minus_strand_is_reverse_complement_hand_checked():
    # - gene 11..20: TSS = 20. TSS region on + = 18..24 (GGCTCAG) -> reverse complement CTGAGCC,
    # whose 5th base G pairs with the TSS base C at 20. TTS = 11: region 8..12 (TACGA) -> TCGTA.
    gene = Gene("g", "chrA", 11, 20, "-")
    assert SMALL.regions(gene) == [(17, 24), (7, 12)]
    assert codes_to_ascii(extract_window(ascii_to_codes(CHR_A), gene, SMALL)) == "CTGAGCC" + "NN" + "TCGTA"


def test_minus_window_equals_whole_plus_window_reverse_complemented():
    comp = str.maketrans("ACGTN", "TGCAN")
    gene = Gene("g", "chrA", 11, 20, "-")
    plus_order = CHR_A[7:12] + "NN" + CHR_A[17:24]  # [TTS region] NN [TSS region] as cut on +
    expected = plus_order.translate(comp)[::-1]
    assert codes_to_ascii(extract_window(ascii_to_codes(CHR_A), gene, SMALL)) == expected


def test_short_gene_regions_overlap_and_promoter_only():
    gene = Gene("g", "chrA", 11, 12, "+")  # 2 bp: both regions reach into each other
    assert codes_to_ascii(extract_window(ascii_to_codes(CHR_A), gene, SMALL)) == CHR_A[6:13] + "NN" + CHR_A[10:15]
    promoter = WindowGeometry(4, 3, 2, 3, 2, promoter_only=True)
    assert promoter.length == 7
    assert codes_to_ascii(extract_window(ascii_to_codes(CHR_A), gene, promoter)) == CHR_A[6:13]
    assert WindowGeometry().length == 3020


def test_padding_at_both_chromosome_ends():
    codes = ascii_to_codes(CHR_A)
    left = Gene("l", "chrA", 2, 8, "+")  # TSS region 1-based -2..4: three bases before base 1
    assert codes_to_ascii(extract_window(codes, left, SMALL)) == "NNN" + "AACC" + "NN" + CHR_A[6:11]
    right = Gene("r", "chrA", 35, 39, "-")  # TSS 39, 4 bp upstream = 40..43: three past the end
    window = codes_to_ascii(extract_window(codes, right, SMALL))
    assert window[:7] == "NNN" + "GAAC"  # reverse complement of GTTC (37..40) + NNN


def test_geometry_rejects_negative_and_empty():
    from maize_ddp.genome_windows import WindowError

    with pytest.raises(WindowError, match="tss_upstream must be >= 0"):
        WindowGeometry(tss_upstream=-1)
    with pytest.raises(WindowError, match="empty"):
        WindowGeometry(0, 0, 0, 0, 0)


# ---------------------------------------------------------------------------------------------
# Readers


def test_fasta_reader_streams_gzip_lowercase_and_skips(tmp_path):
    path = tmp_path / "g.fa.gz"
    with gzip.open(path, "wt") as f:
        f.write(">c1 desc\nacgT\nNR\n\n>c2\nGG\n>c3\nTT\n")
    records = list(iter_chromosomes(path, keep=lambda n: n != "c2"))
    assert [n for n, _ in records] == ["c1", "c2", "c3"]
    assert records[0][1].tolist() == [0, 1, 2, 3, 4, 4] and records[1][1] is None


def test_fasta_reader_errors(tmp_path):
    bad = tmp_path / "bad.fa"
    bad.write_text("ACGT\n")
    with pytest.raises(FastaError, match="not a FASTA file"):
        list(iter_chromosomes(bad))
    dup = tmp_path / "dup.fa"
    dup.write_text(">a\nA\n>a\nC\n")
    with pytest.raises(FastaError, match="'a' appears twice"):
        list(iter_chromosomes(dup))
    truncated = tmp_path / "t.fa.gz"
    truncated.write_bytes(gzip.compress(b">a\n" + b"ACGT\n" * 1000)[:40])
    with pytest.raises(FastaError, match="truncated gzip"):
        list(iter_chromosomes(truncated))


def test_gff_filter_prefix_and_escapes(tmp_path):
    path = tmp_path / "a.gff3"
    path.write_text(
        "##gff-version 3\n"
        + gff_line("c", 1, 10, "+", "A", extra=";Note=x%3By")
        + gff_line("c", 20, 30, "-", "B", biotype="tRNA")
        + gff_line("c", 40, 50, ".", "C")
        + gff_line("c", 60, 70, "+", "A")  # same id again
        + gff_line("c", 80, 90, "+", "D", feature="pseudogene")
        + "##FASTA\n>c\nACGT\n")
    scan = read_genes(path, id_attribute="ID", strip_prefix="gene:", biotype="protein_coding")
    assert scan.genes == [Gene("A", "c", 1, 10, "+")]
    assert (scan.features, scan.wrong_biotype, scan.no_strand, scan.duplicate_id) == (4, 1, 1, 1)
    assert parse_attributes("ID=x;Note=a%3Bb%2Cc") == {"ID": "x", "Note": "a;b,c"}
    with pytest.raises(GffError, match="no 'gene' feature has attribute 'gene_id'.*locus_tag"):
        read_genes(path, id_attribute="gene_id")
    with pytest.raises(GffError, match="gene_biotype/biotype=lncRNA"):
        read_genes(path, biotype="lncRNA")
    with pytest.raises(GffError, match="no features of type 'transcript'"):
        read_genes(path, feature_type="transcript")
    bad = tmp_path / "bad.gff3"
    bad.write_text("c\ttest\tgene\t5\n")
    with pytest.raises(GffError, match="line 1: expected 9 tab-separated columns"):
        read_genes(bad)


# ---------------------------------------------------------------------------------------------
# The whole conversion


def test_end_to_end_hand_checked_gzip(tmp_path):
    genes = [("chrA", 11, 20, "+", "P"), ("chrA", 11, 20, "-", "M")]
    table = {"P": [1.0, 3.0], "M": [0.0, 18.0], "X": [5, 5]}
    fasta, gff, expr = write_inputs(tmp_path, {"chrA": CHR_A}, genes, table, gz=True)
    out = tmp_path / "out"
    summary = build_dataset(fasta, gff, expr, out, geometry=SMALL, id_attribute="locus_tag",
                            split_fractions=(1, 0, 0))
    assert summary.rows == {"train": 2, "val": 0, "test": 0}
    assert summary.table_rows_unused == 1
    x, y = load_split(out, "train")
    assert x.dtype == np.float32 and x.shape == (2, 4, 14)
    assert [codes_to_ascii(c) for c in onehot_to_codes(x, "N4L")] == [
        "TTACGATNNGCTCA", "CTGAGCCNNTCGTA"]
    assert np.all(x[:, :, 7:9] == 0)  # the spacer is N: all-zero columns
    np.testing.assert_allclose(y[:, 0], [np.log10(2 + 1), np.log10(9 + 1)], rtol=1e-6)
    rows = read_genes_tsv(out)
    assert [(r["split"], r["row"], r["gene_id"], r["strand"], r["start"], r["end"]) for r in rows] == [
        ("train", "0", "P", "+", "11", "20"), ("train", "1", "M", "-", "11", "20")]
    assert np.load(out / "train" / "train-00000.npz")["ids"].tolist() == ["P", "M"]  # into the store
    assert json.loads((out / "summary.json").read_text())["seq_len"] == 14
    assert not (out / "val").exists()  # an empty split gets no folder
    assert not list(tmp_path.glob("out.tmp-*"))


def test_edge_skip_and_pad(tmp_path):
    genes = [("chrA", 2, 8, "+", "L"), ("chrA", 11, 20, "+", "Mid"), ("chrA", 35, 39, "-", "R")]
    table = {g[4]: [1, 1] for g in genes}
    fasta, gff, expr = write_inputs(tmp_path, {"chrA": CHR_A}, genes, table)
    common = dict(geometry=SMALL, id_attribute="locus_tag", split_fractions=(1, 0, 0))
    skipped = build_dataset(fasta, gff, expr, tmp_path / "skip", **common)
    assert (skipped.rows["train"], skipped.skipped_off_edge, skipped.padded) == (1, 2, 0)
    padded = build_dataset(fasta, gff, expr, tmp_path / "pad", edge="pad", **common)
    assert (padded.rows["train"], padded.skipped_off_edge, padded.padded) == (3, 0, 2)
    windows = [codes_to_ascii(c) for c in onehot_to_codes(load_split(tmp_path / "pad", "train")[0], "N4L")]
    assert windows[0] == "NNNAACCNNTTACG" and windows[2].startswith("NNNGAAC")
    assert [r["n_padded"] for r in read_genes_tsv(tmp_path / "pad")] == ["3", "0", "3"]


def _dense_genome(tmp_path, n_genes=40, chroms=("c1",), seed=0):
    """Genes every 12 bp with 14 bp windows, so neighbours' windows overlap."""
    rng = random.Random(seed)
    seqs, genes, table = {}, [], {}
    for chrom in chroms:
        seqs[chrom] = "".join(rng.choice("ACGT") for _ in range(12 * n_genes + 40))
        for i in range(n_genes):
            start = 20 + 12 * i
            gene_id = f"{chrom}_g{i:03d}"
            genes.append((chrom, start, start + rng.randint(0, 6), rng.choice("+-"), gene_id))
            table[gene_id] = [rng.random() * 10, rng.random() * 10]
    return write_inputs(tmp_path, seqs, genes, table)


def _extent(row) -> tuple[int, int]:
    gene = Gene(row["gene_id"], row["chrom"], int(row["start"]), int(row["end"]), row["strand"])
    regions = SMALL.regions(gene)
    return min(a for a, _ in regions), max(b for _, b in regions)


def test_block_split_is_contiguous_and_windows_never_cross_splits(tmp_path):
    fasta, gff, expr = _dense_genome(tmp_path, chroms=("c1", "c2"))
    summary = build_dataset(fasta, gff, expr, tmp_path / "out", geometry=SMALL, id_attribute="locus_tag",
                            split_fractions=(0.6, 0.2, 0.2), shard_size=7)
    assert summary.dropped_at_block_seams > 0
    rows = read_genes_tsv(tmp_path / "out")
    assert sum(summary.rows.values()) + summary.dropped_at_block_seams == 80
    for chrom in ("c1", "c2"):
        mine = [r for r in rows if r["chrom"] == chrom]
        order = [r["split"] for r in sorted(mine, key=lambda r: int(r["start"]))]
        assert order == sorted(order, key=["train", "val", "test"].index)  # one block each, in order
        for a in mine:
            for b in mine:
                if a["split"] != b["split"]:
                    (a0, a1), (b0, b1) = _extent(a), _extent(b)
                    assert a1 <= b0 or b1 <= a0, (a["gene_id"], b["gene_id"])
    # rows in each split's shards follow genes.tsv order; 7-gene shards sort by name
    x, y = load_split(tmp_path / "out", "train")
    train_rows = [r for r in rows if r["split"] == "train"]
    assert len(sorted((tmp_path / "out" / "train").glob("*.npz"))) == -(-len(train_rows) // 7)
    np.testing.assert_allclose(y[:, 0], [float(r["label"]) for r in train_rows])
    assert [int(r["row"]) for r in train_rows] == list(range(len(train_rows)))


def test_block_split_seams_unit():
    extents = [(0, 10), (8, 18), (16, 26), (30, 40), (38, 48)]
    assert block_split(extents, (0.4, 0.4, 0.2)) == ["train", "train", None, "val", None]
    assert block_split(extents, (1, 0, 0)) == ["train"] * 5


def test_chromosome_split(tmp_path):
    fasta, gff, expr = _dense_genome(tmp_path, n_genes=5, chroms=("c1", "c2", "c3"))
    summary = build_dataset(fasta, gff, expr, tmp_path / "out", geometry=SMALL, id_attribute="locus_tag",
                            val_chroms=["c2"], test_chroms=["c3"])
    assert summary.rows == {"train": 5, "val": 5, "test": 5}
    assert {(r["split"], r["chrom"]) for r in read_genes_tsv(tmp_path / "out")} == {
        ("train", "c1"), ("val", "c2"), ("test", "c3")}
    with pytest.raises(ConversionError, match="--test-chroms: no kept gene lies on c9"):
        build_dataset(fasta, gff, expr, tmp_path / "o2", geometry=SMALL, id_attribute="locus_tag",
                      test_chroms=["c9"])
    with pytest.raises(ConversionError, match="not both"):
        build_dataset(fasta, gff, expr, tmp_path / "o3", geometry=SMALL, id_attribute="locus_tag",
                      test_chroms=["c3"], split_fractions=(0.8, 0.1, 0.1))


def test_targets_tsv_several_columns_and_max(tmp_path):
    genes = [("chrA", 11, 20, "+", "P")]
    fasta, gff, expr = write_inputs(tmp_path, {"chrA": CHR_A}, genes, {"P": [1, 3, 7, "text"]},
                                    columns=("leaf_1", "leaf_2", "root_1", "note"), sep="\t")
    common = dict(geometry=SMALL, id_attribute="ID", strip_prefix="gene:", split_fractions=(1, 0, 0))
    s = build_dataset(fasta, gff, expr, tmp_path / "a", targets={"leaf": ["leaf_*"], "root": ["root_1"]},
                      aggregate="max", transform="log2p1", **common)
    assert s.targets == ["leaf", "root"]
    np.testing.assert_allclose(load_split(tmp_path / "a", "train")[1], [[2.0, 3.0]])
    s = build_dataset(fasta, gff, expr, tmp_path / "b", targets={"label": ["leaf_*"]},
                      aggregate="none", transform="none", **common)
    assert s.targets == ["leaf_1", "leaf_2"]
    np.testing.assert_allclose(load_split(tmp_path / "b", "train")[1], [[1.0, 3.0]])
    with pytest.raises(ConversionError, match="'stem_\\*' matches no column"):
        build_dataset(fasta, gff, expr, tmp_path / "c", targets={"x": ["stem_*"]}, **common)


def test_a_summary_column_is_never_averaged_in_with_the_runs(tmp_path, capsys):
    """A table's logMaxTPM (log10(1 + max of the runs)) is left out of the default mean, said in
    one line; chosen by --columns it is used; every column of the formula is printed in full."""
    from convert.genome_to_npz import read_labels

    rng = np.random.default_rng(0)
    runs = rng.gamma(2.0, 10.0, size=(6, 5)).round(4)
    table = {f"G{i}": [*r, float(np.log10(r.max() + 1))] for i, r in enumerate(runs)}
    columns = ("ERR1", "ERR2", "ERR3", "ERR4", "ERR5", "logMaxTPM")
    genes = [("chrA", 11, 20, "+", "G0")]
    fasta, gff, expr = write_inputs(tmp_path, {"chrA": CHR_A}, genes, table, columns=columns)
    labels = read_labels(expr)
    assert labels.columns == [list(columns[:5])]
    assert labels.left_out == {"logMaxTPM": "log10p1(max of the other 5 columns)"}
    np.testing.assert_allclose(labels.by_gene["G3"], np.log10(runs[3].mean() + 1), rtol=1e-6)
    assert read_labels(expr, targets={"label": ["*"]}).columns == [list(columns)]  # asked for: used
    assert read_labels(expr, aggregate="none").left_out == {}  # each column its own target: nothing averaged
    (tmp_path / "plain").mkdir()
    plain = write_inputs(tmp_path / "plain", {"chrA": CHR_A}, genes, {k: v[:5] for k, v in table.items()},
                         columns=columns[:5])[2]
    assert read_labels(plain).left_out == {}
    code, stdout, _ = run_main(capsys, fasta, gff, expr, tmp_path / "out", "--id-attribute", "locus_tag")
    assert code == 0
    assert "label = log10p1(mean of 5 columns: ERR1, ERR2, ERR3, ERR4, ERR5)" in stdout
    assert "left out logMaxTPM = log10p1(max of the other 5 columns): a summary" in stdout


# ---------------------------------------------------------------------------------------------
# Errors: one clear line each, nothing left behind


@pytest.fixture
def small_inputs(tmp_path):
    genes = [("chrA", 11, 20, "+", "P"), ("chrA", 11, 20, "-", "M")]
    return write_inputs(tmp_path, {"chrA": CHR_A}, genes, {"P": [1, 2], "M": [3, 4]})


def run_main(capsys, fasta, gff, expr, out, *extra):
    code = main(["--fasta", str(fasta), "--gff", str(gff), "--expression", str(expr), "--out", str(out),
                 "--tss-upstream", "4", "--tss-downstream", "3", "--tts-upstream", "2",
                 "--tts-downstream", "3", "--spacer", "2", "--split-fractions", "1", "0", "0", "--quiet", *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code, err, pattern, out: Path):
    import re

    assert code == 1
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert re.search(pattern, err), err
    assert not out.exists() and not list(out.parent.glob(out.name + ".tmp-*"))


def test_main_success_prints_summary(tmp_path, small_inputs, capsys):
    code, stdout, _ = run_main(capsys, *small_inputs, tmp_path / "out", "--id-attribute", "locus_tag")
    assert code == 0
    assert "wrote 2 genes" in stdout and "train 2, val 0, test 0" in stdout
    assert "0 GFF genes missing" in stdout


def test_error_chromosome_names_do_not_match(tmp_path, capsys):
    fasta, gff, expr = write_inputs(tmp_path, {"1": CHR_A}, [("chrA", 11, 20, "+", "P")], {"P": [1, 2]})
    code, _, err = run_main(capsys, fasta, gff, expr, tmp_path / "out", "--id-attribute", "locus_tag")
    assert_one_line_error(code, err, r"chromosome names do not match: .*genome.fa has 1, .*genes on chrA", tmp_path / "out")


def test_error_some_chromosomes_missing_unless_allowed(tmp_path, capsys):
    genes = [("chrA", 11, 20, "+", "P"), ("chrB", 11, 20, "+", "Q")]
    fasta, gff, expr = write_inputs(tmp_path, {"chrA": CHR_A}, genes, {"P": [1, 2], "Q": [1, 2]})
    code, _, err = run_main(capsys, fasta, gff, expr, tmp_path / "out", "--id-attribute", "locus_tag")
    assert_one_line_error(code, err, r"missing from .*genome.fa: chrB .*--allow-missing-chroms", tmp_path / "out")
    code, stdout, _ = run_main(capsys, fasta, gff, expr, tmp_path / "out", "--id-attribute", "locus_tag",
                               "--allow-missing-chroms")
    assert code == 0 and "1 genes on chromosomes absent from the FASTA: chrB" in stdout


def test_error_id_attribute_joins_nothing(tmp_path, small_inputs, capsys):
    code, _, err = run_main(capsys, *small_inputs, tmp_path / "out")  # ID=gene:P vs table P
    assert_one_line_error(code, err, r"attribute 'ID' joins no gene .*gene:P.*table ids like P", tmp_path / "out")
    code, _, _ = run_main(capsys, *small_inputs, tmp_path / "out", "--strip-prefix", "gene:")
    assert code == 0


def test_error_non_numeric_expression(tmp_path, capsys):
    fasta, gff, expr = write_inputs(tmp_path, {"chrA": CHR_A}, [("chrA", 11, 20, "+", "P")],
                                    {"P": [1, 2], "Q": [3, "NA"]})
    code, _, err = run_main(capsys, fasta, gff, expr, tmp_path / "out", "--id-attribute", "locus_tag")
    assert_one_line_error(code, err, r"expr.csv: line 3, column 's2': 'NA' is not a finite number", tmp_path / "out")


def test_error_expression_beyond_float32(tmp_path, capsys):
    fasta, gff, expr = write_inputs(tmp_path, {"chrA": CHR_A}, [("chrA", 11, 20, "+", "P")],
                                    {"P": [1, 2], "Q": [3, "1e39"]})
    code, _, err = run_main(capsys, fasta, gff, expr, tmp_path / "out", "--id-attribute", "locus_tag")
    assert_one_line_error(code, err, r"expr.csv: line 3, column 's2': '1e39' is beyond float32's range", tmp_path / "out")


def test_error_negative_values_under_log(tmp_path, capsys):
    fasta, gff, expr = write_inputs(tmp_path, {"chrA": CHR_A}, [("chrA", 11, 20, "+", "P")], {"P": [-3, -2]})
    code, _, err = run_main(capsys, fasta, gff, expr, tmp_path / "out", "--id-attribute", "locus_tag")
    assert_one_line_error(code, err, r"line 2: target 'label' is not finite after log10p1", tmp_path / "out")


def test_error_empty_result(tmp_path, capsys):
    fasta, gff, expr = write_inputs(tmp_path, {"chrA": CHR_A}, [("chrA", 2, 8, "+", "L")], {"L": [1, 2]})
    code, _, err = run_main(capsys, fasta, gff, expr, tmp_path / "out", "--id-attribute", "locus_tag")
    assert_one_line_error(code, err, r"no gene left to write: 1 joined the table, 1 windows ran off a chromosome end", tmp_path / "out")


def test_error_gene_beyond_chromosome(tmp_path, capsys):
    fasta, gff, expr = write_inputs(tmp_path, {"chrA": CHR_A}, [("chrA", 30, 55, "+", "P")], {"P": [1, 2]})
    code, _, err = run_main(capsys, fasta, gff, expr, tmp_path / "out", "--id-attribute", "locus_tag")
    assert_one_line_error(code, err, r"gene P ends at chrA:55, beyond the chromosome's 40 bp", tmp_path / "out")


def test_error_existing_output_and_overwrite(tmp_path, small_inputs, capsys):
    out = tmp_path / "out"
    code, _, _ = run_main(capsys, *small_inputs, out, "--id-attribute", "locus_tag")
    assert code == 0
    (out / "stale.txt").write_text("old")
    code, _, err = run_main(capsys, *small_inputs, out, "--id-attribute", "locus_tag")
    assert code == 1 and "already exists (pass --overwrite" in err
    # a file the converter did not write is never deleted with its output
    code, _, err = run_main(capsys, *small_inputs, out, "--id-attribute", "locus_tag", "--overwrite")
    assert code == 1 and "holds stale.txt, which this command did not write" in err
    assert (out / "stale.txt").read_text() == "old"
    (out / "stale.txt").unlink()
    code, _, _ = run_main(capsys, *small_inputs, out, "--id-attribute", "locus_tag", "--overwrite")
    assert code == 0 and (out / "genes.tsv").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["expr.csv", "genes.gff3", "genome.fa", "out"]


def test_overwrite_refuses_a_folder_that_is_not_ours(tmp_path, small_inputs, capsys):
    out = tmp_path / "results"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, _, err = run_main(capsys, *small_inputs, out, "--id-attribute", "locus_tag", "--overwrite")
    assert code == 1 and err == f"error: {out}: exists and is not a maize_ddp output; refusing to replace it\n"
    assert (out / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("where", ["folder of the inputs", "the FASTA", "its parent"])
def test_out_never_is_or_holds_an_input(tmp_path, capsys, where):
    # --out at or above the inputs used to delete them with --overwrite and exit 0.
    data = tmp_path / "proj" / "data"
    data.mkdir(parents=True)
    inputs = write_inputs(data, {"chrA": CHR_A}, [("chrA", 11, 20, "+", "P")], {"P": [1, 2]})
    out = {"folder of the inputs": data, "the FASTA": inputs[0], "its parent": tmp_path / "proj"}[where]
    before = {p: p.read_bytes() for p in inputs}
    for extra in ((), ("--overwrite",)):
        code, _, err = run_main(capsys, *inputs, out, "--id-attribute", "locus_tag", *extra)
        assert code == 1 and err.count("\n") == 1, err
        assert err.startswith(f"error: {out}: the output ") and "the input" in err, err
    assert {p: p.read_bytes() for p in inputs} == before
    assert sorted(p.name for p in data.iterdir()) == ["expr.csv", "genes.gff3", "genome.fa"]


def test_error_missing_file(tmp_path, small_inputs, capsys):
    fasta, gff, expr = small_inputs
    code, _, err = run_main(capsys, fasta, tmp_path / "nope.gff3", expr, tmp_path / "out")
    assert_one_line_error(code, err, r"nope.gff3: No such file", tmp_path / "out")


def test_main_targets_promoter_only_and_uint8(tmp_path, small_inputs, capsys):
    out = tmp_path / "out"
    code, stdout, _ = run_main(capsys, *small_inputs, out, "--id-attribute", "locus_tag", "--promoter-only",
                               "--target", "first=s1", "--target", "both=s*", "--dtype", "uint8")
    assert code == 0, stdout
    x, y = load_split(out, "train")
    assert x.dtype == np.uint8 and x.shape == (2, 4, 7)
    assert [codes_to_ascii(c) for c in onehot_to_codes(x, "N4L")] == ["TTACGAT", "CTGAGCC"]
    np.testing.assert_allclose(y, np.log10(1 + np.array([[1, 1.5], [3, 3.5]])), rtol=1e-6)
    assert list(read_genes_tsv(out)[0])[-2:] == ["first", "both"]
