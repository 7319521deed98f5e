"""maize_ddp.interpret against known truth: convert.synth plants motifs whose weights truth.json
records; a model trained briefly on them must put its attribution on those motifs."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from _commands import in_process
from convert import npz_to_zarr, synth
from maize_ddp import attribution, interpret
from maize_ddp.checkpoint import load
from maize_ddp.inference import Predictor, model_from_checkpoint

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}
SMALL_MODEL = ["--conv1kc", "32", "--conv2kc", "32", "--conv3kc", "32", "--convdc", "2", "--convdkc", "16",
               "--conv4kc", "16", "--pool1ks", "2", "--pool2ks", "2", "--pool3ks", "2"]
SEQ_LEN = 200
# motif name -> where synth counts it (feature window), for the motif mask
TSS = synth.tss_position(SEQ_LEN)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("interpret")
    truth = synth.generate(root / "npz", train=3000, val=300, test=300, seq_len=SEQ_LEN, shard_size=1000,
                           noise_sd=0.3)
    npz_to_zarr.convert(root / "npz", root / "data.zarr")
    res = subprocess.run([sys.executable, "-m", "maize_ddp.train", "--data", root / "data.zarr", "--out",
                          root / "run", "--epochs", "10", "--batch-size", "64", "--warmup-steps", "10", "--lr", "3e-3",
                          *SMALL_MODEL], env=ENV, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    return {"root": root, "run": root / "run", "data": root / "data.zarr", "npz": root / "npz", "truth": truth}


def run_main(*args):
    """The command in this process (no interpreter start-up): its exit status."""
    return interpret.main([str(a) for a in args])


def motif_mask(codes: np.ndarray) -> np.ndarray:
    """[N, L]: bases of a planted motif that counts in synth's signal, where synth counts it."""
    mask = np.zeros(codes.shape, bool)
    regions = {"tata": (TSS - 30 - 16, TSS - 30 + 16), "caat": (TSS - 120, TSS - 60), "gbox": (0, TSS),
               "abre": (0, TSS), "wbox": (0, SEQ_LEN)}
    for name, (lo, hi) in regions.items():
        consensus = synth.MOTIFS[name][0]
        hits = synth.motif_hits(codes, consensus)
        for i, start in zip(*np.nonzero(hits)):
            if max(lo, 0) <= start < hi:
                mask[i, start:start + len(consensus)] = True
    return mask


@pytest.fixture(scope="module")
def explained(trained):
    out = trained["root"] / "interp"
    res = in_process("maize_ddp.interpret", trained["run"], "--data", trained["data"], "--top", "24", "--method",
                     "both", "--out", out)
    assert res.returncode == 0, res.stderr
    with np.load(out / "attributions.npz") as z:
        return out, {k: z[k] for k in z.files}


def test_attribution_is_on_the_planted_motifs(explained):
    out, z = explained
    mask = motif_mask(z["codes"])
    assert mask.sum() > 100
    ratios = {}
    for method in ("ism", "saliency"):
        imp = np.abs(z[f"{method}_importance"])
        ratios[method] = imp[mask].mean() / imp[~mask].mean()
    print("motif / background mean |importance|:", ratios)
    # measured 4.5 (ism) and 4.1 (saliency) when written; no preference would be 1
    assert ratios["ism"] > 2.5 and ratios["saliency"] > 2.5, ratios


