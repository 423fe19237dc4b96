"""`banditlab.stats`: the bootstrap interval against hand-computed resampling distributions."""

import numpy as np
import pandas as pd
import pytest

from banditlab.stats import bootstrap_ci, summarise


def test_mean_and_interval_of_a_two_point_sample():
    # x = [0, 0, 3]: a resample's mean is the number of 3s drawn, K ~ Binomial(3, 1/3), so
    # P(K = 0, 1, 2, 3) = 8/27, 12/27, 6/27, 1/27. The 2.5 % quantile is 0 (P(K = 0) = 0.296 > 0.025) and the
    # 97.5 % quantile is 3 (P(K ≤ 2) = 26/27 = 0.963 < 0.975).
    m, lo, hi = bootstrap_ci([0.0, 0.0, 3.0], n_boot=20000)
    assert m == 1.0
    assert (lo, hi) == (0.0, 3.0)
    # At 90 %: the 5 % quantile is still 0, the 95 % quantile is 2 (P(K ≤ 1) = 20/27 = 0.74 < 0.95 ≤ 26/27).
    assert bootstrap_ci([0.0, 0.0, 3.0], level=0.90, n_boot=20000)[1:] == (0.0, 2.0)


def test_interval_matches_the_exact_resampling_distribution():
    # n = 4 values: all 4^4 = 256 resamples are equally likely; their means' quantiles are the exact percentile
    # bootstrap, which 40,000 random resamples approach to within one atom of the distribution.
    x = np.array([0.1, 0.4, 0.5, 1.3])
    idx = np.stack(np.meshgrid(*[np.arange(4)] * 4, indexing="ij"), -1).reshape(-1, 4)
    exact = np.sort(x[idx].mean(1))
    m, lo, hi = bootstrap_ci(x, n_boot=40000)
    assert m == pytest.approx(x.mean())
    for got, q in ((lo, 0.025), (hi, 0.975)):
        k = int(np.searchsorted(exact, got))
        assert abs(k / exact.size - q) < 0.02, (got, q)


def test_degenerate_samples():
    assert bootstrap_ci([2.0, 2.0, 2.0]) == (2.0, 2.0, 2.0)
    m, lo, hi = bootstrap_ci([5.0])
    assert m == 5.0 and np.isnan(lo) and np.isnan(hi)
    assert all(np.isnan(v) for v in bootstrap_ci([]))
    assert bootstrap_ci([1.0, np.nan, 3.0, np.inf]) == bootstrap_ci([1.0, 3.0])  # non-finite values are ignored


def test_interval_is_seeded_and_nested_by_level():
    x = np.random.default_rng(1).normal(size=30)
    assert bootstrap_ci(x, seed=3) == bootstrap_ci(x, seed=3)
    _, lo90, hi90 = bootstrap_ci(x, level=0.90)
    _, lo99, hi99 = bootstrap_ci(x, level=0.99)
    assert lo99 < lo90 < x.mean() < hi90 < hi99


def test_coverage_is_near_nominal():
    # The percentile bootstrap of a mean of n = 25 normal draws covers the true mean ~93-95 % of the time.
    rng = np.random.default_rng(0)
    hits = [lo <= 0.0 <= hi for lo, hi in (bootstrap_ci(rng.normal(size=25), n_boot=1000, seed=s)[1:]
                                           for s in range(400))]
    assert 0.89 <= np.mean(hits) <= 0.98


def test_summarise_is_one_row_per_group():
    df = pd.DataFrame({"method": ["a", "a", "b", "b", "b"], "seed": [0, 1, 0, 1, 2],
                       "score": [0.0, 2.0, 1.0, 1.0, 1.0]})
    out = summarise(df, ["method"], "score")
    assert list(out["method"]) == ["a", "b"]
    assert list(out["n"]) == [2, 3]
    assert list(out["mean"]) == [1.0, 1.0]
    assert (out.loc[1, "ci_low"], out.loc[1, "ci_high"]) == (1.0, 1.0)
    assert out.loc[0, "ci_low"] == 0.0 and out.loc[0, "ci_high"] == 2.0
