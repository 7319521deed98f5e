"""The published CNN's predictions (Jores et al. 2021) on our test rows, as a reference.

    python benchmarks/promoter_reference.py CNN_test_leaf.tsv CNN_test_leaf_pred.tsv RUN/test_predictions.tsv
        [--json OUT.json]

The `*_pred.tsv` files (columns sample.name, enrichment, prediction) hold the paper's predictions
for the same sequences as the data file, but not in its order and without the gene id. A row is
matched by its key, (species, enrichment rounded to 8 decimals): the species is the data file's
`sp`, the pred file's `sample.name`. Keys that several rows of the data file share are ambiguous
(their predictions cannot be told apart) and are left out; the report counts them. Our model
is scored on exactly the matched rows too, so the two Pearson r compare like with like.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import Counter

import numpy as np
from scipy import stats


def key(species: str, enrichment: str) -> tuple[str, str]:
    return species, f"{float(enrichment):.8f}"


def read_tsv(path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def compare(data_path, pred_path, ours_path, id_col: str = "gene") -> dict:
    data = read_tsv(data_path)
    key_of = {row[id_col]: key(row["sp"], row["enrichment"]) for row in data}
    shared = Counter(key_of.values())
    published: dict[tuple, list[float]] = {}
    for row in read_tsv(pred_path):
        published.setdefault(key(row["sample.name"], row["enrichment"]), []).append(float(row["prediction"]))
    ours = read_tsv(ours_path)  # id row true predicted
    matched, ambiguous, missing = [], 0, 0
    for row in ours:
        k = key_of[row["id"]]
        if shared[k] > 1:
            ambiguous += 1
        elif len(published.get(k, [])) != 1:
            missing += 1
        else:
            matched.append((float(row["true"]), float(row["predicted"]), published[k][0]))
    true, pred, ref = np.array(matched).T
    return {"test_rows": len(ours), "matched": len(matched), "ambiguous": ambiguous, "unmatched": missing,
            "ambiguous_keys_in_file": sum(1 for n in shared.values() if n > 1),
            "published_pearson": float(stats.pearsonr(true, ref)[0]),
            "ours_pearson_same_rows": float(stats.pearsonr(true, pred)[0])}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/promoter_reference.py", description=__doc__.split("\n\n")[0])
    p.add_argument("data", help="CNN_test_*.tsv (set, sp, gene, sequence, enrichment)")
    p.add_argument("pred", help="CNN_test_*_pred.tsv (sample.name, enrichment, prediction)")
    p.add_argument("ours", help="a run's test_predictions.tsv (id, row, true, predicted)")
    p.add_argument("--json", help="write the result here")
    a = p.parse_args(argv)
    result = compare(a.data, a.pred, a.ours)
    print(json.dumps(result, indent=2))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(result, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