def test_destroying_a_tata_box_lowers_the_prediction_as_truth_says(trained, tmp_path):
    """The test rows with a TATA box near its optimum, explained by id: every substitution that
    breaks the box has the sign truth implies (synth's features of the mutant x truth.json's
    weights, GC change included), on average and for most of them; one ISM entry is checked
    against a direct forward pass."""
    from maize_ddp.data import open_source, open_store, read_ids

    info = open_store(trained["data"])
    codes = np.concatenate(open_source(info, "test").read([(0, info.splits["test"].n)])[0])
    ids = read_ids(info, "test")
    rows, starts = np.nonzero(synth.motif_hits(codes, "TATAWA")[:, TSS - 38:TSS - 22])  # one sd of the optimum
    rows, keep = np.unique(rows, return_index=True)
    rows, starts = rows[:16], (starts[keep] + TSS - 38)[:16]
    assert len(rows) >= 10
    out = tmp_path / "tata"
    assert run_main(trained["run"], "--data", trained["data"], "--ids", *ids[rows], "--method", "ism", "--out", out,
                    "--figures", "0") == 0
    with np.load(out / "attributions.npz") as z:
        ism = z["ism"]
    weights = np.array(trained["truth"]["weights"][0])
    model_delta, truth_delta = [], []
    for k, (row, start) in enumerate(zip(rows, starts)):
        for pos in range(start, start + 6):
            for base in range(4):
                mutant = codes[row:row + 1].copy()
                mutant[0, pos] = base
                if base == codes[row, pos] or synth.motif_hits(mutant, "TATAWA")[0, start]:
                    continue  # not a change, or the box survives (W takes A or T)
                truth_delta.append(float((synth.features(mutant) - synth.features(codes[row:row + 1]))[0] @ weights))
                model_delta.append(float(ism[k, base, pos]))
    truth_delta, model_delta = np.array(truth_delta), np.array(model_delta)
    # truth: breaking the box lowers expression, unless a neighbouring box takes over
    assert (truth_delta < 0).mean() > 0.8
    model_delta = model_delta[truth_delta < 0]
    agree = np.mean(model_delta < 0)
    print(f"TATA-breaking substitutions: {len(model_delta)}, mean model delta {model_delta.mean():.3f}, "
          f"sign agrees with truth for {agree:.0%}")
    assert model_delta.mean() < 0 and agree > 0.8  # measured 94%
    model = model_from_checkpoint(load(trained["run"]), "cpu").eval()
    seq = torch.from_numpy(codes[rows[0]:rows[0] + 1].copy())
    mutant = seq.clone()
    mutant[0, starts[0]] = 2  # TATAWA -> GATAWA
    with torch.no_grad():
        want = (model(mutant) - model(seq))[0, 0].item()
    assert ism[0, 2, starts[0]] == pytest.approx(want, abs=1e-5)


def test_outputs_keep_ids_and_shapes(explained):
    out, z = explained
    n = len(z["ids"])
    assert n == 24 and z["ism"].shape == (n, 4, SEQ_LEN) == z["saliency"].shape
    # the reference base of ISM is 0, saliency only at the reference base
    ref = np.eye(4, dtype=bool)[z["codes"]].transpose(0, 2, 1)
    assert (z["ism"][ref] == 0).all() and (z["saliency"][~ref] == 0).all()
    # --top: the highest predictions, in order
    assert (np.diff(z["prediction"]) <= 0).all()
    rows = (out / "windows.tsv").read_text().splitlines()
    assert rows[0].startswith("id\t") and len(rows) == 1 + n * 2 * 5
    assert {r.split("\t")[0] for r in rows[1:]} == set(z["ids"].tolist())
    # figures for the first 16 sequences (the default): drawing one takes longer than its ISM
    assert sorted(p.name for p in (out / "figures").glob("*.png")) == \
        [interpret.figure_name(k, i) for k, i in enumerate(z["ids"][:16].tolist())]
    manifest = json.loads((out / "interpret.json").read_text())
    assert manifest["landmarks"] == {"TSS": TSS}


def test_rc_average_saliency_matches_the_averaged_forward(trained):
    """Saliency of the RC-averaged prediction: a finite-difference check on the one-hot input."""
    model = model_from_checkpoint(load(trained["run"]), "cpu").eval().double()
    codes = torch.from_numpy(np.random.default_rng(0).integers(0, 4, (2, SEQ_LEN), dtype=np.uint8))
    model.code_table = model.code_table.double()
    grad_x_input = attribution.saliency(Predictor(model, "cpu", rc_average=True), codes)
    x = model.one_hot(codes)

    def f(x):
        return ((model(x) + model(x.flip(1, 2))) / 2)[:, 0]
    pos = 17
    base = int(codes[0, pos])
    bumped = x.clone()
    bumped[0, base, pos] += 1e-4
    fd = ((f(bumped) - f(x)) / 1e-4)[0].item()
    assert grad_x_input[0, base, pos].item() == pytest.approx(fd, rel=1e-3, abs=1e-6)


def test_npz_folder_and_ids(trained, explained, tmp_path):
    """An npz folder by id gives the store's scores for the same rows."""
    _, z = explained
    pick = [str(z["ids"][3]), str(z["ids"][0])]
    out = tmp_path / "by_id"
    assert run_main(trained["run"], "--data", trained["npz"], "--ids", *pick, "--method", "ism", "--out", out,
                    "--figures", "0") == 0
    with np.load(out / "attributions.npz") as got:
        assert got["ids"].tolist() == pick and "saliency" not in got.files
        np.testing.assert_allclose(got["ism"], z["ism"][[3, 0]], atol=1e-5)


