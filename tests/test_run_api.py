"""maize_ddp.Run: a trained run from Python, checked against the run's own report and by hand."""
import numpy as np
import pytest

from maize_ddp import Run
from maize_ddp.codes import codes_to_ascii, codes_to_onehot
from _runs import train_tiny_run
from maize_ddp.run import RunInputError


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train_tiny_run(tmp_path_factory.mktemp("run_api"))


def report(run_dir):
    rows = [line.split("\t") for line in (run_dir / "test_predictions.tsv").read_text().splitlines()[1:]]
    return [r[0] for r in rows], np.array([float(r[3]) for r in rows])


def test_predict_on_a_store_is_the_runs_own_report(trained):
    run = Run.load(trained / "run")
    assert (run.task, run.seq_len, run.num_targets, run.amp) == ("regression", 120, 1, "off")
    ids, pred = run.predict(trained / "data.zarr", split="test")
    want_ids, want = report(trained / "run")
    assert ids == want_ids
    np.testing.assert_allclose(pred[:, 0], want, rtol=1e-5, atol=1e-6)


def test_strings_codes_and_one_hot_give_the_same_predictions_in_order(trained):
    from maize_ddp.data import open_source, open_store

    run = Run.load(trained / "run", "last")
    pieces, _ = open_source(open_store(trained / "data.zarr"), "test").read([(0, 7)])
    codes = np.concatenate(pieces)
    from_codes = run.predict(codes)
    assert from_codes.shape == (7, 1)
    np.testing.assert_array_equal(run.predict([codes_to_ascii(c) for c in codes]), from_codes)
    np.testing.assert_array_equal(run.predict(codes_to_onehot(codes)), from_codes)
    # one sequence -> [T]; other batch shapes may round differently in the last bits
    np.testing.assert_allclose(run.predict(codes_to_ascii(codes[3])), from_codes[3], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(run.predict(codes[::-1]), from_codes[::-1], rtol=1e-5, atol=1e-6)


def test_the_predictor_is_the_runs_forward_on_one_batch(trained):
    """run.predictor: the loop every command uses, one batch at a time, with the run's settings
    (and others on request)."""
    import torch

    run = Run.load(trained / "run")
    codes = np.random.default_rng(1).integers(0, 4, (5, 120), dtype=np.uint8)
    got = run.predictor(codes)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float32 and got.shape == (5, 1)
    np.testing.assert_array_equal(got.numpy(), run.predict(codes))
    averaged = run.predictor.with_settings(rc_average=True)(codes).numpy()
    reverse_complement = np.ascontiguousarray(3 - codes[:, ::-1])  # no N here: A<->T, C<->G
    np.testing.assert_allclose(averaged, (run.predict(codes) + run.predict(reverse_complement)) / 2,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(averaged, run.predict(codes, rc_average=True))


def test_motif_rows_are_chosen_alike_from_a_run_and_from_its_attributions(trained):
    """--top from a run picks the rows (and their order: best first) that --top picks from the
    attributions of every row; --ids keeps the order asked and refuses an id given twice."""
    from maize_ddp import motifs

    run = Run.load(trained / "run")
    data = trained / "data.zarr"
    ids, codes, scores, pred, _ = motifs.attributions_from_run(run, data, show_progress=False)
    pick = motifs.choose(ids, pred, None, 5)
    top_ids, top_codes, top_scores, top_pred, _ = motifs.attributions_from_run(run, data, top=5, show_progress=False)
    assert list(top_ids) == [ids[k] for k in pick] and np.all(np.diff(top_pred) <= 0)
    np.testing.assert_array_equal(top_codes, codes[pick])
    np.testing.assert_allclose(top_scores, scores[pick], rtol=1e-5, atol=1e-6)
    wanted = [ids[7], ids[2]]
    assert list(motifs.attributions_from_run(run, data, ids=wanted, show_progress=False)[0]) == wanted
    assert [ids[k] for k in motifs.choose(ids, pred, wanted, None)] == wanted
    for chooser in (lambda: motifs.choose(ids, pred, [ids[1], ids[1]], None),
                    lambda: motifs.attributions_from_run(run, data, ids=[ids[1], ids[1]], show_progress=False)):
        with pytest.raises(Exception, match=f"--ids: '{ids[1]}' is given twice"):
            chooser()


def test_other_lengths_need_a_rule(trained):
    run = Run.load(trained / "run")
    short = "ACGT" * 25  # 100 bases for a 120-base model
    with pytest.raises(RunInputError, match="sequence 0 has 100 bases; the model reads 120"):
        run.predict([short])
    padded = short + "N" * 20
    np.testing.assert_array_equal(run.predict([short], align="left"), run.predict([padded]))
    with pytest.raises(RunInputError, match="codes must be uint8"):
        run.predict(np.full((2, 120), 7, np.uint8))


def test_ism_scores_are_prediction_differences_by_hand(trained):
    run = Run.load(trained / "run")
    seq = "".join(np.random.default_rng(0).choice(list("ACGT"), 120))
    scores = run.attribute(seq, method="ism")
    assert scores.shape == (1, 4, 120)
    base = run.predict(seq)[0]
    for pos, letter in ((5, "A"), (60, "G"), (119, "T")):
        if seq[pos] == letter:
            continue
        mutant = seq[:pos] + letter + seq[pos + 1:]
        np.testing.assert_allclose(scores[0, "ACGT".index(letter), pos], run.predict(mutant)[0] - base,
                                   rtol=1e-4, atol=1e-5)
    assert run.attribute([seq], method="saliency").shape == (1, 4, 120)
    for target in (run.num_targets, -1, 0.5, "leaf"):
        with pytest.raises(ValueError, match=f"target {target!r}: the model has {run.num_targets} target.*0 \\(target0\\)"):
            run.attribute(seq, target=target)
    np.testing.assert_array_equal(run.attribute(seq, target="target0"), scores)  # a target by its name


def test_motifs_from_the_api_ask_for_enough_rows(trained):
    """Run.motifs is TF-MoDISco on the run's own attributions: a handful of sequences is refused
    in one line (the library's rule), not a traceback from deep inside the clustering."""
    pytest.importorskip("modiscolite")
    from maize_ddp.errors import Error

    run = Run.load(trained / "run")
    with pytest.raises(Error, match="rows") as e:
        run.motifs(["ACGT" * 30] * 5)
    assert "\n" not in str(e.value)


def test_a_path_or_a_typo_is_never_read_as_a_sequence_of_ns(trained):
    run = Run.load(trained / "run")
    with pytest.raises(RunInputError, match=r"sequence 0 \('starts.fa'\) is not A, C, G, T and N"):
        run.attribute("starts.fa", align="centre")
    with pytest.raises(RunInputError, match="sequence 1 .* is not A, C, G, T and N: 'U' at position 4"):
        run.codes(["ACGT" * 30, "ACGU" * 30])
    # a long typo is a sequence, not a file name the OS refuses; nor is a short one a missing file
    for typo, where in (("ACGT" * 100 + "X" + "ACGT" * 100, "'X' at position 401"), ("ACGTR", "'R' at position 5"),
                        ("ACGT" * 100 + "." + "ACGT", "'.' at position 401")):  # no file name is 405 long
        with pytest.raises(RunInputError, match=f"is neither a file nor a sequence: {where} is not A, C, G, T or N"):
            run.predict(typo)
    with pytest.raises(Exception, match="missing.fa: no such store"):  # a name with a '.' is a file
        run.predict("missing.fa")
    with pytest.raises(Exception, match="amp must be auto, off, bf16 or fp16, not 'bf-16'"):
        run.predict("ACGT" * 30, amp="bf-16")


def test_a_run_trained_in_fp16_predicts_on_a_cpu_in_fp32_and_says_so(capsys):
    import torch

    from maize_ddp.inference import run_settings

    assert run_settings({"config": {"amp": "fp16"}}, None, None, torch.device("cpu")) == ("off", False)
    assert "trained with --amp fp16, which needs CUDA; predicting in fp32" in capsys.readouterr().err
