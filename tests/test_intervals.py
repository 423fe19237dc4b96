"""The intervals the sweep reports, checked for what they claim: the Student-t interval of a mean over seeds
covers 95 % at the seed counts the sweeps and the LLM experiment use, the Wilson interval of a share and the paired
differences match hand computations, and the sweep's references are what their labels say."""

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from banditlab.stats import mean_ci, paired_differences, wilson_ci
from conftest import run_cli

REPS = 2000
TOL = 3.5 * np.sqrt(0.95 * 0.05 / REPS)  # 3.5 binomial standard errors of a coverage of 0.95 over REPS samples


def coverage(interval, n: int, seed: int) -> float:
    """Share of REPS Gaussian samples of size n (true mean 0) whose interval holds 0."""
    x = np.random.default_rng(seed).normal(size=(REPS, n))
    return float(np.mean([lo <= 0.0 <= hi for _, lo, hi in map(interval, x)]))


@pytest.mark.parametrize("n", [4, 5, 8, 32])  # 5: the LLM experiment's seeds
def test_the_mean_interval_covers_95_percent_at_the_seed_counts_used(n):
    assert abs(coverage(mean_ci, n, seed=n) - 0.95) <= TOL


def test_the_coverage_check_rejects_a_normal_quantile_interval_at_four_seeds():
    """mean ± 1.96 s/√n (the large-sample interval, like the percentile bootstrap) covers about 0.88 at n = 4:
    the check above would fail it."""
    def z_interval(x):
        h = 1.959964 * x.std(ddof=1) / np.sqrt(x.size)
        return x.mean(), x.mean() - h, x.mean() + h

    assert coverage(z_interval, 4, seed=4) < 0.95 - TOL


def test_wilson_interval_by_hand():
    z2 = 1.959963984540054**2
    p, lo, hi = wilson_ci(8, 8)
    assert (p, hi) == (1.0, 1.0) and lo == pytest.approx(8 / (8 + z2), rel=1e-12)  # k = n: lower end n/(n + z²)
    assert wilson_ci(0, 8)[1] == 0.0 and wilson_ci(0, 8)[2] == pytest.approx(1 - lo, rel=1e-12)
    p, lo, hi = wilson_ci(28, 32)
    assert p == 0.875 and lo < p < hi
    assert wilson_ci(4, 32)[1:] == pytest.approx((1 - hi, 1 - lo), rel=1e-12)  # k ↔ n − k mirrors the interval
    assert all(np.isnan(v) for v in wilson_ci(0, 0))


def test_wilson_interval_covers_95_percent_on_average_at_the_seed_counts_sweeps_use():
    """Exact coverage (a sum over the binomial distribution) at n = 8 and 32 seeds: 0.95 on average over the true
    share p ∈ [0.05, 0.95], oscillating with p (its known sawtooth), at least 0.925 at the shares 0.3–0.95."""
    from scipy.stats import binom

    for n in (8, 32):
        ks = np.arange(n + 1)
        ints = np.array([wilson_ci(k, n)[1:] for k in ks])
        cov = lambda p: binom.pmf(ks, n, p)[(ints[:, 0] <= p) & (p <= ints[:, 1])].sum()
        assert abs(np.mean([cov(p) for p in np.linspace(0.05, 0.95, 181)]) - 0.95) < 0.01
        assert min(cov(p) for p in (0.3, 0.5, 0.7, 0.9, 0.95)) >= 0.925


def test_paired_differences_are_the_t_interval_of_per_seed_differences():
    # seeds 0..2 at δV = a, b, c; b − a = [1, 2, 3] per seed, c − b = [0, 0, 0]; seed 3 only at a (no pair)
    df = pd.DataFrame({"dv": [-1, -1, -1, -1, 0, 0, 0, 1, 1, 1], "seed": [0, 1, 2, 3, 0, 1, 2, 0, 1, 2],
                       "y": [10.0, 20.0, 30.0, 99.0, 11.0, 22.0, 33.0, 11.0, 22.0, 33.0]})
    out = paired_differences(df, "dv", "seed", "y")
    assert list(out["dv"]) == [-1, 0] and list(out["dv_next"]) == [0, 1] and list(out["n"]) == [3, 3]
    assert tuple(out.iloc[0][["mean", "ci_low", "ci_high"]]) == mean_ci([1.0, 2.0, 3.0])
    assert tuple(out.iloc[1][["mean", "ci_low", "ci_high"]]) == (0.0, 0.0, 0.0)
    # the pairs' interval is narrower than either mean's: the seeds' shared level cancels
    assert out.iloc[0].ci_high - out.iloc[0].ci_low < np.ptp(mean_ci([10.0, 20.0, 30.0])[1:]) / 5