def test_two_ranks_explain_each_row_once(trained, explained, tmp_path):
    _, z = explained
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m",
           "maize_ddp.interpret", trained["run"], "--data", trained["data"], "--top", "5", "--method", "both",
           "--out", out, "--figures", "0"]
    res = subprocess.run(list(map(str, cmd)), env=ENV, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    with np.load(out / "attributions.npz") as got:
        assert got["ids"].tolist() == z["ids"][:5].tolist()
        for m in ("ism", "saliency"):
            np.testing.assert_allclose(got[m], z[m][:5], atol=1e-5)
    assert json.loads((out / "interpret.json").read_text())["world_size"] == 2


def test_bad_input_is_one_line_and_writes_nothing(trained, tmp_path, capsys):
    out = tmp_path / "x"
    assert run_main(trained["run"], "--data", trained["data"], "--ids", "no_such_gene", "--out", out) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no_such_gene" in err and str(trained["data"]) in err
    assert not out.exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert run_main(trained["run"], "--data", trained["data"], "--top", "1", "--out", mine, "--overwrite") == 1
    assert "refusing" in capsys.readouterr().err
    assert (mine / "notes.txt").read_text() == "keep me"


def test_overwrite_replaces_only_an_earlier_output(trained, tmp_path, capsys):
    out = tmp_path / "again"
    for _ in range(2):
        assert run_main(trained["run"], "--data", trained["data"], "--top", "1", "--method", "saliency", "--out", out,
                        "--overwrite", "--figures", "0") == 0
    assert sorted(p.name for p in out.parent.iterdir()) == ["again"]
    assert run_main(trained["run"], "--data", trained["data"], "--top", "1", "--out", out) == 1
    assert "already exists" in capsys.readouterr().err


def test_top_windows_reference():
    values = np.zeros(50)
    values[10:14] = 1.0
    values[30:33] = -2.0
    got = attribution.top_windows(values, 5, 3)
    assert got[0][:2] == (29, 34) or got[0][:2] == (28, 33)
    assert got[0][2] == pytest.approx(-6.0)
    assert got[1][2] == pytest.approx(4.0) and got[1][0] in range(9, 11)
    starts = sorted(g[0] for g in got)
    assert all(b - a >= 5 for a, b in zip(starts, starts[1:]))  # no overlap


def test_windows_table_tss():
    codes = np.zeros((1, 30), np.uint8)
    values = np.zeros((1, 30))
    values[0, 20:25] = 1
    text = interpret.windows_table(["g1"], codes, {"ism": values}, {"TSS": 10}, 5, 1)
    assert text.splitlines()[1].split("\t") == ["g1", "ism", "1", "20", "25", "5", "5", "10", "AAAAA"]


def test_the_documented_out_inside_the_run_is_accepted_but_never_the_run_itself(trained, capsys):
    """README: `interpret RUN ... --out RUN/interpret`: a folder of the run's own is fine; the run
    folder itself (which holds the checkpoint) is not."""
    out = trained["run"] / "interpret"
    try:
        assert run_main(trained["run"], "--data", trained["data"], "--top", "1", "--method", "saliency",
                        "--out", out, "--figures", "0") == 0, capsys.readouterr().err
        assert (out / "interpret.json").is_file()
    finally:
        shutil.rmtree(out, ignore_errors=True)
    assert run_main(trained["run"], "--data", trained["data"], "--top", "1", "--out", trained["run"],
                    "--overwrite") == 1
    assert "the output holds the input" in capsys.readouterr().err


def test_ids_are_found_in_whatever_split_holds_them(trained, tmp_path, capsys):
    from maize_ddp.data import open_store, read_ids

    info = open_store(trained["data"])
    train_ids = read_ids(info, "train")[:2].tolist()
    out = tmp_path / "from_train"
    assert run_main(trained["run"], "--data", trained["data"], "--ids", *train_ids, "--method", "saliency",
                    "--out", out, "--figures", "0") == 0
    assert "found in split 'train'" in capsys.readouterr().err
    assert json.loads((out / "interpret.json").read_text())["split"] == "train"
    mixed = [train_ids[0], read_ids(info, "test")[0]]
    assert run_main(trained["run"], "--data", trained["data"], "--ids", *mixed, "--out", tmp_path / "m") == 1
    assert "the ids are in several splits" in capsys.readouterr().err and not (tmp_path / "m").exists()
