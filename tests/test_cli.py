"""The installed entry point: `maize-ddp COMMAND`, presets by name, and a wheel that carries them."""
import importlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

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


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The project's wheel, built from a copy (a build writes build/ and *.egg-info beside the sources)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT, src, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".gpu", "build", "*.egg-info", "demo", "runs", "__pycache__", ".pytest_cache"))
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w",
                          str(tmp), str(src)], capture_output=True, text=True, timeout=600, cwd=tmp)
    assert res.returncode == 0, res.stderr[-2000:]
    return next(tmp.glob("maize_ddp-*.whl"))


def test_the_wheel_carries_the_presets_the_launchers_and_the_entry_point(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert {"maize_ddp/presets/core_promoter.toml", "maize_ddp/presets/gene_level.toml"} <= set(names)
    launchers = {n.partition(".data/data/")[2] for n in names if ".data/data/" in n}
    assert {"share/maize_ddp/launch/local.sh", "share/maize_ddp/launch/gpus.sh", "share/maize_ddp/launch/cv.sh",
            "share/maize_ddp/launch/slurm/train.sbatch"} <= launchers
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "maize-ddp = maize_ddp.cli:run" in zipfile.ZipFile(wheel).read(entry).decode()


def test_the_installed_wheel_runs_the_pipeline_outside_the_repository(wheel, tmp_path):
    """A fresh venv with only the wheel installed (its dependencies seen from this environment, not
    its editable maize_ddp): synthetic data -> store -> the installed launcher's torchrun with 2
    processes, a preset found by name, from a folder that is not the repository."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # a plain path entry: the .pth files there (the editable install's finder) are not run
    Path(site, "dependencies.pth").write_text("\n".join(p for p in sys.path if p.endswith("site-packages")) + "\n")
    res = subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}", "NPROC_PER_NODE": "2",
           "OMP_NUM_THREADS": "1", "PYTHONPATH": ""}

    def run(*cmd):
        res = subprocess.run([str(c) for c in cmd], cwd=work, env=env, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, f"{cmd}: {res.stderr[-3000:]}"
        return res.stdout

    where = run(py, "-c", "import maize_ddp, convert; print(maize_ddp.__file__); print(convert.__file__)")
    assert all(line.startswith(str(venv)) for line in where.split()), where  # the wheel's, not the repository's
    run(venv / "bin" / "maize-ddp", "synth", "npz", "--train", "128", "--val", "32", "--test", "32", "--seq-len", "170",
        "--shard-size", "64", "--dtype", "uint8")
    run(venv / "bin" / "maize-ddp", "npz-to-zarr", "npz", "data.zarr")
    launcher = venv / "share" / "maize_ddp" / "launch" / "local.sh"
    out = run("bash", launcher, "--data", "data.zarr", "--out", "run", "--config", "core_promoter", "--epochs", "1",
              "--device", "cpu")
    assert "[launch] local: 2 process(es)" in out
    report = json.loads((work / "run" / "test_metrics.json").read_text())
    assert report["n"] == 32 and (work / "run" / "config.json").exists()
    assert json.loads((work / "run" / "config.json").read_text())["model"]["pool1ks"] == 4  # the preset's pools


def test_a_command_exits_with_its_code_its_output_flushed_and_its_heap_frozen():
    """maize_ddp.process_exit: the interpreter's last collection skips what was alive at the end."""
    code = ("import atexit, gc, sys; from maize_ddp.process_exit import exit_process; "
            "atexit.register(lambda: print(' frozen' if gc.get_freeze_count() > 1000 else ' not frozen')); "
            "sys.stdout.write('said'); exit_process(3)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert (res.returncode, res.stdout) == (3, "said frozen\n"), res.stderr
    # started with stdout closed (sys.stdout is None): the code still comes through, with no traceback
    closed = subprocess.run(["bash", "-c", '"$0" -c "from maize_ddp.process_exit import exit_process; '
                             'exit_process(0)" >&-', sys.executable], capture_output=True, text=True, timeout=120)
    assert (closed.returncode, closed.stderr) == (0, "")
