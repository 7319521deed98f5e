"""maize_ddp.design: in-silico evolution on a model whose output is a known function of the
sequence (so the true score is known, not only the predicted one), and the command end to end."""
import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from _commands import in_process
from _runs import ENV, train_tiny_run
from maize_ddp import design
from maize_ddp.codes import ascii_to_codes, codes_to_ascii
from maize_ddp.models import one_hot
from maize_ddp.run import Run

MOTIFS = ("TATAAA", "GGGCGG")  # target 0: a TATA box, target 1: a GC box
LENGTH = 60


class MotifModel(torch.nn.Module):
    """Per target, the sum over every 6-base window of 4 ** (matches to the motif - 6): a full
    motif adds 1, a window one base off adds 1/4, so every step towards a motif pays."""

    def __init__(self):
        super().__init__()
        filters = torch.stack([one_hot(torch.from_numpy(ascii_to_codes(m))[None])[0] for m in MOTIFS])
        self.conv = torch.nn.Conv1d(4, len(MOTIFS), 6, bias=False)
        self.conv.weight.data.copy_(filters)

    def forward(self, codes):
        matches = self.conv(one_hot(codes))  # [B, motifs, windows]
        return torch.pow(4.0, matches - 6).sum(-1)


def true_score(seq: str) -> np.ndarray:
    """What MotifModel computes, by hand."""
    out = []
    for motif in MOTIFS:
        windows = [seq[i:i + 6] for i in range(len(seq) - 5)]
        out.append(sum(4.0 ** (sum(a == b for a, b in zip(w, motif)) - 6) for w in windows))
    return np.array(out)


def toy_run(rc_average: bool = False) -> Run:
    return Run(path=Path("motif-model"), task="regression", seq_len=LENGTH, num_targets=2, amp="off",
               rc_average=rc_average, align=None, origin=None, config={}, model=MotifModel().eval())


def random_seqs(n: int, seed: int = 1, avoid=()) -> list[str]:
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        seq = "".join(rng.choice(list("ACGT"), LENGTH))
        if not any(w in seq for w in avoid):
            out.append(seq)
    return out


def plant(seq: str, motif: str, at: int) -> str:
    return seq[:at] + motif + seq[at + len(motif):]


def rank1(designs, start: int) -> list:
    return [d for d in designs if d.start == start and d.rank == 1]


def check_bookkeeping(designs, starts: list[str], run: Run) -> None:
    """Mutations and their count describe each design against its start; predictions are the
    model's true function and what run.predict gives for the same sequences."""
    for d in designs:
        start = starts[d.start]
        diff = [f"{start[p]}{p + 1}{d.sequence[p]}" for p in range(LENGTH) if start[p] != d.sequence[p]]
        assert d.mutation_text == ";".join(diff)
        assert len(d.mutations) == len(diff)
        np.testing.assert_allclose(d.prediction, true_score(d.sequence), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.stack([d.prediction for d in designs]),
                               run.predict([d.sequence for d in designs]), rtol=1e-5, atol=1e-5)


def test_goal_max_inserts_the_motif_and_the_true_score_rises_every_round():
    run = toy_run()
    starts = random_seqs(3, avoid=MOTIFS[:1])
    designs = design.evolve(run, starts, rounds=5)
    assert [(d.start, d.round, d.rank) for d in designs] == [(s, r, 1) for s in range(3) for r in range(6)]
    assert [d.sequence for d in designs if d.round == 0] == starts
    check_bookkeeping(designs, starts, run)
    for s in range(3):
        truth = [true_score(d.sequence)[0] for d in rank1(designs, s)]
        assert all(b >= a - 1e-9 for a, b in zip(truth, truth[1:])), truth
        assert truth[-1] > truth[0] + 1
        assert MOTIFS[0] in rank1(designs, s)[-1].sequence
        assert all(len(d.mutations) <= d.round for d in rank1(designs, s))


def test_goal_min_removes_the_motif():
    run = toy_run()
    starts = [plant(s, MOTIFS[0], 20) for s in random_seqs(2, seed=2)]
    designs = design.evolve(run, starts, rounds=3, goal="min")
    check_bookkeeping(designs, starts, run)
    for s in range(2):
        scores = [d.score for d in rank1(designs, s)]
        assert all(b <= a + 1e-9 for a, b in zip(scores, scores[1:])) and scores[-1] < scores[0] - 0.5
        assert MOTIFS[0] not in rank1(designs, s)[-1].sequence


