"""maize_ddp.variants on a tiny genome whose expression follows a planted TATA box: windows cut
as genome_to_npz cut the data (checked against extract_window on a mutated FASTA), strands,
indels, multi-allelic sites, counts of what lies outside every window, and bad VCF lines."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from _commands import in_process
from convert import genome_to_npz, npz_to_zarr
from maize_ddp.genome_windows import WindowGeometry, extract_window
from maize_ddp.gff import Gene
from maize_ddp import variants
from maize_ddp.checkpoint import load
from maize_ddp.codes import ascii_to_codes, codes_to_ascii, reverse_complement
from maize_ddp.inference import model_from_checkpoint

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
GEOMETRY = WindowGeometry(60, 40, 40, 60, 20)  # 220 bp
SMALL_MODEL = ["--conv1kc", "32", "--conv2kc", "32", "--conv3kc", "32", "--convdc", "2", "--convdkc", "16",
               "--conv4kc", "16", "--pool1ks", "2", "--pool2ks", "2", "--pool3ks", "2"]
GENES_PER_CHROM, SPACING, GENE_LEN = 400, 500, 200
TATA = "TATAAA"


def write_genome(root: Path, seed=0):
    """Two chromosomes of random DNA, a gene every 500 bp on alternating strands; half the genes
    carry TATAAA 30 bp upstream of their TSS (on their strand), which adds 1 to log10(TPM + 1)."""
    rng = np.random.default_rng(seed)
    fasta, gff, table = [], ["##gff-version 3"], ["gene_id,tpm"]
    genes = {}
    for c in ("chr1", "chr2"):
        seq = rng.integers(0, 4, GENES_PER_CHROM * SPACING + SPACING).astype(np.uint8)
        for i in range(GENES_PER_CHROM):
            start = SPACING // 2 + i * SPACING + 1  # 1-based
            end = start + GENE_LEN - 1
            strand = "+" if i % 2 == 0 else "-"
            gid = f"{c}g{i:04d}"
            tata = rng.random() < 0.5
            if tata:
                box = ascii_to_codes(TATA)
                if strand == "+":
                    at = start - 1 - 30
                    seq[at:at + 6] = box
                else:  # 30 bp upstream of the TSS (= end) on -, i.e. downstream on +
                    at = end + 30 - 6
                    seq[at:at + 6] = reverse_complement(box)
            label = 1.0 + tata + rng.normal(0, 0.1)
            gff.append(f"{c}\ttest\tgene\t{start}\t{end}\t.\t{strand}\t.\tID={gid}")
            table.append(f"{gid},{10 ** label - 1:.6f}")
            genes[gid] = (Gene(gid, c, start, end, strand), tata)
        text = codes_to_ascii(seq)
        fasta.append(f">{c}\n" + "\n".join(text[k:k + 80] for k in range(0, len(text), 80)))
    (root / "genome.fa").write_text("\n".join(fasta) + "\n")
    (root / "genes.gff3").write_text("\n".join(gff) + "\n")
    (root / "tpm.csv").write_text("\n".join(table) + "\n")
    return genes


def read_fasta(path):
    from maize_ddp.fasta import iter_chromosomes

    return dict(iter_chromosomes(path))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("variants")
    genes = write_genome(root)
    genome_to_npz.build_dataset(root / "genome.fa", root / "genes.gff3", root / "tpm.csv", root / "npz",
                                geometry=GEOMETRY)
    npz_to_zarr.convert(root / "npz", root / "data.zarr")
    res = subprocess.run([sys.executable, "-m", "maize_ddp.train", "--data", root / "data.zarr", "--out", root / "run",
                          "--epochs", "20", "--batch-size", "32", "--warmup-steps", "10", "--lr", "3e-3", *SMALL_MODEL],
                         env=ENV, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    chroms = read_fasta(root / "genome.fa")
    return {"root": root, "run": root / "run", "genes": genes, "chroms": chroms,
            "model": model_from_checkpoint(load(root / "run"), "cpu").eval()}


VCF_HEAD = "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"


def vcf(tmp_path, lines, name="v.vcf") -> Path:
    path = tmp_path / name
    path.write_text(VCF_HEAD + "".join("\t".join(map(str, line)) + "\t.\t.\t.\n" for line in lines))
    return path


def score(built, tmp_path, vcf_path, *extra):
    out = tmp_path / "variants.tsv"
    code = variants.main([str(built["run"]), "--vcf", str(vcf_path), "--fasta", str(built["root"] / "genome.fa"),
                          "--gff", str(built["root"] / "genes.gff3"), "--out", str(out), "--overwrite", *extra])
    return code, out


def table(out: Path) -> list[dict]:
    lines = out.read_text().splitlines()
    cols = lines[0].split("\t")
    return [dict(zip(cols, line.split("\t"))) for line in lines[1:]]


def base(built, chrom, pos1):
    return codes_to_ascii(built["chroms"][chrom][pos1 - 1:pos1])


def predict(built, window):
    with torch.no_grad():
        return built["model"](torch.from_numpy(window[None].copy()))[0, 0].item()


def other(b):
    return {"A": "C", "C": "G", "G": "T", "T": "A"}[b]


def test_the_store_records_the_geometry(built):
    from maize_ddp.data import open_store

    origin = open_store(built["root"] / "data.zarr").meta.origin
    assert origin["generator"] == "convert.genome_to_npz"
    assert WindowGeometry(**origin["settings"]["geometry"]) == GEOMETRY
    assert origin["settings"]["genes"] == {"feature_type": "gene", "id_attribute": "ID", "strip_prefix": None,
                                           "biotype": None, "biotype_attribute": None}


def test_genes_are_read_as_the_runs_data_were_unless_a_flag_says_otherwise():
    from types import SimpleNamespace

    from maize_ddp.variants import gene_options

    recorded = {"feature_type": "mRNA", "id_attribute": "locus_tag", "strip_prefix": "gene-", "biotype": None}
    a = SimpleNamespace(feature_type=None, id_attribute="Name", strip_prefix=None, biotype=None,
                        biotype_attribute=None)
    assert gene_options(a, recorded) == {"feature_type": "mRNA", "id_attribute": "Name", "strip_prefix": "gene-",
                                         "biotype": None, "biotype_attribute": None}
    assert gene_options(a, {})["feature_type"] == "gene"  # data from before genes were recorded


@pytest.mark.parametrize("gid,offset", [("chr1g0010", -20), ("chr1g0011", -20), ("chr1g0011", 170)])
def test_snp_windows_match_extract_window_on_a_mutated_fasta(built, tmp_path, gid, offset):
    """A SNP offset bases 5' of the TSS on the gene's strand (negative: upstream): the alt
    prediction is the model's on extract_window of a genome carrying the SNP; window_pos is where
    the two windows differ; on - the window holds the complement of ALT."""
    gene, _ = built["genes"][gid]
    tss = gene.start if gene.strand == "+" else gene.end
    pos = tss + offset if gene.strand == "+" else tss - offset
    ref = base(built, gene.chrom, pos)
    alt = other(ref)
    code, out = score(built, tmp_path, vcf(tmp_path, [(gene.chrom, pos, "snp1", ref, alt)]))
    assert code == 0
    [row] = table(out)
    chrom = built["chroms"][gene.chrom]
    mutated = chrom.copy()
    mutated[pos - 1] = ascii_to_codes(alt)[0]
    ref_w, alt_w = extract_window(chrom, gene, GEOMETRY), extract_window(mutated, gene, GEOMETRY)
    [where] = np.flatnonzero(ref_w != alt_w)
    assert row["id"] == gid and row["strand"] == gene.strand and int(row["window_pos"]) == where
    # the window: 60 before the TSS, 40 from it, 20 N, 40 up to the TTS (gene start + 199), 60 after
    assert where == (60 + offset if offset < 40 else 100 + 20 + offset - (GENE_LEN - 40))
    want_base = alt if gene.strand == "+" else codes_to_ascii(reverse_complement(ascii_to_codes(alt)))
    assert codes_to_ascii(alt_w[where:where + 1]) == want_base
    assert float(row["ref_pred"]) == pytest.approx(predict(built, ref_w), abs=1e-4)
    assert float(row["alt_pred"]) == pytest.approx(predict(built, alt_w), abs=1e-4)
    assert float(row["delta"]) == pytest.approx(float(row["alt_pred"]) - float(row["ref_pred"]), abs=2e-5)


def test_destroying_a_planted_tata_box_lowers_expression(built, tmp_path):
    """The planted box raises expression (the table was made so): breaking it must lower the
    prediction, on either strand."""
    picked = {"+": [], "-": []}
    for gid, (gene, tata) in built["genes"].items():
        if tata and len(picked[gene.strand]) < 6:
            picked[gene.strand].append(gene)
    lines = []
    for gene in picked["+"] + picked["-"]:
        # the box's first T (on the gene's strand) -> G; on - that is the A at the box's + end
        pos = gene.start - 30 if gene.strand == "+" else gene.end + 30
        ref = base(built, gene.chrom, pos)
        assert ref == ("T" if gene.strand == "+" else "A")
        lines.append((gene.chrom, pos, f"tata_{gene.gene_id}", ref, "G" if gene.strand == "+" else "C"))
    code, out = score(built, tmp_path, vcf(tmp_path, lines))
    assert code == 0
    rows = table(out)
    assert len(rows) == 12
    deltas = np.array([float(r["delta"]) for r in rows])
    print("TATA-breaking SNP deltas:", np.round(deltas, 3))
    assert (deltas < 0).all() and deltas.mean() < -0.1  # measured: all < 0, mean -0.19


def test_indels_keep_the_window_anchored(built, tmp_path):
    """An insertion upstream of a + gene's TSS, and a deletion in a - gene's body before its TTS
    region: the window is extract_window on the mutated genome with the gene's anchors moved."""
    plus, _ = built["genes"]["chr2g0020"]
    minus, _ = built["genes"]["chr2g0021"]
    ins_pos = plus.start - 25  # 1-based, the VCF's padding base
    del_pos = minus.end - 20  # in the - gene's body, inside the TSS region's downstream part
    chrom = built["chroms"]["chr2"]
    ins_ref = base(built, "chr2", ins_pos)
    del_ref = codes_to_ascii(chrom[del_pos - 1:del_pos + 3])
    lines = [("chr2", ins_pos, "ins", ins_ref, ins_ref + "GGG"), ("chr2", del_pos, "del", del_ref, del_ref[0])]
    code, out = score(built, tmp_path, vcf(tmp_path, lines))
    assert code == 0
    rows = {r["variant"]: r for r in table(out)}
    # the insertion: 3 bases after position ins_pos shift everything downstream by 3
    mutated = np.concatenate([chrom[:ins_pos], ascii_to_codes("GGG"), chrom[ins_pos:]])
    want = extract_window(mutated, Gene(plus.gene_id, "chr2", plus.start + 3, plus.end + 3, "+"), GEOMETRY)
    assert float(rows["ins"]["alt_pred"]) == pytest.approx(predict(built, want), abs=1e-4)
    # the deletion of 3 bases after del_pos, upstream (on +) of the - gene's TSS (its end):
    # the TSS moves 3 bases left on +, the TTS (its start) stays
    mutated = np.concatenate([chrom[:del_pos], chrom[del_pos + 3:]])
    want = extract_window(mutated, Gene(minus.gene_id, "chr2", minus.start, minus.end - 3, "-"), GEOMETRY)
    assert float(rows["del"]["alt_pred"]) == pytest.approx(predict(built, want), abs=1e-4)


