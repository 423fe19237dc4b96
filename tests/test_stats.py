"""`banditlab.stats`: the Student-t interval and the per-group summary against hand-computed values."""

import numpy as np
import pandas as pd
import pytest

from banditlab.stats import mean_ci, summarise

T_2 = 4.302652729749464    # t quantile at 0.975 with 2 degrees of freedom
T_1 = 12.706204736174698   # ... with 1


def test_mean_and_interval_of_three_values():
    # x = [0, 0, 3]: mean 1, s = √3, half-width t_{2, 0.975} · s/√3 = t_{2, 0.975}.
    m, lo, hi = mean_ci([0.0, 0.0, 3.0])
    assert m == 1.0
    assert (lo, hi) == pytest.approx((1 - T_2, 1 + T_2), rel=1e-12)
    # At 90 %: t_{2, 0.95} = 2.919986.
    assert mean_ci([0.0, 0.0, 3.0], level=0.90)[1:] == pytest.approx((1 - 2.919985580, 1 + 2.919985580))


def test_degenerate_samples():
    assert mean_ci([2.0, 2.0, 2.0]) == (2.0, 2.0, 2.0)
    m, lo, hi = mean_ci([5.0])
    assert m == 5.0 and np.isnan(lo) and np.isnan(hi)
    assert all(np.isnan(v) for v in mean_ci([]))
    assert mean_ci([1.0, np.nan, 3.0, np.inf]) == mean_ci([1.0, 3.0])  # non-finite values are ignored


def test_interval_is_nested_by_level():
    x = np.random.default_rng(1).normal(size=30)
    _, lo90, hi90 = mean_ci(x, level=0.90)
    _, lo99, hi99 = mean_ci(x, level=0.99)
    assert lo99 < lo90 < x.mean() < hi90 < hi99


def test_summarise_is_one_row_per_group():
    df = pd.DataFrame({"method": ["a", "a", "b", "b", "b"], "seed": [0, 1, 0, 1, 2],
                       "score": [0.0, 2.0, 1.0, 1.0, 1.0]})
    out = summarise(df, ["method"], "score")
    assert list(out["method"]) == ["a", "b"]
    assert list(out["n"]) == [2, 3]
    assert list(out["mean"]) == [1.0, 1.0]
    assert (out.loc[1, "ci_low"], out.loc[1, "ci_high"]) == (1.0, 1.0)
    # a = [0, 2]: s = √2, half-width t_{1, 0.975} · √2/√2
    assert (out.loc[0, "ci_low"], out.loc[0, "ci_high"]) == pytest.approx((1 - T_1, 1 + T_1), rel=1e-12)
