"""Bring your own model: a class by name, module:Class or file.py:Class, trained and used like BasenjiModel."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from _commands import in_process
from maize_ddp import config, models
from maize_ddp.errors import ConfigError

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}

# A group's own model as a user writes it: one-hot in, [B, T] out, its own keyword arguments.
USER_MODEL = textwrap.dedent('''
    import torch
    from torch import nn


    class TinyNet(nn.Module):
        def __init__(self, num_targets, width=8):
            super().__init__()
            self.conv = nn.Conv1d(4, width, 9, padding=4)
            self.out = nn.Linear(width, num_targets)

        def forward(self, x):  # one-hot [B, 4, L]
            return self.out(torch.relu(self.conv(x)).mean(-1))


    class WrongShape(nn.Module):
        def __init__(self, num_targets, seq_len):
            super().__init__()
            self.lin = nn.Linear(4 * seq_len, 3)

        def forward(self, x):
            return self.lin(x.flatten(1))


    class Broken(nn.Module):
        def __init__(self, depth):
            super().__init__()
''')


@pytest.fixture()
def user_file(tmp_path):
    path = tmp_path / "nets.py"
    path.write_text(USER_MODEL)
    return path


def test_names_resolve_to_classes_and_bad_names_are_one_line(user_file, tmp_path):
    from maize_ddp.deepcre import DeepCRE
    from maize_ddp.model import BasenjiModel

    assert models.model_class("basenji") is BasenjiModel and models.model_class("deepcre") is DeepCRE
    assert models.model_class("maize_ddp.deepcre:DeepCRE") is DeepCRE
    assert models.model_class(f"{user_file}:TinyNet").__name__ == "TinyNet"
    (tmp_path / "raises.py").write_text("raise RuntimeError('needs a GPU library')\n")
    for name, problem in [("nope", "expected a built-in model"), ("no_such_pkg.x:Net", "cannot import no_such_pkg.x"),
                          (f"{tmp_path}/missing.py:Net", "no such model file"),
                          (f"{user_file}:Absent", "has no torch.nn.Module class 'Absent'"),
                          ("maize_ddp.models:one_hot", "has no torch.nn.Module class 'one_hot'"),
                          (f"{tmp_path}/raises.py:Net", "RuntimeError: needs a GPU library")]:
        with pytest.raises(ConfigError, match=problem) as e:
            models.model_class(name)
        assert "\n" not in str(e.value)


def test_a_one_hot_model_reads_codes_and_gets_only_the_arguments_it_takes(user_file):
    name = f"{user_file}:TinyNet"
    model = models.build(name, {"num_targets": 2, "seq_len": 30, "width": 5})  # TinyNet takes no seq_len
    assert model.conv.out_channels == 5
    codes = torch.randint(0, 5, (3, 30), dtype=torch.uint8)
    onehot = torch.zeros(3, 4, 30)
    for b in range(3):
        for i, c in enumerate(codes[b].tolist()):
            if c < 4:
                onehot[b, c, i] = 1  # N stays all zeros
    torch.testing.assert_close(model(codes), model(onehot))
    models.check_output(model, name, 30, 2, "cpu")
    with pytest.raises(ConfigError, match=r"returns \[2, 3\] for 2 sequences; it must return \[B, T\] = \[2, 1\]"):
        models.check_output(models.build(f"{user_file}:WrongShape", {"num_targets": 1, "seq_len": 30}),
                            "WrongShape", 30, 1, "cpu")
    with pytest.raises(ConfigError, match="cannot build it"):
        models.build(f"{user_file}:Broken", {"num_targets": 1, "seq_len": 30})


def test_config_chooses_the_class_and_takes_its_arguments_from_the_model_table(user_file, tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text(f'data = "x.zarr"\nmodel_class = "{user_file}:TinyNet"\n[model]\nwidth = 3\n')
    cfg = config.resolve(["--config", str(toml)])
    assert cfg.model_class == f"{user_file.resolve()}:TinyNet" and cfg.model == {"width": 3}
    cfg = config.resolve(["--data", "x.zarr", "--model", "deepcre"])
    assert cfg.model_class == "deepcre" and cfg.model == {}
    with pytest.raises(ConfigError, match="--conv1kc: BasenjiModel settings, but --model is deepcre"):
        config.resolve(["--data", "x.zarr", "--model", "deepcre", "--conv1kc", "8"])
    with pytest.raises(ConfigError, match="--model nope: expected a built-in model"):
        config.resolve(["--data", "x.zarr", "--model", "nope"])
    assert config.resolve(["--data", "x.zarr"]).model["conv1kc"] == 64  # BasenjiModel, every setting recorded


def test_deepcre_has_the_published_shape():
    model = models.build("deepcre", {"num_targets": 1, "seq_len": 3020})
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv1d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size[0]) for c in convs] == [
        (4, 64, 8), (64, 64, 8), (64, 128, 8), (128, 128, 8), (128, 64, 8), (64, 64, 8)]
    assert model.head[1].in_features == 64 * 6  # 3020 -> 378 -> 48 -> 6 after three pools of 8
    assert model(torch.full((2, 3020), 4, dtype=torch.uint8)).shape == (2, 1)


@pytest.fixture(scope="module")
def user_run(tmp_path_factory):
    """A user's class from a file, trained under torchrun with 2 processes on a small store."""
    from convert import npz_to_zarr, synth

    root = tmp_path_factory.mktemp("byo")
    synth.generate(root / "npz", train=256, val=64, test=48, seq_len=80, shard_size=128, dtype="uint8")
    npz_to_zarr.convert(root / "npz", root / "data.zarr")
    (root / "nets.py").write_text(USER_MODEL)
    (root / "c.toml").write_text(f'model_class = "{root / "nets.py"}:TinyNet"\n[model]\nwidth = 6\n')
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m",
           "maize_ddp.train", "--config", str(root / "c.toml"), "--data", str(root / "data.zarr"),
           "--out", str(root / "run"), "--epochs", "2", "--warmup-steps", "2", "--device", "cpu"]
    res = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return root


