"""The arrows of the project layout: commands are thin shells over the library, so no command
module imports another, and the library never imports the converters."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "maize_ddp"
COMMANDS = {"train", "evaluate", "predict", "interpret", "motifs", "design", "variants", "cv_report"}


def imported_modules(path: Path) -> set[str]:
    """Every maize_ddp / convert module a file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            if node.module == "maize_ddp":
                found |= {f"maize_ddp.{alias.name}" for alias in node.names}
    return {m for m in found if m.split(".")[0] in ("maize_ddp", "convert")}


def test_no_command_imports_another_and_the_library_never_imports_convert():
    for path in PACKAGE.rglob("*.py"):
        modules = imported_modules(path)
        assert not [m for m in modules if m.split(".")[0] == "convert"], path
        if path.stem in COMMANDS:
            others = {m for m in modules if m.split(".")[1:2] and m.split(".")[1] in COMMANDS - {path.stem}}
            assert not others, f"{path.name} imports the command(s) {sorted(others)}"


def test_every_command_ends_through_exit_process():
    """A command's `__main__` ends through maize_ddp.process_exit (its heap frozen, not collected)."""
    commands = [p for root in (PACKAGE, PACKAGE.parent / "convert") for p in root.rglob("*.py")
                if '__name__ == "__main__"' in p.read_text()]
    assert len(commands) >= 15  # the commands of maize_ddp/cli.py
    for path in commands:
        main_block = path.read_text().split('if __name__ == "__main__":')[1]
        assert "exit_process(" in main_block or "run()" in main_block, path


def test_the_checker_sees_imports_inside_functions(tmp_path):
    f = tmp_path / "x.py"
    f.write_text("def f():\n    from maize_ddp.evaluate import main\n    from maize_ddp import predict\n")
    assert imported_modules(f) == {"maize_ddp.evaluate", "maize_ddp", "maize_ddp.predict"}


def test_a_rank_starts_without_the_report_s_libraries_and_figures_leave_the_backend_alone(tmp_path):
    """Every rank and every spawned data-loader worker imports the trainer: scipy.stats and matplotlib
    (~1.5 s of a 3 s start) wait until a report or a figure needs them. Drawing a figure then uses
    matplotlib's object API: a notebook's backend stays its own and no figure is left open."""
    import subprocess
    import sys

    probe = f"""
import sys
import maize_ddp, maize_ddp.train, maize_ddp.run
heavy = [m for m in ("scipy.stats", "matplotlib") if m in sys.modules]
assert not heavy, heavy
import matplotlib
matplotlib.use("svg")
import matplotlib.pyplot as plt
import numpy as np
from maize_ddp import plots
plots.scatter({str(tmp_path / "s.png")!r}, np.arange(5.0), np.arange(5.0) ** 2, 0.9, 0.5)
assert matplotlib.get_backend() == "svg" and not plt.get_fignums(), (matplotlib.get_backend(), plt.get_fignums())
"""
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert (tmp_path / "s.png").read_bytes().startswith(b"\x89PNG")
