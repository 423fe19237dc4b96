"""Interval estimates over seeds, each chosen for its measured coverage at the seed counts sweeps use (4–32).

* A mean over seeds: the Student-t interval, mean ± t_{n−1, 0.975} · s/√n (`mean_ci`). Measured coverage of the
  95 % interval (20,000 samples each, `tests/test_intervals.py` checks the Gaussian ones): Gaussian data 0.9506,
  0.9505, 0.9502 at n = 4, 8, 32; beta(2, 5) data, skewed, 0.935, 0.938, 0.949. On real sweep finals (the default
  bandit, 3000 sampled steps: `banditlab sweep --baseline=-0.3,-0.05 --seeds 1600` cut into 200 groups of 8 seeds,
  the mean of all 1600 as the truth) it covers 187/200 and 196/200 at δV = −0.3 and −0.05. A percentile
  bootstrap of the mean covers 0.81 and 0.89 on Gaussian data at n = 4 and 8 (4000 samples), and 174/200 and
  193/200 on the same sweep groups: it is a large-sample method (the resampled means spread by s·√((n−1)/n)/√n, and the normal quantile
  replaces t's), so no mean over seeds here uses one.
* A share of seeds (how many of n runs improved): the Wilson score interval (`wilson_ci`), which stays inside
  [0, 1] and is not empty at 0/n or n/n: 8/8 gives [0.68, 1]. Its exact coverage (a sum over the binomial)
  averages 0.955 and 0.953 over true shares p ∈ [0.05, 0.95] at n = 8 and 32, oscillating with p (0.930 at
  p = 0.5 and n = 8; lowest 0.90 and 0.92, near p = 0.07 and 0.11).
* A difference between two settings measured on the same seeds (shared pulls): the Student-t interval of the
  per-seed differences (`paired_differences`), which is narrower than either mean's when the pairs are correlated.
* Aggregates across methods (rliable's IQM, probability of improvement, performance profiles; `compare_methods`):
  a stratified percentile bootstrap, where no closed-form interval exists. Its coverage is not measured here, and
  over a few seeds it shares the percentile bootstrap's shortness; the figures label these intervals as such.
"""

from __future__ import annotations

import numpy as np


def mean_ci(x, level: float = 0.95) -> tuple[float, float, float]:
    """Mean of x and the Student-t confidence interval of the mean, x̄ ± t_{n−1,(1+level)/2} · s/√n (s with n − 1
    degrees of freedom). NaNs and infinities are ignored; with fewer than two values the interval is (nan, nan);
    values all equal give (x̄, x̄, x̄). The quantile by scipy.special (0.3 s to import; scipy.stats takes 2 s of the
    sweep's start-up)."""
    from scipy.special import stdtrit

    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan"), float("nan"), float("nan")
    m = float(x.mean())
    if x.size < 2:
        return m, float("nan"), float("nan")
    if np.ptp(x) == 0:
        return m, m, m
    half = float(stdtrit(x.size - 1, (1 + level) / 2) * x.std(ddof=1) / np.sqrt(x.size))
    return m, m - half, m + half


def wilson_ci(k, n, level: float = 0.95) -> tuple[float, float, float]:
    """Share k/n and its Wilson score interval: the p with |k/n − p| ≤ z·√(p(1 − p)/n), z the normal quantile,

        (k/n + z²/2n ± z·√(k/n·(1 − k/n)/n + z²/4n²)) / (1 + z²/n).

    With n = 0 everything is nan."""
    from scipy.special import ndtri

    if n == 0:
        return float("nan"), float("nan"), float("nan")
    z = float(ndtri((1 + level) / 2))
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(p), float(max(0.0, centre - half)), float(min(1.0, centre + half))