def test_multi_allelic_outside_and_summary(built, tmp_path):
    gene, _ = built["genes"]["chr1g0100"]
    pos = gene.start - 10
    ref = base(built, "chr1", pos)
    alts = [b for b in "ACGT" if b != ref]
    far = gene.start + GENE_LEN // 2 + 300  # between two genes' windows: in none
    lines = [("chr1", pos, "multi", ref, ",".join(alts)), ("chr1", far, "far", base(built, "chr1", far), "A"),
             ("chrUn", 5, "elsewhere", "A", "C"), ("chr1", pos, "sym", ref, "<DEL>")]
    code, out = score(built, tmp_path, vcf(tmp_path, lines))
    assert code == 0
    rows = table(out)
    assert [r["alt"] for r in rows] == alts and {r["id"] for r in rows} == {gene.gene_id}
    summary = json.loads(variants.summary_path(out).read_text())
    assert summary["outside_windows"] == 2 and summary["scored_alleles"] == 3 and summary["symbolic"] == 1
    assert summary["lines"] == 4


def test_bad_lines_are_one_error_or_counted(built, tmp_path, capsys):
    gene, _ = built["genes"]["chr1g0100"]
    pos = gene.start - 10
    ref = base(built, "chr1", pos)
    good = ("chr1", pos, "ok", ref, other(ref))
    for bad, says in [(("chr1", "12x", "b", "A", "C"), "line 4: POS '12x'"),
                      (("chr1", pos, "b", other(ref), ref), f"line 4: REF {other(ref)} at chr1:{pos}")]:
        path = vcf(tmp_path, [good, bad])
        out = tmp_path / "strict.tsv"
        code = variants.main([str(built["run"]), "--vcf", str(path), "--fasta", str(built["root"] / "genome.fa"),
                              "--gff", str(built["root"] / "genes.gff3"), "--out", str(out)])
        err = capsys.readouterr().err
        assert code == 1 and err.count("\n") == 1 and says in err and str(path) in err, err
        assert not out.exists()
        code, out = score(built, tmp_path, path, "--skip-invalid")
        assert code == 0 and [r["variant"] for r in table(out)] == ["ok"]
        summary = json.loads(variants.summary_path(out).read_text())
        assert summary["invalid_lines"] == 1 and "line 4" in summary["invalid_examples"][0]


