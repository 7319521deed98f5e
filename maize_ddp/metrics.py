"""Exact, mergeable regression metrics.

Each rank folds its predictions into `RegressionMoments` (per target: n, means, centred second
moments and co-moment, sum of squared errors, all float64, merged with Chan et al.'s pairwise
formulas so no precision is lost to large means). Ranks then exchange their moments and merge
them in rank order, so every rank holds the same, exact statistics of the whole split.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FIELDS = ("n", "mean_y", "mean_p", "m2_y", "m2_p", "c_yp", "sse")


@dataclass
class RegressionMoments:
    n: np.ndarray
    mean_y: np.ndarray
    mean_p: np.ndarray
    m2_y: np.ndarray
    m2_p: np.ndarray
    c_yp: np.ndarray
    sse: np.ndarray

    @classmethod
    def zeros(cls, num_targets: int) -> "RegressionMoments":
        return cls(*(np.zeros(num_targets) for _ in FIELDS))

    @classmethod
    def of_batch(cls, y, p) -> "RegressionMoments":
        y = np.asarray(y, dtype=np.float64)
        p = np.asarray(p, dtype=np.float64)
        y, p = (y[:, None], p[:, None]) if y.ndim == 1 else (y, p)
        n = np.full(y.shape[1], float(len(y)))
        if len(y) == 0:
            return cls.zeros(y.shape[1])
        my, mp = y.mean(0), p.mean(0)
        dy, dp = y - my, p - mp
        return cls(n, my, mp, (dy * dy).sum(0), (dp * dp).sum(0), (dy * dp).sum(0), ((y - p) ** 2).sum(0))

    def merge(self, other: "RegressionMoments") -> "RegressionMoments":
        n = self.n + other.n
        safe_n = np.where(n > 0, n, 1.0)
        wa, wb = self.n / safe_n, other.n / safe_n
        dy, dp = other.mean_y - self.mean_y, other.mean_p - self.mean_p
        cross = self.n * other.n / safe_n
        return RegressionMoments(
            n=n,
            mean_y=self.mean_y * wa + other.mean_y * wb,
            mean_p=self.mean_p * wa + other.mean_p * wb,
            m2_y=self.m2_y + other.m2_y + dy * dy * cross,
            m2_p=self.m2_p + other.m2_p + dp * dp * cross,
            c_yp=self.c_yp + other.c_yp + dy * dp * cross,
            sse=self.sse + other.sse,
        )

    def add(self, y, p) -> "RegressionMoments":
        return self.merge(RegressionMoments.of_batch(y, p))

    def to_array(self) -> np.ndarray:
        return np.stack([getattr(self, f) for f in FIELDS])

    @classmethod
    def from_array(cls, a) -> "RegressionMoments":
        return cls(*(np.asarray(row, dtype=np.float64) for row in a))

    # --- metrics ----------------------------------------------------------------------------
    def pearson(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.c_yp / np.sqrt(self.m2_y * self.m2_p)

    def r2(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return 1.0 - self.sse / self.m2_y

    def mse(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.sse / self.n

    def summary(self) -> dict:
        """Mean over targets plus the per-target lists."""
        r, r2, mse = self.pearson(), self.r2(), self.mse()
        return {"n": int(self.n[0]) if len(self.n) else 0,
                "pearson": float(np.mean(r)), "r2": float(np.mean(r2)), "mse": float(np.mean(mse)),
                "per_target": {"pearson": r.tolist(), "r2": r2.tolist(), "mse": mse.tolist()}}


def merge_all(parts: list[RegressionMoments]) -> RegressionMoments:
    total = parts[0]
    for part in parts[1:]:
        total = total.merge(part)
    return total


# --- binary classification ---------------------------------------------------------------------
# auROC depends on every score's rank, so it has no mergeable moments: the ranks' (label, score)
# arrays are gathered and the metrics computed once, in float64, on the concatenation.


def auroc(y, score) -> float:
    """Area under the ROC curve, ties counted half: the Mann-Whitney U of the positives' scores
    over the negatives', divided by n_pos * n_neg. NaN when a class is absent."""
    from scipy.stats import rankdata

    y = np.asarray(y, dtype=np.float64).ravel()
    score = np.asarray(score, dtype=np.float64).ravel()
    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)  # average ranks for ties
    u = ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def binary_summary(y, prob) -> dict:
    """Accuracy (probability >= 0.5 is class 1) and auROC per target and their means, over
    labels y in {0, 1} and probabilities, both [N, T]."""
    y = np.asarray(y, dtype=np.float64)
    prob = np.asarray(prob, dtype=np.float64)
    y, prob = (y[:, None], prob[:, None]) if y.ndim == 1 else (y, prob)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = ((prob >= 0.5) == (y == 1)).mean(0) if len(y) else np.full(y.shape[1], np.nan)
    aucs = np.array([auroc(y[:, t], prob[:, t]) for t in range(y.shape[1])])
    return {"n": int(len(y)), "accuracy": float(np.mean(accuracy)), "auroc": float(np.mean(aucs)),
            "positives": int((y[:, 0] == 1).sum()) if len(y) else 0,
            "per_target": {"accuracy": accuracy.tolist(), "auroc": aucs.tolist()}}


def bce_with_logits(y, logits) -> float:
    """Mean binary cross-entropy of logits, float64, in the overflow-safe form torch uses."""
    y = np.asarray(y, dtype=np.float64)
    z = np.asarray(logits, dtype=np.float64)
    if z.size == 0:
        return float("nan")
    return float(np.mean(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))))


def not_binary(y) -> int | None:
    """The first row holding a label other than 0 or 1, or None."""
    bad = np.flatnonzero(~np.isin(np.asarray(y).reshape(len(y), -1), (0.0, 1.0)).all(1))
    return int(bad[0]) if len(bad) else None
