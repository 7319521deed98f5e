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


def test_the_checker_sees_imports_inside_functions(tmp_path):
    f = tmp_path / "x.py"
    f.write_text("def f():\n    from maize_ddp.evaluate import main\n    from maize_ddp import predict\n")
    assert imported_modules(f) == {"maize_ddp.evaluate", "maize_ddp", "maize_ddp.predict"}
