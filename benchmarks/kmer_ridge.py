"""k-mer ridge regression baseline on a maize_ddp store's train/val/test split.

    python benchmarks/kmer_ridge.py DATA.zarr [--k 4 6] [--regions whole split] [--json OUT.json]

Features: the k-mer counts of each window (k-mers containing N are skipped), as frequencies
(counts / number of valid k-mers), then standardised with the train split's mean and sd.
`--regions split` counts the TSS region (the first half of the window, up to the N spacer) and
the TTS region (the second half) separately and concatenates the two count vectors.

Ridge regression, centred, closed form: w = (X'X + alpha I)^-1 X'y. X'X is diagonalised once
(eigh) so every alpha of the grid is a cheap solve; the alpha with the best val Pearson is kept
and the test split is scored once with it. numpy and scipy only.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
from scipy import linalg, stats

ALPHAS = np.logspace(-1, 6, 29)


def load_split(path: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    import zarr

    group = zarr.open_group(path, mode="r")[split]
    return np.asarray(group["seq"][:]), np.asarray(group["y"][:], dtype=np.float64)


def kmer_frequencies(codes: np.ndarray, k: int) -> np.ndarray:
    """uint8 codes [N, L] (A, C, G, T, N = 0..4) -> float64 [N, 4**k] k-mer frequencies."""
    n, length = codes.shape
    m = length - k + 1
    index = np.zeros((n, m), dtype=np.int64)
    valid = np.ones((n, m), dtype=bool)
    for j in range(k):
        part = codes[:, j:j + m]
        index = index * 4 + np.minimum(part, 3)
        valid &= part < 4
    rows = np.broadcast_to(np.arange(n)[:, None], (n, m))
    counts = np.bincount((rows[valid] * 4 ** k + index[valid]), minlength=n * 4 ** k)
    counts = counts.reshape(n, 4 ** k).astype(np.float64)
    return counts / np.maximum(counts.sum(1, keepdims=True), 1.0)


def features(codes: np.ndarray, k: int, regions: str) -> np.ndarray:
    if regions == "whole":
        return kmer_frequencies(codes, k)
    half = codes.shape[1] // 2  # 3020 bp: TSS region 0..1499, 20 N, TTS region 1520..3019
    return np.hstack([kmer_frequencies(codes[:, :half], k), kmer_frequencies(codes[:, half:], k)])


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def r2(y: np.ndarray, p: np.ndarray) -> float:
    return float(1.0 - np.sum((y - p) ** 2) / np.sum((y - y.mean()) ** 2))


def fit_ridge(Z: dict, y: dict, score=None) -> tuple[float, list[float], dict]:
    """Closed-form ridge on standardised features Z[split], alpha chosen by score(y_val, pred_val)
    (default Pearson) over ALPHAS: (alpha, the val scores, predictions for every split)."""
    score = score or pearson
    y_mean = y["train"].mean()
    evals, evecs = linalg.eigh(Z["train"].T @ Z["train"])
    proj = evecs.T @ (Z["train"].T @ (y["train"] - y_mean))
    val = [score(y["val"], Z["val"] @ (evecs @ (proj / (evals + a))) + y_mean) for a in ALPHAS]
    alpha = float(ALPHAS[int(np.nanargmax(val))])
    w = evecs @ (proj / (evals + alpha))
    return alpha, val, {s: Z[s] @ w + y_mean for s in Z}


def standardised(data: dict, k: int, regions: str) -> tuple[dict, dict]:
    """k-mer frequency features scaled by the train split's mean and sd, and the first target."""
    X = {s: features(data[s][0], k, regions) for s in data}
    mu, sd = X["train"].mean(0), X["train"].std(0)
    sd[sd == 0] = 1.0
    return {s: (X[s] - mu) / sd for s in X}, {s: data[s][1][:, 0] for s in data}


def ridge(data: dict, k: int, regions: str) -> dict:
    t0 = time.perf_counter()
    Z, y = standardised(data, k, regions)
    alpha, val_r, pred = fit_ridge(Z, y)
    return {"model": f"{k}-mer ridge ({'promoter+terminator' if regions == 'split' else 'whole window'})",
            "k": k, "regions": regions, "features": int(Z["train"].shape[1]), "alpha": alpha,
            "val_pearson": float(np.nanmax(val_r)), "val_r2": r2(y["val"], pred["val"]),
            "test_pearson": pearson(y["test"], pred["test"]),
            "test_spearman": float(stats.spearmanr(y["test"], pred["test"])[0]),
            "test_r2": r2(y["test"], pred["test"]), "n_test": int(len(y["test"])),
            "seconds": time.perf_counter() - t0}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/kmer_ridge.py", description=__doc__.split("\n\n")[0])
    p.add_argument("data", help="a maize_ddp Zarr store with train, val and test splits")
    p.add_argument("--k", type=int, nargs="+", default=[4, 6])
    p.add_argument("--regions", nargs="+", choices=["whole", "split"], default=["whole"])
    p.add_argument("--json", help="write the results (a list of rows) to this file")
    args = p.parse_args(argv)
    try:
        data = {s: load_split(args.data, s) for s in ("train", "val", "test")}
    except Exception as e:  # noqa: BLE001 - one clear line for any unreadable store
        print(f"error: {args.data}: cannot read train/val/test ({e})", file=sys.stderr)
        return 1
    results = []
    for regions in args.regions:
        for k in args.k:
            res = ridge(data, k, regions)
            results.append(res)
            print(f"{res['model']}: {res['features']} features, alpha {res['alpha']:.3g}, "
                  f"val r {res['val_pearson']:.4f}, test r {res['test_pearson']:.4f} "
                  f"spearman {res['test_spearman']:.4f} R2 {res['test_r2']:.4f} ({res['seconds']:.1f} s)",
                  flush=True)
    if args.json:
        with open(args.json + ".tmp", "w") as fh:
            json.dump(results, fh, indent=2)
        import os

        os.replace(args.json + ".tmp", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
