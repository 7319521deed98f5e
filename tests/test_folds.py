"""convert.genome_to_npz --folds K: K complete datasets, every kept gene tested once, no sequence
shared between a fold's splits."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from convert.genome_to_npz import build_dataset, main

sys.path.insert(0, str(Path(__file__).parent))
from test_genome_to_npz import SMALL, _dense_genome, _extent, load_split, read_genes_tsv  # noqa: E402


def check_fold(folder: Path) -> list[dict]:
    """A fold is a complete dataset: shards agree with genes.tsv; windows never cross splits."""
    rows = read_genes_tsv(folder)
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["generator"] == "convert.genome_to_npz"
    for split in ("train", "val", "test"):
        mine = [r for r in rows if r["split"] == split]
        assert summary["rows"][split] == len(mine) > 0
        _, y = load_split(folder, split)
        np.testing.assert_allclose(y[:, 0], [float(r["label"]) for r in mine])
    for a in rows:
        for b in rows:
            if a["split"] != b["split"] and a["chrom"] == b["chrom"]:
                (a0, a1), (b0, b1) = _extent(a), _extent(b)
                assert a1 <= b0 or b1 <= a0, (folder.name, a["gene_id"], b["gene_id"])
    return rows


def test_position_block_folds(tmp_path):
    fasta, gff, expr = _dense_genome(tmp_path, n_genes=40, chroms=("c1", "c2"))
    out = tmp_path / "folds"
    summaries = build_dataset(fasta, gff, expr, out, geometry=SMALL, id_attribute="locus_tag", folds=4, shard_size=9)
    doc = json.loads((out / "folds.json").read_text())
    assert doc["folds"] == 4 and doc["mode"] == "position blocks"
    assert [f["folder"] for f in doc["fold_list"]] == [f"fold-{i}" for i in range(4)]
    tested, kept = [], None
    for i in range(4):
        rows = check_fold(out / f"fold-{i}")
        genes = {r["gene_id"] for r in rows}
        kept = genes if kept is None else kept
        assert genes == kept  # the same genes in every fold (seam drops included), in other roles
        tested += [r["gene_id"] for r in rows if r["split"] == "test"]
        for chrom in ("c1", "c2"):
            # along each chromosome: contiguous blocks; test is block i, val block i+1 (mod 4)
            order = [r["split"] for r in sorted((r for r in rows if r["chrom"] == chrom), key=lambda r: int(r["start"]))]
            runs = [s for j, s in enumerate(order) if j == 0 or s != order[j - 1]]
            expected = ["train"] * 4
            expected[i], expected[(i + 1) % 4] = "test", "val"
            collapsed = [s for j, s in enumerate(expected) if j == 0 or s != expected[j - 1]]
            assert runs == collapsed, (i, chrom, runs)
    assert sorted(tested) == sorted(kept)  # every kept gene is tested exactly once
    assert summaries[0].dropped_at_block_seams > 0 and len(kept) + summaries[0].dropped_at_block_seams == 80


@pytest.mark.parametrize("k, said", [(3, "each fold trains on 1 of 3 parts of the genes (33%)"), (5, None)])
def test_few_folds_say_how_little_each_trains_on(tmp_path, capsys, k, said):
    fasta, gff, expr = _dense_genome(tmp_path, n_genes=30, chroms=("c1",))
    rc = main(["--fasta", str(fasta), "--gff", str(gff), "--expression", str(expr), "--out", str(tmp_path / "o"),
               "--id-attribute", "locus_tag", "--folds", str(k), "--quiet", "--tss-upstream", "4", "--tss-downstream",
               "3", "--tts-upstream", "2", "--tts-downstream", "3", "--spacer", "2"])
    err = capsys.readouterr().err
    assert rc == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    if said:
        assert len(warnings) == 1 and said in warnings[0] and "position blocks of the chromosome" in warnings[0]
    else:
        assert not warnings, err


def test_chromosome_folds(tmp_path):
    fasta, gff, expr = _dense_genome(tmp_path, n_genes=6, chroms=("c1", "c2", "c3"))
    out = tmp_path / "folds"
    build_dataset(fasta, gff, expr, out, geometry=SMALL, id_attribute="locus_tag", folds=3)
    assert json.loads((out / "folds.json").read_text())["mode"] == "chromosomes"
    chroms = ["c1", "c2", "c3"]
    for i in range(3):
        rows = check_fold(out / f"fold-{i}")
        by_split = {s: {r["chrom"] for r in rows if r["split"] == s} for s in ("train", "val", "test")}
        assert by_split == {"test": {chroms[i]}, "val": {chroms[(i + 1) % 3]}, "train": {chroms[(i + 2) % 3]}}
        assert len(rows) == 18  # no seam drops between chromosomes


@pytest.mark.parametrize("flags, message", [
    (["--folds", "2"], "--folds must be at least 3"),
    (["--folds", "3", "--test-chroms", "c1"], "--folds chooses every split itself"),
    (["--folds", "50"], "fewer than the folds"),
])
def test_fold_errors_are_one_line_and_leave_nothing(tmp_path, capsys, flags, message):
    fasta, gff, expr = _dense_genome(tmp_path, n_genes=20)
    rc = main(["--fasta", str(fasta), "--gff", str(gff), "--expression", str(expr), "--out", str(tmp_path / "o"),
               "--id-attribute", "locus_tag", *flags])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "o").exists()