def summarise(df, by: list[str], value: str):
    """Rows of (by..., mean, ci_low, ci_high, n) for one value column of a tidy frame (`mean_ci` per group)."""
    import pandas as pd

    rows = []
    for key, g in df.groupby(by, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        m, lo, hi = mean_ci(g[value].to_numpy())
        rows.append({**dict(zip(by, key)), "mean": m, "ci_low": lo, "ci_high": hi, "n": len(g)})
    return pd.DataFrame(rows)


def paired_differences(df, by: str, pair: str, value: str):
    """For each two neighbouring values of `by` (sorted), the per-`pair` differences value(next) − value(this),
    over the pairs present at both: rows of (by, by_next, mean, ci_low, ci_high, n) with `mean_ci` of the
    differences. With shared pulls a seed's runs at every baseline learn from the same pulls, so a pair is a
    seed."""
    import pandas as pd

    wide = df.pivot_table(index=pair, columns=by, values=value, aggfunc="first").sort_index(axis=1)
    cols = list(wide.columns)
    rows = []
    for a, b in zip(cols, cols[1:]):
        d = (wide[b] - wide[a]).dropna().to_numpy()
        m, lo, hi = mean_ci(d)
        rows.append({by: a, f"{by}_next": b, "mean": m, "ci_low": lo, "ci_high": hi, "n": int(d.size)})
    return pd.DataFrame(rows, columns=[by, f"{by}_next", "mean", "ci_low", "ci_high", "n"])


# ------------------------------------------------------------------------------------ comparing methods
# The aggregates of rliable (Agarwal et al. 2021, "Deep RL at the edge of the statistical precipice") on its data
# contract: a (runs × tasks) array of scores, one column per task (a setting: a behaviour, a learning rate), one
# row per seed; a 1-d array is one task. rliable itself is not a dependency: it needs `arch` (compiled, with
# statsmodels) and absl-py for what is a few lines of numpy here.


def _runs_by_tasks(scores) -> np.ndarray:
    x = np.asarray(scores, dtype=float)
    return x[:, None] if x.ndim == 1 else x


def iqm(scores) -> float:
    """Interquartile mean of all N = runs · tasks scores: with x₍₁₎ ≤ … ≤ x₍N₎ sorted and k = ⌊N/4⌋,

        IQM = (1/(N − 2k)) Σ_{i=k+1}^{N−k} x₍ᵢ₎

    (scipy's trim_mean(x, 0.25), rliable's aggregate_iqm): the mean of the middle half, robust to a quarter of
    outlying runs on either side and less noisy than the median."""
    x = np.sort(_runs_by_tasks(scores), axis=None)
    k = x.size // 4
    return float(x[k:x.size - k].mean())


def probability_of_improvement(x, y) -> float:
    """P(X > Y) of method X over method Y, both (runs × tasks) on the same tasks: per task m the Mann–Whitney
    statistic over every pair of runs, then the mean over the M tasks (rliable's probability_of_improvement),

        P(X > Y) = (1/M) Σ_m (1/(N_x N_y)) Σ_i Σ_j ( [x_im > y_jm] + ½ [x_im = y_jm] ).

    0.5: neither is better; 1: every run of X beats every run of Y on every task."""
    x, y = _runs_by_tasks(x), _runs_by_tasks(y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x has {x.shape[1]} tasks and y {y.shape[1]}")
    a, b = x[:, None, :], y[None, :, :]
    return float(((a > b) + 0.5 * (a == b)).mean(axis=(0, 1)).mean())


def performance_profile(scores, taus) -> np.ndarray:
    """Run-score distribution at each threshold τ: the share of runs scoring above τ, averaged over tasks,

        F(τ) = (1/M) Σ_m (1/N) Σ_n [x_nm > τ]

    (rliable's run_score_distributions): a curve that lies above another for every τ dominates it."""
    x = _runs_by_tasks(scores)
    taus = np.asarray(taus, dtype=float)
    return (x[None, :, :] > taus[:, None, None]).mean(axis=1).mean(axis=1)


def stratified_bootstrap_ci(statistic, *scores, level: float = 0.95, n_boot: int = 2000, seed: int = 0):
    """statistic(*scores) and its percentile interval under the stratified bootstrap (rliable's
    StratifiedBootstrap): a resample draws, for each array and each task (column) on its own, as many runs as
    that task has, with replacement, so every task keeps its weight; the interval is the (1 ∓ level)/2 quantiles
    of the statistic over n_boot resamples. Returns (value, low, high), each an array when the statistic is one.
    A percentile interval is a large-sample method: over 8 seeds of one task it is short (see `mean_ci`), so it
    is for aggregates over many runs × tasks, where no closed form exists."""
    arrays = [_runs_by_tasks(s) for s in scores]
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        resampled = []
        for x in arrays:
            rows = rng.integers(0, x.shape[0], size=x.shape)
            resampled.append(np.take_along_axis(x, rows, axis=0))
        boots.append(statistic(*resampled))
    lo, hi = np.quantile(np.asarray(boots, dtype=float), [(1 - level) / 2, (1 + level) / 2], axis=0)
    value = np.asarray(statistic(*arrays), dtype=float)
    return (float(value), float(lo), float(hi)) if value.ndim == 0 else (value, lo, hi)


def compare_methods(scores: dict, reference: str, taus, level: float = 0.95, n_boot: int = 2000, seed: int = 0):
    """The aggregates of every method's (runs × tasks) scores, each with its stratified-bootstrap interval: a
    frame of (method, iqm, iqm_low, iqm_high, p_improve, p_low, p_high) with p_improve = P(method > reference),
    and a frame of (method, tau, share, low, high) with the performance profile at each τ."""
    import pandas as pd

    rows, profile = [], []
    for name, x in scores.items():
        i = stratified_bootstrap_ci(iqm, x, level=level, n_boot=n_boot, seed=seed)
        p = stratified_bootstrap_ci(probability_of_improvement, x, scores[reference], level=level, n_boot=n_boot,
                                    seed=seed)
        rows.append({"method": name, "iqm": i[0], "iqm_low": i[1], "iqm_high": i[2],
                     "p_improve": p[0], "p_low": p[1], "p_high": p[2]})
        f = stratified_bootstrap_ci(lambda s: performance_profile(s, taus), x, level=level, n_boot=n_boot, seed=seed)
        profile.append(pd.DataFrame({"method": name, "tau": taus, "share": f[0], "low": f[1], "high": f[2]}))
    return pd.DataFrame(rows), pd.concat(profile, ignore_index=True)
