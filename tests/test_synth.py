import json

import numpy as np
import pytest

from convert import synth
from maize_ddp.codes import ascii_to_codes, onehot_to_codes
from maize_ddp.outputs import OutputError


def load_split(out, split, layout="N4L"):
    xs, ys = [], []
    for f in sorted((out / split).glob("*.npz")):
        with np.load(f) as z:
            xs.append(onehot_to_codes(z["arr_0"], layout))
            ys.append(z["arr_1"])
    return np.concatenate(xs), np.concatenate(ys)


def test_layout_and_truth(tmp_path):
    out = tmp_path / "ds"
    synth.generate(out, train=300, val=100, test=100, seq_len=300, shard_size=128)
    assert sorted(p.name for p in (out / "train").glob("*.npz")) == [f"train-{i:05d}.npz" for i in range(3)]
    with np.load(out / "train" / "train-00000.npz") as z:
        assert z["arr_0"].shape == (128, 4, 300) and z["arr_0"].dtype == np.float32
        assert z["arr_1"].shape == (128,) and z["arr_1"].dtype == np.float32
    truth = json.loads((out / "truth.json").read_text())
    assert truth["ceiling_pearson"] == [pytest.approx(1 / np.sqrt(1.25))]
    assert not list(tmp_path.glob("*.tmp-*"))


def test_deterministic_for_a_seed(tmp_path):
    a, b, c = (tmp_path / n for n in "abc")
    for out, seed in ((a, 1), (b, 1), (c, 2)):
        synth.generate(out, train=64, val=0, test=0, seq_len=200, shard_size=32, seed=seed)
    xa, ya = load_split(a, "train")
    xb, yb = load_split(b, "train")
    xc, _ = load_split(c, "train")
    assert np.array_equal(xa, xb) and np.array_equal(ya, yb)
    assert not np.array_equal(xa, xc)


@pytest.mark.parametrize("layout,dtype", [("NL4", "uint8"), ("N4L", "bool"), ("NL4", "float32")])
def test_layouts_and_dtypes_encode_the_same_sequences(tmp_path, layout, dtype):
    ref, other = tmp_path / "ref", tmp_path / "other"
    synth.generate(ref, train=40, val=0, test=0, seq_len=120, num_targets=3, shard_size=16)
    synth.generate(other, train=40, val=0, test=0, seq_len=120, num_targets=3, shard_size=16,
                   layout=layout, dtype=dtype)
    with np.load(other / "train" / "train-00000.npz") as z:
        assert z["arr_0"].dtype == np.dtype(dtype)
        assert z["arr_0"].shape == ((16, 120, 4) if layout == "NL4" else (16, 4, 120))
        assert z["arr_1"].shape == (16, 3)
    x_ref, y_ref = load_split(ref, "train")
    x, y = load_split(other, "train", layout)
    assert np.array_equal(x, x_ref) and np.array_equal(y, y_ref)


def test_motif_scanner_matches_a_plain_python_search():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 4, size=(20, 400)).astype(np.uint8)
    text = ["".join("ACGT"[c] for c in row) for row in codes]
    import re
    for name, (consensus, _) in synth.MOTIFS.items():
        pattern = "".join(f"[{synth.IUPAC[s]}]" for s in consensus)
        hits = synth.motif_hits(codes, consensus)
        for row, seq in enumerate(text):
            expected = {m.start() for m in re.finditer(f"(?={pattern})", seq)}
            assert set(np.flatnonzero(hits[row])) == expected, name


def test_tata_effect_depends_on_position():
    length = 600
    tss = synth.tss_position(length)
    base = np.zeros((2, length), dtype=np.uint8) + 1  # all C: no motif anywhere
    base[0, tss - 30:tss - 24] = ascii_to_codes("TATAAA")
    base[1, 50:56] = ascii_to_codes("TATAAA")
    f = synth.features(base)
    assert f[0, 0] == pytest.approx(1.0) and f[1, 0] < 1e-6


def test_labels_reach_the_recorded_ceiling(tmp_path):
    """Least squares on the true features recovers r close to the noise ceiling on test."""
    out = tmp_path / "ds"
    truth = synth.generate(out, train=3000, val=0, test=1000, seq_len=400, shard_size=1000, noise_sd=0.5)
    x_train, y_train = load_split(out, "train")
    x_test, y_test = load_split(out, "test")
    design = lambda x: np.column_stack([synth.features(x), np.ones(len(x))])
    coef, *_ = np.linalg.lstsq(design(x_train), y_train, rcond=None)
    r = np.corrcoef(design(x_test) @ coef, y_test)[0, 1]
    ceiling = truth["ceiling_pearson"][0]
    assert ceiling - 0.04 < r <= ceiling + 0.03
    # and a predictor that ignores the sequence is useless
    assert abs(np.corrcoef(x_test.mean(1), y_test)[0, 1]) < 0.3


def test_cli_refuses_existing_output(tmp_path, capsys):
    out = tmp_path / "ds"
    assert synth.main([str(out), "--train", "10", "--val", "0", "--test", "0", "--seq-len", "100"]) == 0
    assert synth.main([str(out), "--train", "10", "--seq-len", "100"]) == 1
    assert "exists" in capsys.readouterr().err
    # --overwrite replaces an earlier synth output, and only that
    assert synth.main([str(out), "--train", "12", "--val", "0", "--test", "0", "--seq-len", "100", "--overwrite"]) == 0
    assert json.loads((out / "truth.json").read_text())["sizes"]["train"] == 12
    other = tmp_path / "notes"
    other.mkdir()
    (other / "a.txt").write_text("mine")
    assert synth.main([str(other), "--train", "10", "--seq-len", "100", "--overwrite"]) == 1
    assert "is not a maize_ddp output; refusing to replace it" in capsys.readouterr().err
    assert (other / "a.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "notes"]


@pytest.mark.parametrize("flag,value,message", [
    ("--num-targets", "0", "--num-targets must be at least 1, not 0"),
    ("--train", "-5", "--train must be at least 0, not -5"),
    ("--shard-size", "0", "--shard-size must be at least 1, not 0"),
    ("--noise-sd", "-1", "--noise-sd must be at least 0, not -1.0"),
    ("--noise-sd", "nan", "--noise-sd must be at least 0, not nan"),
    ("--seed", "-1", "--seed must be at least 0, not -1"),
    ("--seq-len", "20", "--seq-len 20 is too short"),
])
def test_bad_settings_one_line_and_nothing_written(tmp_path, capsys, flag, value, message):
    out = tmp_path / "ds"
    assert synth.main([str(out), "--train", "10", "--seq-len", "100", flag, value]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith(f"error: {message}") and captured.err.count("\n") == 1, captured.err
    assert list(tmp_path.iterdir()) == []


def test_a_failure_midway_leaves_nothing(tmp_path, monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez_compressed", disk_full)
    out = tmp_path / "ds"
    with pytest.raises(OutputError, match=f"{out}: cannot write the output \\(No space left on device\\)"):
        synth.generate(out, train=10, val=0, test=0, seq_len=100)
    assert list(tmp_path.iterdir()) == []