def predict_cli(root, *extra):
    return subprocess.run([sys.executable, "-m", "maize_ddp.predict", str(root / "run"), "--data",
                           str(root / "data.zarr"), "--split", "test", *extra],
                          env=ENV, capture_output=True, text=True, timeout=300)


@pytest.mark.e2e
def test_a_users_class_trains_under_torchrun_and_the_api_and_cli_agree(user_run):
    from maize_ddp import Run
    from maize_ddp.codes import codes_to_ascii
    from maize_ddp.data import open_source, open_store

    root = user_run
    recorded = json.loads((root / "run" / "config.json").read_text())
    assert recorded["model_class"] == f"{root / 'nets.py'}:TinyNet"
    assert recorded["model"] == {"width": 6, "seq_len": 80, "num_targets": 1}
    # the run's own report, the API and the command give one set of predictions
    with pytest.raises(Exception, match="--trust-model-code"):
        Run.load(root / "run")
    run = Run.load(root / "run", trust_code=True)
    assert type(run.model).__name__ == "TinyNet"
    ids, pred = run.predict(root / "data.zarr", split="test")
    report = [line.split("\t") for line in (root / "run" / "test_predictions.tsv").read_text().splitlines()[1:]]
    assert ids == [r[0] for r in report]
    np.testing.assert_allclose(pred[:, 0], [float(r[3]) for r in report], rtol=1e-5, atol=1e-6)
    out = root / "pred.tsv"
    res = predict_cli(root, "--out", str(out), "--trust-model-code")
    assert res.returncode == 0, res.stderr[-3000:]
    table = [line.split("\t") for line in out.read_text().splitlines()[1:]]
    by_id = {r[0]: float(r[-1]) for r in table}
    np.testing.assert_allclose([by_id[i] for i in ids], pred[:, 0], rtol=1e-5, atol=1e-6)
    pieces, _ = open_source(open_store(root / "data.zarr"), "test").read([(0, 5)])
    seqs = [codes_to_ascii(c) for c in np.concatenate(pieces)]
    np.testing.assert_allclose(run.predict(seqs)[:, 0], pred[:5, 0], rtol=1e-5, atol=1e-6)
    # without trust, the command names the class and the flag, in one line, and writes nothing
    refused = predict_cli(root, "--out", str(root / "refused.tsv"))
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "nets.py:TinyNet, code from outside maize_ddp; pass --trust-model-code" in refused.stderr
    assert not (root / "refused.tsv").exists()
    # a class that no longer imports: one line that says which
    (root / "nets.py").rename(root / "moved.py")
    try:
        gone = predict_cli(root, "--out", str(root / "gone.tsv"), "--trust-model-code")
    finally:
        (root / "moved.py").rename(root / "nets.py")
    assert gone.returncode == 1 and "Traceback" not in gone.stderr and "no such model file" in gone.stderr


@pytest.mark.e2e
def test_a_resume_with_another_model_class_is_refused(user_run, tmp_path):
    res = in_process("maize_ddp.train", "--data", user_run / "data.zarr", "--out", user_run / "run", "--resume",
                     "--epochs", "3", "--warmup-steps", "2", "--device", "cpu", "--model", "deepcre")
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert "--model-class deepcre (the run:" in res.stderr


@pytest.mark.e2e
def test_deepcre_trains_by_name_and_loads_without_trust(user_run, tmp_path):
    from maize_ddp import Run

    res = subprocess.run([sys.executable, "-m", "maize_ddp.train", "--data", str(user_run / "data.zarr"), "--out",
                          str(tmp_path / "run"), "--epochs", "1", "--warmup-steps", "2", "--device", "cpu",
                          "--model", "deepcre"], env=ENV, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    run = Run.load(tmp_path / "run")
    assert type(run.model).__name__ == "DeepCRE" and run.predict("ACGT" * 20).shape == (1,)


def test_a_model_table_the_class_cannot_take_is_refused_before_training(user_file, tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text(f'data = "x.zarr"\nmodel_class = "{user_file}:TinyNet"\n[model]\nwidht = 3\n')
    with pytest.raises(ConfigError, match=r"its \[model\] table does not fit TinyNet's arguments .*widht"):
        config.resolve(["--config", str(toml)])
    with pytest.raises(ConfigError, match="cannot build it from .*IndexError"):
        models.build("deepcre", {"num_targets": 1, "seq_len": 100, "dense": [128]})


@pytest.mark.e2e
def test_a_class_of_the_wrong_output_shape_fails_in_one_line_and_leaves_no_run_folder(user_run, tmp_path):
    out = tmp_path / "runs" / "wrong"
    res = in_process("maize_ddp.train", "--data", user_run / "data.zarr", "--out", out, "--epochs", "1",
                     "--device", "cpu", "--model", f"{user_run / 'nets.py'}:WrongShape")
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert "WrongShape: returns [2, 3] for 2 sequences; it must return [B, T] = [2, 1]" in res.stderr
    assert not out.exists() and (tmp_path / "runs").is_dir()  # its own folder goes, the parent stays