def test_a_run_without_a_genome_geometry_is_refused(built, tmp_path, capsys):
    """A checkpoint whose store was not cut from a genome (synthetic data here): one line."""
    from convert import synth
    from maize_ddp.checkpoint import save

    synth.generate(tmp_path / "npz", train=8, val=0, test=0, seq_len=220, shard_size=8)
    npz_to_zarr.convert(tmp_path / "npz", tmp_path / "s.zarr")
    state = load(built["run"])
    state["config"]["data"] = str(tmp_path / "s.zarr")
    state.pop("store", None)
    save(tmp_path / "synth.pt", state)
    ref = base(built, "chr1", 100)
    path = vcf(tmp_path, [("chr1", 100, ".", ref, other(ref))])
    code = variants.main([str(tmp_path / "synth.pt"), "--vcf", str(path), "--fasta", str(built["root"] / "genome.fa"),
                          "--gff", str(built["root"] / "genes.gff3"), "--out", str(tmp_path / "o.tsv")])
    err = capsys.readouterr().err
    assert code == 1 and "no genome window geometry" in err and err.count("\n") == 1
    # ...and one whose checkpoint records the origin needs no store at all
    state["store"] = {"origin": load(built["run"]).get("store", {}).get("origin")
                      or __import__("maize_ddp.data", fromlist=["open_store"]).open_store(
                          built["root"] / "data.zarr").meta.origin}
    save(tmp_path / "recorded.pt", state)
    code = variants.main([str(tmp_path / "recorded.pt"), "--vcf", str(path), "--fasta",
                          str(built["root"] / "genome.fa"), "--gff", str(built["root"] / "genes.gff3"),
                          "--out", str(tmp_path / "o.tsv")])
    assert code == 0, capsys.readouterr().err


