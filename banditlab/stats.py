"""Interval estimates over seeds (rliable's advice: report the mean with a 95 % bootstrap CI, never one run)."""

from __future__ import annotations

import numpy as np


def bootstrap_ci(x, level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of x and the percentile-bootstrap confidence interval of the mean. NaNs are ignored;
    with fewer than two values the interval is (nan, nan)."""
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan"), float("nan"), float("nan")
    if x.size < 2 or np.ptp(x) == 0:
        m = float(x.mean())
        return (m, float("nan"), float("nan")) if x.size < 2 else (m, m, m)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(x.mean()), float(lo), float(hi)


def summarise(df, by: list[str], value: str):
    """Rows of (by..., mean, ci_low, ci_high, n) for one value column of a tidy frame."""
    import pandas as pd

    rows = []
    for key, g in df.groupby(by, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        m, lo, hi = bootstrap_ci(g[value].to_numpy())
        rows.append({**dict(zip(by, key)), "mean": m, "ci_low": lo, "ci_high": hi, "n": len(g)})
    return pd.DataFrame(rows)