def test_goal_value_brings_the_score_to_it():
    run = toy_run()
    starts = random_seqs(2, seed=3, avoid=MOTIFS[:1])
    designs = design.evolve(run, starts, rounds=4, goal="1.5")
    for s in range(2):
        gaps = [abs(d.score - 1.5) for d in rank1(designs, s)]
        assert all(b <= a + 1e-9 for a, b in zip(gaps, gaps[1:]))
        assert gaps[-1] < gaps[0] and gaps[-1] < 0.3
        assert all(d.objective == pytest.approx(-abs(d.score - 1.5)) for d in rank1(designs, s))


def test_weighted_targets_raise_one_and_lower_the_other_with_rc_averaging():
    run = toy_run(rc_average=True)  # the weighted head and RC averaging: still run.predict's numbers
    starts = [plant(s, MOTIFS[1], 30) for s in random_seqs(2, seed=4, avoid=MOTIFS)]
    designs = design.evolve(run, starts, rounds=4, weights=[1, -1])
    np.testing.assert_allclose(np.stack([d.prediction for d in designs]),
                               run.predict([d.sequence for d in designs]), rtol=1e-5, atol=1e-5)
    for s in range(2):
        first, last = rank1(designs, s)[0], rank1(designs, s)[-1]
        assert last.prediction[0] > first.prediction[0] and last.prediction[1] < first.prediction[1]
        assert [d.score for d in rank1(designs, s)] == sorted(d.score for d in rank1(designs, s))
        assert last.score == pytest.approx(last.prediction[0] - last.prediction[1], abs=1e-6)


def test_a_forbidden_sequence_never_appears_on_either_strand():
    run = toy_run()
    starts = random_seqs(3, avoid=MOTIFS[:1] + ("TTTATA",))
    designs = design.evolve(run, starts, rounds=5, beam=2, forbid=["tataaa"])
    assert len(designs) == 3 * (1 + 5 * 2)
    for d in designs:
        assert "TATAAA" not in d.sequence and "TTTATA" not in d.sequence  # TTTATA: TATAAA on the other strand
    assert all(rank1(designs, s)[-1].score > rank1(designs, s)[0].score for s in range(3))  # it still climbs
    with pytest.raises(design.DesignError, match="already holds forbidden"):
        design.evolve(run, [plant(starts[0], "TTTATA", 5)], rounds=1, forbid=["TATAAA"])


def test_fixed_regions_and_n_positions_never_change_and_max_mutations_holds():
    run = toy_run()
    starts = [s[:25] + "NNNNN" + s[30:] for s in random_seqs(2, seed=5, avoid=MOTIFS[:1])]
    designs = design.evolve(run, starts, rounds=6, fixed=["0:10", (45, 60)], max_mutations=3, beam=2)
    check_bookkeeping(designs, starts, run)
    for d in designs:
        start = starts[d.start]
        assert d.sequence[:10] == start[:10] and d.sequence[45:] == start[45:]
        assert d.sequence[25:30] == "NNNNN"
        assert len(d.mutations) <= 3
    assert max(len(d.mutations) for d in designs) == 3  # the limit binds, so it is tested


def test_beam_keeps_distinct_variants_best_first():
    run = toy_run()
    starts = random_seqs(2, seed=6)
    designs = design.evolve(run, starts, rounds=3, beam=3)
    for s in range(2):
        for r in range(1, 4):
            kept = [d for d in designs if d.start == s and d.round == r]
            assert [d.rank for d in kept] == [1, 2, 3]
            assert len({d.sequence for d in kept}) == 3
            assert [d.objective for d in kept] == sorted((d.objective for d in kept), reverse=True)


def test_same_seed_same_designs_and_the_seed_only_breaks_ties():
    run = toy_run()
    starts = random_seqs(3, seed=7)
    table = design.designs_table(design.evolve(run, starts, rounds=3, seed=11), ["a", "b"])
    assert table == design.designs_table(design.evolve(run, starts, rounds=3, seed=11), ["a", "b"])
    runs = [design.evolve(run, starts, rounds=3, seed=s) for s in range(4)]
    # exact ties are common in this model: seeds may pick different sequences, never different scores
    assert len({tuple(d.sequence for d in r) for r in runs}) > 1
    for r in runs[1:]:
        np.testing.assert_allclose([d.score for d in r], [d.score for d in runs[0]], atol=1e-6)


