"""benchmarks/doc_figures.py: every figure the docs quote is the one its benchmark file holds."""
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "doc_figures.py"


def figures(root: Path, *flags):
    return subprocess.run([sys.executable, str(SCRIPT), "--root", str(root), *flags], capture_output=True, text=True,
                          timeout=60)


def copy_docs(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    shutil.copytree(ROOT / "docs", root / "docs", ignore=shutil.ignore_patterns("*.png"))
    shutil.copytree(ROOT / "benchmarks" / "results", root / "benchmarks" / "results")
    shutil.copy(ROOT / "README.md", root / "README.md")
    return root


def test_the_docs_quote_what_the_benchmark_files_hold():
    res = figures(ROOT, "--check")
    assert res.returncode == 0, res.stderr


def test_a_new_measurement_is_found_and_copied_into_every_doc(tmp_path):
    root = copy_docs(tmp_path)
    demo = root / "benchmarks" / "results" / "demo.md"
    text = demo.read_text()
    old = text.split("test Pearson **")[1].split("**")[0]
    demo.write_text(text.replace(f"test Pearson **{old}**", "test Pearson **0.777**"))
    res = figures(root, "--check")
    assert res.returncode == 1
    assert f"README.md: demo_pearson reads '{old}', its results file says '0.777'" in res.stderr
    assert f"docs/interpret.md: demo_pearson reads '{old}', its results file says '0.777'" in res.stderr
    assert (root / "README.md").read_text() == (ROOT / "README.md").read_text()  # --check changes nothing

    assert figures(root).returncode == 0
    assert "<!-- fig:demo_pearson -->0.777<!-- /fig -->" in (root / "README.md").read_text()
    assert "<!-- fig:demo_pearson -->0.777<!-- /fig -->" in (root / "docs" / "interpret.md").read_text()
    assert figures(root, "--check").returncode == 0


def test_an_unknown_or_unmeasured_figure_is_an_error(tmp_path):
    root = copy_docs(tmp_path)
    readme = root / "README.md"
    readme.write_text(readme.read_text() + "\n<!-- fig:no_such_figure -->1<!-- /fig -->\n")
    res = figures(root)
    assert res.returncode == 1 and "README.md: unknown figure 'no_such_figure'" in res.stderr

    for broken in ("<!-- fig:demo_r2 -->0.65\n<!-- /fig -->", "<!-- fig:demo-r2 -->0.65<!-- /fig -->",
                   "<!-- fig:demo_r2 -->0.65 and more text"):
        readme.write_text((ROOT / "README.md").read_text() + "\n" + broken + "\n")
        res = figures(root)
        assert res.returncode == 1 and "README.md: a malformed figure marker" in res.stderr, broken
        assert readme.read_text() == (ROOT / "README.md").read_text() + "\n" + broken + "\n"  # left as it was

    (root / "benchmarks" / "results" / "demo.md").unlink()
    res = figures(root, "--check")
    assert res.returncode == 1 and "demo.md: no figure 'demo_pearson'" in res.stderr
