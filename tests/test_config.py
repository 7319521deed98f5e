import json

import pytest

from maize_ddp import config


def test_defaults_are_the_report():
    cfg = config.resolve(["--data", "x.zarr"])
    assert (cfg.epochs, cfg.batch_size) == (10, 32)
    assert cfg.model["conv1kc"] == 64 and cfg.model["convdc"] == 6


def test_flags_override_file_override_defaults(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('data = "a.zarr"\nepochs = 3\nlr = 0.01\n[model]\nconv1kc = 16\nconvdc = 2\n')
    cfg = config.resolve(["--config", str(f), "--epochs", "5", "--convdc", "4", "--sync-bn"])
    assert cfg.data == "a.zarr" and cfg.epochs == 5 and cfg.lr == 0.01
    assert cfg.model["conv1kc"] == 16 and cfg.model["convdc"] == 4 and cfg.sync_bn is True
    again = config.from_dict(json.loads(config.dumps(cfg)))
    assert again == cfg


def test_unknown_keys_in_file_are_errors(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('data = "a"\nepoch = 3\n[model]\nconvx = 1\n')
    with pytest.raises(ValueError, match=r"unknown keys \['epoch', 'model.convx'\]"):
        config.resolve(["--config", str(f)])


def test_bad_values(tmp_path):
    with pytest.raises(ValueError, match="--data is required"):
        config.resolve([])
    with pytest.raises(ValueError, match="--amp"):
        config.resolve(["--data", "x", "--amp", "fp8"])
    for flag in ("--patience", "--bn-recalibration-batches", "--max-shift", "--grad-clip", "--seed"):
        with pytest.raises(ValueError, match=f"{flag} must not be negative"):
            config.resolve(["--data", "x", flag, "-1"])
    with pytest.raises(ValueError, match="--log-every must be at least 1"):
        config.resolve(["--data", "x", "--log-every", "0"])
    with pytest.raises(ValueError, match="--lr-min-ratio must be between 0 and 1"):
        config.resolve(["--data", "x", "--lr-min-ratio", "1.5"])
    bad = tmp_path / "bad.toml"
    bad.write_text("epochs = = 3")
    with pytest.raises(ValueError, match="not valid TOML"):
        config.resolve(["--config", str(bad)])


def test_shipped_presets_resolve():
    from pathlib import Path

    presets = sorted((Path(__file__).parent.parent / "presets").glob("*.toml"))
    assert presets
    for preset in presets:
        cfg = config.resolve(["--config", str(preset), "--data", "x.zarr"])
        assert cfg.epochs >= 1


def test_every_flag_explains_itself_and_shows_its_default():
    parser = config.make_parser()
    flags = {a.dest: a for a in parser._actions if a.option_strings and a.dest != "help"}
    defaults = {**config.TrainConfig().to_dict(), **config.TrainConfig().model}
    for dest, action in flags.items():
        assert action.help and action.help != dest.replace("_", " "), dest
        default = defaults.get(dest)
        if default not in (None, "") and not isinstance(default, bool):
            assert action.help.endswith(f"(default: {default})"), (dest, action.help)
    assert flags["conv2ks"].help == "kernel size of conv block 2 (default: 5)"
    assert flags["pdropd"].help.startswith("dropout of each residual dilated block")


@pytest.mark.parametrize("text,message", [
    ('epochs = "3"', "epochs must be an integer, not '3'"),
    ('lr = "1e-3"', "lr must be a number, not '1e-3'"),
    ("sync_bn = 1", "sync_bn must be true or false, not 1"),
    ("epochs = true", "epochs must be an integer, not True"),
    ("[model]\nconv1kc = 32.5", "model.conv1kc must be an integer, not 32.5"),
])
def test_values_of_the_wrong_type_in_a_file_are_named(tmp_path, text, message):
    f = tmp_path / "c.toml"
    f.write_text('data = "x.zarr"\n' + text + "\n")
    with pytest.raises(ValueError, match=f"c.toml: {message}"):
        config.resolve(["--config", str(f)])


def test_an_integer_is_a_fine_float_in_a_file(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('data = "x.zarr"\nlr = 1\n[model]\npdrop1 = 0\n')
    cfg = config.resolve(["--config", str(f)])
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float) and cfg.model["pdrop1"] == 0.0


@pytest.mark.parametrize("flag,value,message", [
    ("--conv1kc", "0", "--conv1kc must be at least 1"),
    ("--conv1st", "0", "--conv1st must be at least 1"),
    ("--pool1ks", "0", "--pool1ks must be at least 1"),
    ("--conv2pd", "-1", "--conv2pd must not be negative"),
    ("--convdks", "4", "--convdks must be odd"),
    ("--pdrop1", "1.0", r"--pdrop1 must be in \[0, 1\)"),
])
def test_model_settings_are_checked_with_their_flags(flag, value, message):
    from maize_ddp.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        config.resolve(["--data", "x", flag, value])