def test_parts_split_the_start_sequences_and_together_are_the_whole():
    run = toy_run()
    starts = random_seqs(5, seed=8)
    whole = design.evolve(run, starts, rounds=2, ids=list("abcde"))
    parts = design.evolve(run, starts, rounds=2, ids=list("abcde"), part=(0, 2)) + \
        design.evolve(run, starts, rounds=2, ids=list("abcde"), part=(1, 2))
    parts.sort(key=lambda d: (d.start, d.round, d.rank))
    assert design.designs_table(parts, ["a", "b"]) == design.designs_table(whole, ["a", "b"])
    assert [d.id for d in whole if d.round == 0] == list("abcde")
    assert design.evolve(run, starts[:1], rounds=2, part=(1, 2)) == []  # more ranks than start sequences


@pytest.mark.parametrize("kwargs, message", [
    (dict(goal="maximum"), "goal must be max, min or a number"),
    (dict(target=2), "target 2: the model has 2 target"),
    (dict(weights=[1, 2, 3]), "weights: 3 given"),
    (dict(fixed=["50:70"]), "fixed region 50:70 is not inside"),
    (dict(fixed=["5-9"]), "write it as START:END"),
    (dict(forbid=["GANTC"]), "only the letters A, C, G and T"),
])
def test_bad_settings_are_errors_that_name_them(kwargs, message):
    with pytest.raises(design.DesignError, match=message):
        design.evolve(toy_run(), random_seqs(1), rounds=1, **kwargs)


def test_table_columns_and_best_designs():
    run = toy_run()
    designs = design.evolve(run, random_seqs(2, seed=9), rounds=2, ids=["p1", "p2"])
    lines = design.designs_table(designs, design.target_names(run)).splitlines()
    assert lines[0].split("\t") == ["id", "round", "rank", "sequence", "target0", "target1", "score", "objective",
                                    "n_mutations", "mutations"]
    assert [line.split("\t")[0] for line in lines[1:]] == ["p1"] * 3 + ["p2"] * 3
    named = design.designs_table(designs, ["leaf", "root"]).splitlines()[0].split("\t")
    clash = design.designs_table(designs, ["score", "root"]).splitlines()[0].split("\t")  # a column of the table's own
    assert named[4:6] == ["leaf", "root"] and clash[4:6] == ["target0", "target1"]
    assert [(d.id, d.round) for d in design.best_designs(designs)] == [("p1", 2), ("p2", 2)]


def test_every_flag_has_help_naming_its_default():
    parser = design.build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert (action.help or "").strip(), action.dest
        if action.option_strings and not action.required and action.default not in (None, False, []):
            assert "default" in action.help.lower(), action.option_strings


# ---------------------------------------------------------------- the command, on a trained run

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from maize_ddp.data import open_source, open_store

    root = train_tiny_run(tmp_path_factory.mktemp("design"))
    pieces, _ = open_source(open_store(root / "data.zarr"), "test").read([(0, 3)])
    seqs = [codes_to_ascii(c) for c in np.concatenate(pieces)]
    (root / "starts.fa").write_text("".join(f">start{i} test row {i}\n{s}\n" for i, s in enumerate(seqs)))
    return root, seqs


@pytest.mark.e2e
def test_command_writes_designs_whose_predictions_are_the_runs(trained):
    root, seqs = trained
    out = root / "designed"
    res = in_process("maize_ddp.design", root / "run", "--seqs", root / "starts.fa", "--out", out, "--rounds", "2",
                     "--device", "cpu", "--forbid", "GAATTC")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "designed 3 sequences over 2 rounds" in res.stdout
    assert {p.name for p in out.iterdir()} >= {"designs.tsv", "design.json", "trajectory.png"}
    header, *rows = [line.split("\t") for line in (out / "designs.tsv").read_text().splitlines()]
    assert header == ["id", "round", "rank", "sequence", "target0", "score", "objective", "n_mutations", "mutations"]
    assert [(r[0], r[1], r[2]) for r in rows] == [(f"start{i}", str(k), "1") for i in range(3) for k in range(3)]
    for r in rows:
        start, seq = seqs[int(r[0][5:])], r[3]
        diff = [f"{start[p]}{p + 1}{seq[p]}" for p in range(len(seq)) if start[p] != seq[p]]
        assert r[8] == ";".join(diff) and int(r[7]) == len(diff) <= int(r[1])
        assert "GAATTC" not in seq
    assert [r[3] for r in rows if r[1] == "0"] == seqs
    pred = Run.load(root / "run").predict([r[3] for r in rows])
    np.testing.assert_allclose(np.array([float(r[4]) for r in rows]), pred[:, 0], rtol=1e-5, atol=1e-5)
    best = [float(r[6]) for r in rows]
    for i in range(3):
        assert best[3 * i] <= best[3 * i + 1] <= best[3 * i + 2]


