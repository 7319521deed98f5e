"""The installed entry point: `maize-ddp COMMAND`, presets by name, and a wheel that carries them."""
import importlib
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from maize_ddp import cli, config

ROOT = Path(__file__).resolve().parents[1]


def test_every_command_is_reachable_and_listed(capsys):
    assert cli.main([]) == 2 and cli.main(["--help"]) == 0
    shown = capsys.readouterr().out
    for name, (module, _) in cli.COMMANDS.items():
        assert f"  {name} " in shown and callable(importlib.import_module(module).main)
    assert cli.main(["trian"]) == 2 and "error: no command 'trian'" in capsys.readouterr().err


def test_a_command_runs_through_the_entry_point(tmp_path, capsys):
    from _npz import make_dataset
    from convert import npz_to_zarr

    make_dataset(tmp_path / "src", {"train": [40], "val": [8], "test": [8]})
    npz_to_zarr.convert(tmp_path / "src", tmp_path / "d.zarr")
    assert cli.main(["train", "--data", str(tmp_path / "d.zarr"), "--out", str(tmp_path / "run"),
                     "--config", "core_promoter", "--check"]) == 0
    assert capsys.readouterr().out == f"check: ok resume=no out={tmp_path / 'run'}\n"


def test_presets_by_name_and_a_missing_config_lists_them(tmp_path):
    assert config.preset_path(Path("core_promoter")) == config.PRESETS / "core_promoter.toml"
    assert config.preset_path(Path("gene_level.toml")) == config.PRESETS / "gene_level.toml"
    mine = tmp_path / "core_promoter"
    assert config.preset_path(mine) == mine  # a path is a path
    try:
        config.load_toml(Path("no_such_preset"))
    except config.ConfigError as e:
        assert "config file not found (presets by name: core_promoter, deepcre, gene_level)" in str(e)
    else:
        raise AssertionError("a missing config was accepted")


def test_the_wheel_carries_the_presets_and_the_entry_point(tmp_path):
    # built from a copy: a build writes build/ and *.egg-info beside the sources
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".gpu", "build", "*.egg-info", "demo", "runs", "__pycache__", ".pytest_cache"))
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w",
                          str(tmp_path), str(src)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    wheel = next(tmp_path.glob("maize_ddp-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert {"maize_ddp/presets/core_promoter.toml", "maize_ddp/presets/gene_level.toml"} <= set(names)
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "maize-ddp = maize_ddp.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()
