"""The report of benchmarks/real_motifs.sh, from its work folder: patterns, where their seqlets sit,
the designs' predicted gain per round and which motifs they gained.

    python benchmarks/real_motifs_report.py WORK RESULTS.md [--nproc 2]
"""
import argparse
import csv
import json
import os
import platform
import re
import statistics
import time
from collections import Counter

TSS = 165  # the Jores et al. sequences run -165..+5
TATA = re.compile(r"(?=TATA[AT]A[AT])")  # the TATA box consensus TATAWAW, overlapping hits counted
COMPLEMENT = str.maketrans("ACGT", "TGCA")


def table(path):
    with open(path) as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def canonical(kmer: str) -> str:
    """A k-mer and its reverse complement are one word (a motif works on either strand)."""
    return min(kmer, kmer.translate(COMPLEMENT)[::-1])


def kmers(seq: str, k: int = 6) -> Counter:
    return Counter(canonical(seq[i:i + k]) for i in range(len(seq) - k + 1) if "N" not in seq[i:i + k])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("work")
    p.add_argument("results")
    p.add_argument("--nproc", default="2")
    a = p.parse_args()
    work = a.work
    seconds = {name: int(open(f"{work}/{name}.seconds").read()) for name in ("train", "motifs", "design")}
    test = json.load(open(f"{work}/run/test_metrics.json"))
    motifs, seqlets = table(f"{work}/motifs/motifs.tsv"), table(f"{work}/motifs/seqlets.tsv")
    settings = json.load(open(f"{work}/design/design.json"))
    lines = [
        "# Motifs and designs from a model of plant core promoters (Jores et al. 2021, tobacco leaf)",
        "",
        f"Written by `benchmarks/real_motifs.sh` on {time.strftime('%Y-%m-%d %H:%M')} ({platform.machine()}, "
        f"{os.cpu_count()} CPUs, OMP_NUM_THREADS=1). Model: BasenjiModel, `--config core_promoter`, torchrun "
        f"{a.nproc} processes, split seed 0 (test r {test['pearson']:.3f}; training {seconds['train']} s). "
        "Positions are bp from the TSS (the sequences run -165..+5; `table_to_npz --tss-position 165`).",
        "",
        f"## Patterns (TF-MoDISco on ISM of the {test['n']} test promoters, {seconds['motifs']} s with the ISM; "
        "Tomtom against JASPAR CORE plants)",
        "",
        "| pattern | sign | seqlets | consensus | seqlet centres, median (IQR) | best JASPAR plant match (q) |",
        "|---|---|---:|---|---|---|",
    ]
    for m in motifs:
        centres = sorted((int(s["start"]) + int(s["end"])) / 2 - TSS for s in seqlets if s["pattern"] == m["pattern"])
        q = statistics.quantiles(centres, n=4) if len(centres) > 1 else centres * 3
        match = (f"{m['match1_name']} ({m['match1_family'] or '-'}; q {float(m['match1_q']):.2g})"
                 if m["match1_id"] else "none")
        lines.append(f"| {m['pattern']} | {m['sign']} | {m['seqlets']} | `{m['consensus']}` | "
                     f"{statistics.median(centres):+.0f} ({q[0]:+.0f} to {q[2]:+.0f}) | {match} |")

    designs = table(f"{work}/design/designs.tsv")
    by_round = {}
    for d in designs:
        if d["rank"] == "1":
            by_round.setdefault(int(d["round"]), []).append(d)
    start = {d["id"]: d for d in by_round[0]}
    final = by_round[max(by_round)]
    lines += ["", f"## Designs ({len(start)} test promoters the model predicts weakest, {settings['rounds']} rounds of "
              "the best single substitution, GAATTC/GGTACC forbidden, -5..+5 fixed; "
              f"{seconds['design']} s)", "",
              "| round | mean predicted log2 enrichment | mean gain over the start | mean TATA boxes (TATAWAW, either strand) |",
              "|---:|---:|---:|---:|"]

    def tata(seq):
        return len(TATA.findall(seq)) + len(TATA.findall(seq.translate(COMPLEMENT)[::-1]))

    for r in sorted(by_round):
        rows = by_round[r]
        gain = [float(d["score"]) - float(start[d["id"]]["score"]) for d in rows]
        lines.append(f"| {r} | {statistics.mean(float(d['score']) for d in rows):.2f} | "
                     f"{statistics.mean(gain):+.2f} | {statistics.mean(tata(d['sequence']) for d in rows):.2f} |")
    gained = Counter()
    for d in final:
        gained.update(kmers(d["sequence"]) - kmers(start[d["id"]]["sequence"]))
    where = Counter()
    for d in final:
        for mutation in filter(None, d["mutations"].split(";")):
            where[(int(re.sub(r"\D", "", mutation)) - 1 - TSS) // 10 * 10] += 1
    lines += ["", "6-mers (with their reverse complement) the final designs gained most often: "
              + ", ".join(f"`{k}` {n}" for k, n in gained.most_common(10)) + ".",
              "", "Where the substitutions fell (10-bp bins, bp from the TSS: substitutions): "
              + ", ".join(f"{b:+d}: {n}" for b, n in sorted(where.items(), key=lambda kv: -kv[1])[:8]) + "."]
    text = "\n".join(lines) + "\n"
    print(text)
    os.makedirs(os.path.dirname(a.results) or ".", exist_ok=True)
    with open(a.results + ".tmp", "w") as fh:
        fh.write(text)
    os.replace(a.results + ".tmp", a.results)
    print(f"-> {a.results}")


if __name__ == "__main__":
    main()