@pytest.mark.e2e
@pytest.mark.parametrize("flags, message", [
    (["--seqs", "missing.fa"], "missing.fa: no such"),
    (["--fixed", "100:130"], "fixed region 100:130 is not inside the 120-base sequence"),
    (["--forbid", "GAXTTC"], "forbidden sequence 'GAXTTC': only the letters A, C, G and T"),
])
def test_bad_input_is_one_error_line_and_leaves_no_output(trained, flags, message, capsys, monkeypatch):
    root, _ = trained
    monkeypatch.chdir(root)
    argv = [str(root / "run"), "--seqs", str(root / "starts.fa"), "--out", "bad", "--rounds", "1", "--device", "cpu"]
    assert design.main(argv + flags) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not any(p.name.startswith("bad") for p in root.iterdir())


@pytest.mark.e2e
def test_two_ranks_design_each_start_once_and_agree_with_the_library(trained, tmp_path):
    import json

    root, seqs = trained
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           "-m", "maize_ddp.design", str(root / "run"), "--seqs", str(root / "starts.fa"), "--out", str(out),
           "--rounds", "2", "--beam", "2", "--goal", "min", "--device", "cpu", "--figures", "0"]
    res = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = [line.split("\t") for line in (out / "designs.tsv").read_text().splitlines()[1:]]
    want = design.evolve(Run.load(root / "run"), seqs, ids=[f"start{i}" for i in range(3)], rounds=2, beam=2,
                         goal="min")
    assert [(r[0], int(r[1]), int(r[2]), r[3], r[8]) for r in rows] == \
        [(d.id, d.round, d.rank, d.sequence, d.mutation_text) for d in want]
    np.testing.assert_allclose([float(r[4]) for r in rows], [d.prediction[0] for d in want], rtol=1e-5, atol=1e-5)
    assert json.loads((out / "design.json").read_text())["world_size"] == 2
    assert not (out / "trajectory.png").exists()


@pytest.mark.e2e
def test_an_existing_output_is_not_replaced_without_overwrite(trained, tmp_path, capsys):
    root, _ = trained
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    argv = [str(root / "run"), "--seqs", str(root / "starts.fa"), "--out", str(out), "--rounds", "1", "--device", "cpu"]
    assert design.main(argv) == 1
    assert "already exists" in capsys.readouterr().err
    assert design.main(argv + ["--overwrite"]) == 1
    assert "not a maize_ddp output" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "keep me"
    other = tmp_path / "explained"
    other.mkdir()
    (other / "interpret.json").write_text('{"generator": "maize_ddp.interpret"}')
    assert design.main(argv[:4] + [str(other), *argv[5:], "--overwrite"]) == 1
    assert "another command's output" in capsys.readouterr().err
    assert (other / "interpret.json").exists()
    # its own earlier output is replaced with --overwrite (and only then)
    ours = tmp_path / "designed"
    assert design.main(argv[:4] + [str(ours), *argv[5:]]) == 0
    assert design.main(argv[:4] + [str(ours), *argv[5:]]) == 1
    assert design.main(argv[:4] + [str(ours), *argv[5:], "--overwrite"]) == 0, capsys.readouterr().err
    assert (ours / "designs.tsv").exists()


@pytest.mark.e2e
def test_command_with_a_goal_value_and_weights_records_them(trained, tmp_path):
    import json

    root, _ = trained
    out = tmp_path / "to_value"
    argv = [str(root / "run"), "--seqs", str(root / "starts.fa"), "--out", str(out), "--rounds", "2",
            "--device", "cpu", "--goal", "0.5", "--weights", "2", "--beam", "2"]
    assert design.main(argv) == 0
    info = json.loads((out / "design.json").read_text())
    assert (info["goal"], info["weights"], info["beam"]) == (0.5, [2.0], 2)
    rows = [line.split("\t") for line in (out / "designs.tsv").read_text().splitlines()[1:]]
    assert len(rows) == 3 * (1 + 2 * 2)
    for r in rows:
        assert float(r[5]) == pytest.approx(2 * float(r[4]), rel=1e-6)
        assert float(r[6]) == pytest.approx(-abs(float(r[5]) - 0.5), abs=1e-6)
    assert (out / "trajectory.png").stat().st_size > 1000


def test_single_regions_and_words_are_taken_as_one_not_letter_by_letter():
    c = design.make_constraints(20, fixed=(0, 5), forbid="GAATTC")
    assert c.fixed[:5].all() and not c.fixed[5:].any()
    assert set(c.forbidden) == {"GAATTC"}  # its own reverse complement
    with pytest.raises(design.DesignError, match="seed must not be negative"):
        design.evolve(None, ["A" * 20], seed=-1)