def test_gzip_vcf_and_the_cli(built, tmp_path):
    import gzip

    gene, _ = built["genes"]["chr1g0100"]
    pos = gene.start - 10
    ref = base(built, "chr1", pos)
    plain = vcf(tmp_path, [("chr1", pos, "ok", ref, other(ref))])
    gz = tmp_path / "v.vcf.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    out = tmp_path / "cli.tsv"
    res = in_process("maize_ddp.variants", built["run"], "--vcf", gz, "--fasta", built["root"] / "genome.fa",
                     "--gff", built["root"] / "genes.gff3", "--out", out)
    assert res.returncode == 0, res.stderr
    assert "1 in gene windows" in res.stdout and table(out)[0]["id"] == gene.gene_id


def test_a_summary_file_that_is_not_ours_is_never_replaced(tmp_path):
    from maize_ddp.variants import VariantError, check_out, summary_path

    out = tmp_path / "v.tsv"
    summary_path(out).write_text('{"notes": "a user\'s own file"}')
    with pytest.raises(VariantError, match="is not a variants summary"):
        check_out(out, True, [])
    summary_path(out).write_text('{"generator": "maize_ddp.variants"}')
    check_out(out, True, [])  # an earlier run's summary: fine to replace


def renamed_genome(built, tmp_path):
    """The same genome as NCBI names it: RefSeq accessions, "chromosome N" in the FASTA headers."""
    names = {"chr1": "NC_003070.9", "chr2": "NC_003071.7"}
    text = (built["root"] / "genome.fa").read_text()
    gff = (built["root"] / "genes.gff3").read_text()
    for old, new in names.items():
        text = text.replace(f">{old}\n", f">{new} Arabidopsis thaliana chromosome {old[3:]} sequence\n")
        gff = gff.replace(f"\n{old}\t", f"\n{new}\t")
    (tmp_path / "genome.fa").write_text(text)
    (tmp_path / "genes.gff3").write_text(gff)
    return tmp_path / "genome.fa", tmp_path / "genes.gff3"


def score_on(built, fasta, gff, vcf_path, out, *extra):
    return variants.main([str(built["run"]), "--vcf", str(vcf_path), "--fasta", str(fasta), "--gff", str(gff),
                          "--out", str(out), "--overwrite", *extra])


