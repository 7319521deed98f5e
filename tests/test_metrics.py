import numpy as np
import pytest
from scipy import stats

from maize_ddp.metrics import RegressionMoments, merge_all


def reference(y, p):
    """float64, two-pass, straight from the definitions."""
    r = [stats.pearsonr(y[:, t], p[:, t])[0] for t in range(y.shape[1])]
    sse = ((y - p) ** 2).sum(0)
    sst = ((y - y.mean(0)) ** 2).sum(0)
    return np.array(r), 1 - sse / sst, sse / len(y)


@pytest.mark.parametrize("offset", [0.0, 1e4])
def test_merged_batches_equal_scipy(offset):
    rng = np.random.default_rng(0)
    n, t = 1001, 3
    y = rng.normal(size=(n, t)) + offset
    p = (0.7 * y + rng.normal(size=(n, t))).astype(np.float32)
    # uneven pieces, as ranks and batches produce them, including an empty one
    cuts = [0, 7, 7, 300, 301, 650, n]
    parts = [RegressionMoments.of_batch(y[a:b], p[a:b]) for a, b in zip(cuts, cuts[1:])]
    merged = merge_all(parts)
    r, r2, mse = reference(y, p.astype(np.float64))
    np.testing.assert_allclose(merged.pearson(), r, rtol=1e-9)
    np.testing.assert_allclose(merged.r2(), r2, rtol=1e-9)
    np.testing.assert_allclose(merged.mse(), mse, rtol=1e-9)
    assert merged.summary()["n"] == n


def test_serialises_through_arrays():
    rng = np.random.default_rng(1)
    y, p = rng.normal(size=(50, 2)), rng.normal(size=(50, 2))
    m = RegressionMoments.of_batch(y, p)
    back = RegressionMoments.from_array(m.to_array())
    np.testing.assert_array_equal(back.pearson(), m.pearson())


def test_perfect_and_constant_predictions():
    y = np.arange(10.0).reshape(-1, 1)
    m = RegressionMoments.of_batch(y, y)
    assert m.pearson()[0] == pytest.approx(1.0) and m.r2()[0] == pytest.approx(1.0) and m.mse()[0] == 0
    const = RegressionMoments.of_batch(y, np.ones_like(y))
    assert np.isnan(const.pearson()[0])
