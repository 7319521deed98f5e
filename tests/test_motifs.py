"""maize_ddp.motifs on attributions whose truth is known, without training a model.

Random sequences carry a planted TATA box (TATAAA, which raises the prediction: ISM scores of its
substitutions are negative) and a GCC box (GCCGCC, on either strand, which lowers it); the ISM
scores are those effects plus noise. TF-MoDISco must find one positive pattern that is the TATA
box and one negative that is the GCC box, at the planted positions, and Tomtom must name them.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("modiscolite")
pytest.importorskip("memelite")

from _commands import in_process  # noqa: E402
from maize_ddp import motifs  # noqa: E402
from maize_ddp.motif_db import MotifDBError, meme_text, read_meme  # noqa: E402

TATA, GCC = "TATAAA", "GCCGCC"
N_ROWS, LENGTH, TSS = 240, 150, 140
FAST = dict(window=15, flank=5, leiden_runs=4, min_seqlets=50, min_cluster=20)


def planted(n=N_ROWS, length=LENGTH, seed=0):
    """codes [n, L], ISM-like scores [n, 4, L], and where each motif went: tata[i], gcc[i], gcc_rc[i]."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 4, (n, length)).astype(np.uint8)
    scores = rng.normal(0, 0.03, (n, 4, length)).astype(np.float32)
    tata = rng.integers(25, 55, n)
    gcc = rng.integers(85, 115, n)
    gcc_rc = rng.random(n) < 0.5
    enc = {b: i for i, b in enumerate("ACGT")}
    for i in range(n):
        for motif, at, effect in ((TATA, tata[i], -0.5), (GCC if not gcc_rc[i] else "GGCGGC", gcc[i], +0.4)):
            for j, base in enumerate(motif):
                codes[i, at + j] = enc[base]
                scores[i, :, at + j] += effect  # every substitution of a motif base has the effect
    scores[np.arange(n)[:, None], codes, np.arange(length)[None, :]] = 0  # ISM: 0 at the reference
    return codes, scores, tata, gcc, gcc_rc


def ppm_of(seq: str, rest=0.02) -> np.ndarray:
    m = np.full((4, len(seq)), rest)
    for j, b in enumerate(seq):
        m["ACGT".index(b), j] = 1 - 3 * rest
    return m


# A small database: the two planted motifs among decoys (Tomtom's p-values need ~25 targets).
def small_db(path):
    rng = np.random.default_rng(5)
    decoys = []
    for k in range(28):
        seq = "".join(rng.choice(list("ACGT"), 8))
        decoys.append((f"DECOY{k} decoy_{k}", ppm_of(seq, 0.05), 20))
    path.write_text(meme_text([("MA_TBP TBP", ppm_of("CTATAAAAG"), 20), ("MA_ERF ERF_GCC", ppm_of("AGCCGCCA"), 20)]
                              + decoys))
    return path


@pytest.fixture(scope="module")
def found():
    codes, scores, tata, gcc, gcc_rc = planted()
    d = motifs.discover(codes, scores, seed=7, **FAST)
    return d, codes, tata, gcc, gcc_rc


def test_planted_motifs_found_with_sign_and_position(found):
    d, codes, tata, gcc, gcc_rc = found
    pos = [p for p in d.patterns if p.sign == "+"]
    neg = [p for p in d.patterns if p.sign == "-"]
    assert pos and neg, [(p.name, p.consensus) for p in d.patterns]
    assert TATA in pos[0].consensus.upper() or "TTTATA" in pos[0].consensus.upper()
    assert GCC in neg[0].consensus.upper() or "GGCGGC" in neg[0].consensus.upper()
    # TF-MoDISco may split one motif into several patterns and drops seqlets of small clusters
    assert len(pos[0].seqlets) >= FAST["min_cluster"] and len(neg[0].seqlets) >= FAST["min_cluster"]
    tata_like = sum(len(p.seqlets) for p in pos if TATA in p.consensus.upper() or "TTTATA" in p.consensus.upper())
    assert tata_like >= 0.25 * N_ROWS
    assert not [p for p in neg if TATA in p.consensus.upper()] and not [p for p in pos if "GCCG" in p.consensus.upper()]
    # every seqlet covers its row's planted motif, and its strand follows the strand planted
    for s in pos[0].seqlets:
        assert s.start <= tata[s.row] and tata[s.row] + 6 <= s.end, s
    strands = {}
    for s in neg[0].seqlets:
        assert s.start <= gcc[s.row] and gcc[s.row] + 6 <= s.end, s
        strands.setdefault(bool(gcc_rc[s.row]), set()).add(s.strand)
    assert all(len(v) == 1 for v in strands.values()) and strands[True] != strands[False], strands
    assert all(s.contribution > 0 for s in pos[0].seqlets) and all(s.contribution < 0 for s in neg[0].seqlets)


