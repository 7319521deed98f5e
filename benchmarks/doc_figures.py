"""The figures the docs quote, copied from the benchmark files that measured them.

    python benchmarks/doc_figures.py           # rewrite every quoted figure in README.md and docs/
    python benchmarks/doc_figures.py --check   # list the figures that differ; exit 1 if any (a test runs it)

In README.md and docs/*.md a quoted figure reads `<!-- fig:NAME -->VALUE<!-- /fig -->` (the
markers do not render). FIGURES says which results file holds NAME and the pattern whose first
group is its value. After rerunning a benchmark (it rewrites its file under benchmarks/results/),
run this script: no figure in the docs is typed by hand, so none can drift from its measurement.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

GENE_ROW = r"BasenjiModel, `presets/gene_level.toml`, torchrun 2 CPU processes, best epoch "

# name: (results file, pattern; group 1 is the value)
FIGURES = {
    # launch/demo.sh, measured by benchmarks/bench_demo.sh
    "demo_pearson": ("demo.md", r"test Pearson \*\*([\d.]+)\*\*"),
    "demo_ceiling": ("demo.md", r"noise ceiling ([\d.]+)"),
    "demo_of_ceiling": ("demo.md", r"\(([\d.]+) of it\)"),
    "demo_r2": ("demo.md", r"R² ([\d.]+)"),
    "demo_wall": ("demo.md", r"whole demo: ([\d.]+ min)"),
    # benchmarks/real_arabidopsis.sh with presets/gene_level.toml
    "gene_level_best_epoch": ("real_arabidopsis.md", GENE_ROW + r"(\d+/\d+)"),
    "gene_level_test_r": ("real_arabidopsis.md", GENE_ROW + r"[^|]*\| [\d.]+ \| \*\*([\d.]+)\*\*"),
    "gene_level_test_r2": ("real_arabidopsis.md", GENE_ROW + r"[^|]*\|(?: [^|]*\|){3} \*\*([\d.]+)\*\*"),
    "gene_level_training": ("real_arabidopsis.md", GENE_ROW + r"[^\n]*\| ([\d.]+ min) \(wall"),
    "gene_level_wall": ("real_arabidopsis.md", GENE_ROW + r"[^\n]*\(wall ([\d.]+ min)\)"),
    # benchmarks/bench_ism.py: saturation ISM against tangermeme
    "ism_promoter_vs_tangermeme": ("ism.md", r"core_promoter, 170 bp: [^\n]*\*\*([\d.]+x)\*\*"),
    "ism_promoter_seconds": ("ism.md", r"core_promoter, 170 bp: maize_ddp's fast ISM takes ([\d.e-]+ s)"),
    "ism_gene_vs_tangermeme": ("ism.md", r"default, 3,020 bp: [^\n]*\*\*([\d.]+x)\*\*"),
    "ism_gene_seconds": ("ism.md", r"default, 3,020 bp: maize_ddp's fast ISM takes ([\d.e-]+ s)"),
    "ism_gene_vs_full": ("ism.md", r"default, 3,020 bp: [^\n]* and ([\d.]+x) that of full passes"),
    # benchmarks/bench_interpret.py
    "saliency_300": ("interpret.md", r"\| 300 \| saliency \| - \| 32 \| [\d.]+ \| ([\d,]+) \|"),
    "saliency_3020": ("interpret.md", r"\| 3020 \| saliency \| - \| 32 \| [\d.]+ \| ([\d,]+) \|"),
}

# a value is one line and holds no other marker; anything else that looks like a marker is an error
MARKER = re.compile(r"<!-- fig:([a-z0-9_]+) -->((?:(?!<!--)[^\n])*)<!-- /fig -->")


def documents(root: Path) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def measured(root: Path) -> dict[str, str]:
    """Each figure's value as its results file holds it; an error names a figure not found."""
    values = {}
    for name, (file, pattern) in FIGURES.items():
        path = root / "benchmarks" / "results" / file
        match = re.search(pattern, path.read_text()) if path.exists() else None
        if match is None:
            raise SystemExit(f"error: {path}: no figure {name!r} (pattern {pattern!r})")
        values[name] = match.group(1)
    return values


def rewrite(root: Path, check: bool) -> list[str]:
    """Bring each document's figures up to date (or, with check, only list what differs)."""
    values, problems, quoted_anywhere = measured(root), [], set()
    for doc in documents(root):
        text = doc.read_text()
        found = len(MARKER.findall(text))
        if not found == text.count("<!-- fig:") == text.count("<!-- /fig -->"):
            problems.append(f"{doc.relative_to(root)}: a malformed figure marker (names are a-z, 0-9 and _; a "
                            "value is one line; each <!-- fig:NAME --> closes with <!-- /fig -->)")

        def fill(m: re.Match) -> str:
            name, quoted = m.group(1), m.group(2)
            quoted_anywhere.add(name)
            if name not in values:
                problems.append(f"{doc.relative_to(root)}: unknown figure {name!r}")
                return m.group(0)
            if quoted != values[name]:
                problems.append(f"{doc.relative_to(root)}: {name} reads {quoted!r}, its results file says "
                                f"{values[name]!r}")
            return f"<!-- fig:{name} -->{values[name]}<!-- /fig -->"

        new = MARKER.sub(fill, text)
        if new != text and not check and found == text.count("<!-- fig:"):  # never half-rewrite a broken doc
            doc.write_text(new)
    problems += [f"{name}: measured but quoted nowhere (remove it from FIGURES)"
                 for name in sorted(set(values) - quoted_anywhere)]
    return problems


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if a quoted figure differs")
    p.add_argument("--root", type=Path, default=ROOT, help="the project folder (default: this checkout)")
    a = p.parse_args(argv)
    problems = rewrite(a.root, a.check)
    broken = [line for line in problems if "unknown figure" in line or "quoted nowhere" in line or "malformed" in line]
    for line in problems:
        print(line if a.check or line in broken else f"updated: {line}", file=sys.stderr if a.check or line in broken
              else sys.stdout)
    if a.check or broken:
        return 1 if problems else 0
    print(f"{len(problems)} figure(s) rewritten" if problems else "every figure was up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