def test_vcf_chromosome_names_are_resolved_to_the_genomes(built, tmp_path, capsys):
    gene, _ = built["genes"]["chr1g0100"]
    other_gene, _ = built["genes"]["chr2g0003"]
    pos, pos2 = gene.start - 10, other_gene.start - 10
    ref, ref2 = base(built, "chr1", pos), base(built, "chr2", pos2)
    code, expected = score(built, tmp_path, vcf(tmp_path, [("chr1", pos, "a", ref, other(ref)),
                                                           ("chr2", pos2, "b", ref2, other(ref2))], "ref.vcf"))
    assert code == 0
    capsys.readouterr()
    fasta, gff = renamed_genome(built, tmp_path)
    for names in (("1", "2"), ("chr1", "Chr02"), ("CHROMOSOME_1", "chromosome2")):
        path = vcf(tmp_path, [(names[0], pos, "a", ref, other(ref)), (names[1], pos2, "b", ref2, other(ref2))])
        out = tmp_path / "renamed.tsv"
        assert score_on(built, fasta, gff, path, out) == 0
        err = capsys.readouterr().err
        assert f"VCF chromosome '{names[0]}' is 'NC_003070.9' (chromosome 1 in its FASTA header)" in err, err
        assert [{k: v for k, v in r.items() if k != "chrom"} for r in table(out)] == \
            [{k: v for k, v in r.items() if k != "chrom"} for r in table(expected)]


def test_vcf_chromosomes_the_genome_does_not_have_are_an_error_or_mapped(built, tmp_path, capsys):
    gene, _ = built["genes"]["chr1g0100"]
    pos = gene.start - 10
    ref = base(built, "chr1", pos)
    path = vcf(tmp_path, [("scaffold_7", pos, "a", ref, other(ref))])
    code, out = score(built, tmp_path, path)
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "none of its chromosomes ('scaffold_7')" in err, err
    assert "--chrom-map" in err and not out.exists()
    (tmp_path / "map.tsv").write_text("# VCF\tgenome\nscaffold_7\tchr1\n")
    code, out = score(built, tmp_path, path, "--chrom-map", str(tmp_path / "map.tsv"))
    assert code == 0 and [r["variant"] for r in table(out)] == ["a"]
    assert "VCF chromosome 'scaffold_7' is 'chr1' (--chrom-map)" in capsys.readouterr().err


def test_an_empty_vcf_and_a_wrong_ref_outside_the_windows_are_errors(built, tmp_path, capsys):
    empty = tmp_path / "empty.vcf"
    empty.write_bytes(b"")
    code, out = score(built, tmp_path, empty)
    err = capsys.readouterr().err
    assert code == 1 and "empty.vcf: no variant lines" in err and not out.exists()
    gene, _ = built["genes"]["chr1g0100"]
    far = gene.start + GENE_LEN // 2 + 300  # between two genes' windows
    wrong = other(base(built, "chr1", far))
    code, out = score(built, tmp_path, vcf(tmp_path, [("chr1", far, "far", wrong, "A")]))
    err = capsys.readouterr().err
    assert code == 1 and f"REF {wrong} at chr1:{far}" in err, err


def test_the_api_scores_variants_as_the_command_does(built, tmp_path):
    from maize_ddp import Run

    gene, _ = built["genes"]["chr1g0100"]
    pos = gene.start - 10
    ref = base(built, "chr1", pos)
    path = vcf(tmp_path, [("chr1", pos, "near", ref, other(ref)), ("chr1", pos + 3, "next", base(built, "chr1", pos + 3),
                                                                    other(base(built, "chr1", pos + 3)))])
    by_cli = tmp_path / "cli.tsv"
    res = in_process("maize_ddp.variants", built["run"], "--vcf", path, "--fasta", built["root"] / "genome.fa",
                     "--gff", built["root"] / "genes.gff3", "--out", by_cli)
    assert res.returncode == 0, res.stderr
    run = Run.load(built["run"], device="cpu")
    summary = run.score_variants(path, built["root"] / "genome.fa", built["root"] / "genes.gff3", tmp_path / "api.tsv")
    assert summary.scored_rows == len(table(by_cli)) >= 2
    assert table(tmp_path / "api.tsv") == table(by_cli)


def test_several_targets_get_a_column_of_each_value_named_after_them():
    from maize_ddp.variants import header

    fixed = "id\tchrom\tpos\tvariant\tref\talt\tstrand\tregion\twindow_pos\t"
    assert header(1) == fixed + "ref_pred\talt_pred\tdelta\n"
    assert header(2, {"generator": "convert.genome_to_npz", "settings": {}, "targets": ["leaf", "root"]}) == fixed + (
        "ref_pred_leaf\tref_pred_root\talt_pred_leaf\talt_pred_root\tdelta_leaf\tdelta_root\n")
    assert header(2).endswith("\tdelta_0\tdelta_1\n")  # no names recorded: numbered