def test_tomtom_names_the_planted_motifs(found, tmp_path):
    d = found[0]
    db = read_meme(small_db(tmp_path / "db.meme"))
    pos = next(p for p in d.patterns if p.sign == "+")
    neg = next(p for p in d.patterns if p.sign == "-")
    matches, note = motifs.match([pos, neg], db, top=2)
    assert note is None
    assert matches[0][0].name == "TBP" and matches[1][0].name == "ERF_GCC", matches
    assert matches[0][0].p < 1e-3 and 0 < matches[0][0].q <= 1 and matches[0][0].p <= matches[0][1].p


def test_tables_and_meme_file(found, tmp_path):
    d, codes, tata, *_ = found
    ids = [f"row{i}" for i in range(len(codes))]
    seqlets = motifs.seqlets_table(d, ids, codes, tss=TSS).splitlines()
    assert seqlets[0].split("\t") == ["id", "pattern", "start", "end", "strand", "from_tss", "contribution", "sequence"]
    first = dict(zip(seqlets[0].split("\t"), seqlets[1].split("\t")))
    assert first["id"].startswith("row") and int(first["from_tss"]) == int(first["start"]) - TSS
    assert {line.split("\t")[1] for line in seqlets[1:]} == {p.name for p in d.patterns}
    pos0 = [line.split("\t") for line in seqlets[1:] if line.split("\t")[1] == "pos_0"]
    assert all(TATA in r[7] or "TTTATA" in r[7] for r in pos0)
    (tmp_path / "p.meme").write_text(motifs.patterns_meme(d.patterns))
    back = read_meme(tmp_path / "p.meme")
    assert [m.id for m in back] == [p.name for p in d.patterns]
    assert np.allclose(back[0].ppm, d.patterns[0].ppm, atol=1e-5)


@pytest.mark.parametrize("figures, drawn", [(None, "all"), (1, 1), (0, 0)])
def test_figures_draws_the_first_n_logos(found, tmp_path, figures, drawn):
    d, codes, *_ = found
    assert len(d.patterns) >= 2
    ids = [f"row{i}" for i in range(len(codes))]
    motifs.write_output(tmp_path, d, [[] for _ in d.patterns], ids, codes, TSS, 3, figures, {})
    want = [p.name for p in (d.patterns if drawn == "all" else d.patterns[:drawn])]
    logos = sorted(p.stem for p in (tmp_path / "logos").iterdir()) if (tmp_path / "logos").exists() else []
    assert logos == sorted(want)


def test_same_seed_same_output(found):
    d, codes, *_ = found
    codes2, scores, *_ = planted()
    again = motifs.discover(codes2, scores, seed=7, **FAST)
    assert [(p.name, p.consensus, len(p.seqlets)) for p in again.patterns] == \
        [(p.name, p.consensus, len(p.seqlets)) for p in d.patterns]
    assert motifs.seqlets_table(again, list(range(N_ROWS)), codes) == motifs.seqlets_table(d, list(range(N_ROWS)), codes)


def test_too_few_rows_or_seqlets_is_one_clear_error():
    codes, scores, *_ = planted(n=10)
    with pytest.raises(motifs.MotifError, match="10 row.*at least 20"):
        motifs.discover(codes, scores, **FAST)
    codes, scores, *_ = planted(n=40)
    with pytest.raises(motifs.MotifError, match="too few seqlets.*--min-seqlets"):
        motifs.discover(codes, scores, **{**FAST, "min_seqlets": 100})


def test_bh_qvalues():
    q = motifs.bh_qvalues(np.array([0.01, 0.04, 0.03, 0.5]))
    assert np.allclose(q, [0.04, 0.16 / 3, 0.16 / 3, 0.5])


def test_read_meme_refuses_bad_files(tmp_path):
    bad = tmp_path / "bad.meme"
    bad.write_text("MEME version 4\n\nMOTIF X\nletter-probability matrix: alength= 4 w= 2\n0.5 0.5 0 0\n0.5 0.5\n")
    with pytest.raises(MotifDBError, match="line 6.*4 probabilities"):
        read_meme(bad)
    (tmp_path / "none.meme").write_text("hello\n")
    with pytest.raises(MotifDBError, match="not a MEME motif file"):
        read_meme(tmp_path / "none.meme")


def test_read_meme_takes_matrices_without_a_width(tmp_path):
    """w= is optional in the MEME format: the rows then run to the first blank or other line."""
    path = tmp_path / "no_width.meme"
    path.write_text("MEME version 4\n\nALPHABET= ACGT\n\n"
                    "MOTIF A1 first\nletter-probability matrix: alength= 4\n"
                    "0.7 0.1 0.1 0.1\n0.1 0.7 0.1 0.1\n0.1 0.1 0.7 0.1\nURL http://example.org/A1\n\n"
                    "MOTIF B2\nletter-probability matrix:\n\n 0.25 0.25 0.25 0.25\n0 0 0 1\n\n"
                    "MOTIF C3\nletter-probability matrix: alength= 4 w= 1\n1 0 0 0\n")
    db = read_meme(path)
    assert [(m.id, m.name, m.ppm.shape[1]) for m in db] == [("A1", "first", 3), ("B2", "B2", 2), ("C3", "C3", 1)]
    np.testing.assert_allclose(db[1].ppm[:, 1], [0, 0, 0, 1])
    path.write_text("MEME version 4\n\nMOTIF E\nletter-probability matrix:\nURL x\n")
    with pytest.raises(MotifDBError, match="motif 'E': expected 4 probabilities"):
        read_meme(path)