SMALL = ["--arms", "6", "--steps", "40", "--baseline", "-0.3,-0.1,0.1", "--no-progress"]


def test_the_sweep_table_holds_both_references_the_improved_interval_and_the_pairs(tmp_path):
    """exact_same_step is the exact-mode sweep's J after the same steps; theory_limit is Theorem 4.2's; the
    improved share carries its Wilson interval; pairs.csv holds the per-seed differences of neighbours."""
    code, text, err = run_cli(["sweep", *SMALL, "--seeds", "4", "--out", str(tmp_path / "s")])
    assert code == 0, err
    code, _, err = run_cli(["sweep", *SMALL, "--mode", "exact", "--out", str(tmp_path / "e")])
    assert code == 0, err
    t = pd.read_csv(tmp_path / "s" / "table.csv")
    e = pd.read_csv(tmp_path / "e" / "table.csv")
    np.testing.assert_allclose(t["exact_same_step"], e["mean"], rtol=1e-12)
    assert e["exact_same_step"].isna().all() and e["improved_low"].isna().all()  # exact mode is the reference
    assert t.loc[t.baseline_offset < 0, "theory_limit"].notna().all() and np.isnan(t["theory_limit"].iloc[-1])
    summary = pd.read_csv(tmp_path / "s" / "summary.csv")
    for _, r in t.iterrows():
        k = int(summary.loc[summary.baseline_offset == r.baseline_offset, "improved"].sum())
        assert (r.improved, r.improved_low, r.improved_high) == pytest.approx(wilson_ci(k, 4))
    pairs = pd.read_csv(tmp_path / "s" / "pairs.csv")
    wide = summary.pivot(index="seed", columns="baseline_offset", values="final_expected_reward")
    assert tuple(pairs.iloc[0][["mean", "ci_low", "ci_high"]]) == pytest.approx(mean_ci(wide[-0.1] - wide[-0.3]))
    assert "exact" in text and "limit" in text and "ΔJ to next" in text


def load_script():
    path = Path(__file__).parents[1] / "experiments" / "sampled_failure.py"
    spec = importlib.util.spec_from_file_location("sampled_failure", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_step_sd_matches_the_spread_of_simulated_steps():
    """One sampled AsymRE step at π, drawn 20,000 times, with a small η: the spread of the exact change in J
    (softmax of the moved logits) is the docstring's first-order formula's, within Monte-Carlo error."""
    step_sd = load_script().step_sd
    rng = np.random.default_rng(0)
    K, B, lr = 5, 16, 1e-3
    means, mu = rng.uniform(size=K), rng.dirichlet(np.ones(K))
    logits = rng.normal(size=K)
    pi = np.exp(logits) / np.exp(logits).sum()
    for V in (-3.0, 0.2):
        a = rng.choice(K, p=mu, size=(20000, B))
        r = (rng.uniform(size=a.shape) < means[a]).astype(float)
        grad = np.zeros((20000, K))
        np.add.at(grad, (np.repeat(np.arange(20000), B), a.ravel()), (r - V).ravel())
        dl = lr / B * (grad - (r - V).sum(1, keepdims=True) * pi)
        new = np.exp(logits + dl)
        dJ = (new / new.sum(1, keepdims=True)) @ means - pi @ means
        assert dJ.std() == pytest.approx(step_sd(mu, means, V, pi, lr, B), rel=0.03)


def test_the_margin_is_var_over_the_gap_where_every_reward_exceeds_v():
    """Theorem 4.2 with τ = 0 (V ≤ min r̄): π* = μ(r̄ − V)/(V^μ − V), so J(π*) − V^μ = Var_μ(r̄)/(V^μ − V)."""
    from banditlab.science import bandits
    from banditlab.science import theory

    b = bandits.paper(noise="none")
    mu, r = b.mu[0], b.means[0]
    vmu = theory.v_mu(mu, r)
    for V in (r.min() - 0.01, -2.0, -9.5):
        margin = theory.expected_reward(theory.limit_policy(mu, r, V), r) - vmu
        assert margin == pytest.approx(float(mu @ (r - vmu) ** 2) / (vmu - V), rel=1e-9)