def test_jaspar_plants_gcc_box_is_an_erf(found):
    pytest.importorskip("pyjaspar")
    from maize_ddp.motif_db import jaspar

    db = jaspar("plants")
    assert len(db) > 300 and all(m.ppm.shape[0] == 4 for m in db)
    neg = next(p for p in found[0].patterns if p.sign == "-")
    matches, _ = motifs.match([neg], db, top=3)
    best = matches[0][0]
    # the GCC box is the binding site of AP2/ERF factors; JASPAR CORE plants has no TBP matrix
    assert "ERF" in best.family or "AP2" in best.family, best


def write_npz(path, n=N_ROWS):
    codes, scores, *_ = planted(n=n)
    ids = np.array([f"gene{i:03d}" for i in range(n)])
    np.savez_compressed(path, ids=ids, codes=codes, prediction=np.zeros(n, np.float32), ism=scores)
    (path.parent / "interpret.json").write_text(json.dumps({"generator": "maize_ddp.interpret",
                                                             "landmarks": {"TSS": TSS}}))
    return ids


FAST_FLAGS = ["--window", "15", "--flank", "5", "--leiden-runs", "4", "--min-seqlets", "50", "--seed", "7"]


@pytest.mark.e2e
def test_command_on_attributions(tmp_path):
    (tmp_path / "in").mkdir()
    ids = write_npz(tmp_path / "in" / "attributions.npz")
    db = small_db(tmp_path / "db.meme")
    out = tmp_path / "motifs"
    # in this process: the outcome does not depend on which runs it, and numba's compiled kernels are warm
    r = in_process("maize_ddp.motifs", "--attributions", tmp_path / "in" / "attributions.npz",
                   "--motif-db", db, "--out", out, *FAST_FLAGS)
    assert r.returncode == 0, r.stderr
    assert "positive and" in r.stdout
    table = [line.split("\t") for line in (out / "motifs.tsv").read_text().splitlines()]
    assert table[0][:7] == ["pattern", "sign", "seqlets", "rows", "width", "consensus", "mean_contribution"]
    assert table[0][7:12] == ["match1_id", "match1_name", "match1_family", "match1_p", "match1_q"]
    rows = {r[0]: dict(zip(table[0], r)) for r in table[1:]}
    assert rows["pos_0"]["match1_name"] == "TBP" and rows["neg_0"]["match1_name"] == "ERF_GCC"
    seqlets = [line.split("\t") for line in (out / "seqlets.tsv").read_text().splitlines()]
    assert seqlets[0][0] == "id" and {r[0] for r in seqlets[1:]} <= set(ids)
    assert all(int(r[5]) == int(r[2]) - TSS for r in seqlets[1:])
    assert (out / "patterns.meme").is_file() and {p.name for p in (out / "logos").iterdir()} >= {"pos_0.png", "neg_0.png"}
    manifest = json.loads((out / "motifs.json").read_text())
    assert manifest["generator"] == "maize_ddp.motifs" and manifest["tss"] == TSS and manifest["rows"] == N_ROWS


def test_bad_motif_db_is_one_line_and_leaves_nothing(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    write_npz(tmp_path / "in" / "attributions.npz", n=30)
    (tmp_path / "bad.meme").write_text("MEME version 4\nMOTIF A\nletter-probability matrix: w= 3\n1 0 0 0\n")
    out = tmp_path / "motifs"
    rc = motifs.main(["--attributions", str(tmp_path / "in" / "attributions.npz"), "--motif-db",
                      str(tmp_path / "bad.meme"), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and err[0].startswith("error: ") and "bad.meme" in err[0], err
    assert not out.exists() and not list(tmp_path.glob("motifs*"))


def test_too_few_rows_from_the_command(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    write_npz(tmp_path / "in" / "attributions.npz", n=30)
    out = tmp_path / "motifs"
    rc = motifs.main(["--attributions", str(tmp_path / "in" / "attributions.npz"), "--motif-db",
                      str(small_db(tmp_path / "db.meme")), "--top", "5", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "5 row(s)" in err[0], err
    assert not out.exists()


def test_a_missing_package_says_which_pip_install_fixes_it():
    from maize_ddp.motif_db import MissingPackage, require

    with pytest.raises(MissingPackage, match=r"'no_such_package_x'.*pip install .*maize-ddp\[motifs\]"):
        require("no_such_package_x")
