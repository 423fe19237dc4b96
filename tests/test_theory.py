"""The closed forms of theory.py against independent computations and the theorems' statements."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import brentq

from banditlab.science import bandits

from banditlab.science import theory


def random_bandit(seed, k=8):
    rng = np.random.default_rng(seed)
    mu = rng.dirichlet(np.ones(k))
    return mu, rng.uniform(0, 1, k)


@given(st.integers(0, 10_000), st.floats(1e-4, 3.0))
@settings(max_examples=200, deadline=None)
def test_limit_policy_solves_the_fixed_point_and_matches_bisection(seed, gap):
    mu, r = random_bandit(seed)
    vmu = theory.v_mu(mu, r)
    V = vmu - gap
    pi = theory.limit_policy(mu, r, V)
    a, b = mu * (r - V), vmu - V
    tau = brentq(lambda t: np.clip(a - t, 0, None).sum() - b, a.min() - b - 1, a.max())
    assert np.allclose(pi, np.clip(a - tau, 0, None) / b, atol=1e-12)
    assert pi.min() >= 0 and pi.sum() == pytest.approx(1.0)
    # fixed point of the expected dynamics: a − bπ is constant (= τ) on the support
    drift = theory.expected_logit_drift(mu, r, V, pi)[pi > 0]
    assert np.ptp(drift) < 1e-12


@given(st.integers(0, 10_000))
@settings(max_examples=200, deadline=None)
def test_policy_improvement_and_nested_shrinking_supports(seed):
    mu, r = random_bandit(seed)
    vmu = theory.v_mu(mu, r)
    supports, rewards = [], []
    for V in np.linspace(vmu - 2, vmu - 1e-6, 40):
        pi = theory.limit_policy(mu, r, V)
        assert theory.expected_reward(pi, r) > vmu  # Theorem 4.2: strict improvement (rewards not constant)
        supports.append(set(np.nonzero(pi)[0]))
        rewards.append(theory.expected_reward(pi, r))
    for s_lo, s_hi in zip(supports, supports[1:]):
        assert s_hi <= s_lo  # nested, shrinking as V grows
    a = mu * (r - vmu)
    assert supports[-1] == {int(np.argmax(a))}


def test_closed_form_when_every_reward_exceeds_v():
    mu, r = random_bandit(1)
    V = r.min() - 0.1
    assert np.allclose(theory.limit_policy(mu, r, V), mu * (r - V) / (theory.v_mu(mu, r) - V))


def test_limits_in_v():
    mu, r = random_bandit(2)
    assert np.allclose(theory.limit_policy(mu, r, -1e7), mu, atol=1e-6)  # V → −∞: π* → μ
    vmu = theory.v_mu(mu, r)
    at = theory.limit_policy(mu, r, vmu)
    assert at.max() == 1.0 and np.argmax(at) == np.argmax(mu * (r - vmu))
    with pytest.raises(theory.TheoremDoesNotApply):
        theory.limit_policy(mu, r, vmu + 0.01)


def test_rec_counterexample_drift_and_critical_limit():
    mu, r = np.array([0.3, 0.6, 0.1]), np.array([0.0, 0.8, 1.0])
    assert theory.v_mu(mu, r) == pytest.approx(0.58)
    assert np.allclose(theory.expected_logit_drift(mu, r, 0.58), [-0.174, 0.132, 0.042])
    assert np.argmax(theory.limit_policy(mu, r, 0.58)) == 1  # sub-optimal arm 2 of the paper (index 1)


def test_policy_iteration_improves_until_one_arm():
    mu, r = random_bandit(4, k=20)
    V = theory.v_mu(mu, r) - 0.05
    seq = theory.policy_iteration(mu, r, V, 30)
    J = [theory.expected_reward(p, r) for p in seq]
    assert len(seq) == 31 and all(b > a for a, b in zip(J, J[1:]))  # every iteration improves
    sizes = [theory.support_size(p) for p in seq]
    assert all(b <= a for a, b in zip(sizes, sizes[1:])) and sizes[-1] < len(r)  # and never regrows


def test_effective_positive_share():
    p = np.array([0.1, 0.5, 0.9])
    assert np.allclose(theory.effective_positive_share(p, 0.0), p)
    assert np.allclose(theory.effective_positive_share(p, -1.0), 1.0)  # negatives discarded
    for pp in p:
        for share in (0.1, 0.2, 0.5):
            assert theory.effective_positive_share(pp, theory.baseline_for_share(pp, share)) == pytest.approx(share)


def test_default_bandit_follows_its_stated_rule():
    """PAPER_SEED is the first seed whose U[0,1] draw has the paper's statistics (V^μ ≈ 0.5405, best ≥ 0.999)."""
    mu = np.exp(np.arange(100) / 10)
    mu /= mu.sum()

    def ok(s):
        r = np.random.default_rng(s).uniform(0, 1, 100)
        return abs(mu @ r - 0.5405) < 0.005 and r.max() >= 0.999

    assert ok(bandits.PAPER_SEED) and not any(ok(s) for s in range(bandits.PAPER_SEED))
    b = bandits.paper()
    assert b.v_mu_total == pytest.approx(mu @ np.random.default_rng(bandits.PAPER_SEED).uniform(0, 1, 100))


@given(st.integers(0, 10_000), st.integers(2, 8))
@settings(max_examples=200, deadline=None)
def test_the_support_is_one_arm_exactly_from_single_arm_from_up_to_v_mu(seed, k):
    """From V₁ to V^μ, π* is the single arm argmax μ(r − V^μ); just below V₁ it has at least two arms."""
    mu, r = random_bandit(seed, k)
    vmu = theory.v_mu(mu, r)
    v1, arm = theory.single_arm_from(mu, r)
    assert v1 <= vmu + 1e-12
    for V in np.linspace(max(v1, vmu - 3), vmu - 1e-9, 7)[1:]:
        assert set(np.nonzero(theory.limit_policy(mu, r, V))[0]) == {arm}
    if vmu - v1 > 1e-6 and np.isfinite(v1):
        below = theory.limit_policy(mu, r, v1 - 1e-6 * max(1.0, abs(v1)))
        assert np.count_nonzero(below) >= 2


def test_single_arm_from_on_recs_counterexample():
    v1, arm = theory.single_arm_from(np.array([0.3, 0.6, 0.1]), np.array([0.0, 0.8, 1.0]))
    assert v1 == pytest.approx(0.4) and arm == 1  # arm 2 of 3, not the best arm 3


def test_the_sweeps_theorem_uses_the_behaviours_mu():
    """`limit_for_run` takes μ from `Behavior.theory_mu`: a fixed behaviour mixed with the uniform policy gives the
    limit of (1 − α) π₀ + α/K, and a behaviour that moves has no fixed-μ limit."""
    from banditlab.registry.objectives import get_objective
    from banditlab.science.behaviour import Behavior

    b = bandits.paper(arms=6, contexts=2)
    run = {"behavior": "mix:0.2:uniform", "absolute": False, "baseline_ref": "vmu", "mode": "exact", "batch": 8,
           "support_eps": theory.SUPPORT_EPS}
    mu = 0.8 * b.mu + 0.2 / 6
    assert np.allclose(Behavior.parse(run["behavior"]).theory_mu(b.mu), mu)
    vmu = np.array([theory.v_mu(m, r) for m, r in zip(mu, b.means)])
    expected = theory.averaged_limit_summary(mu, b.means, vmu - 0.1, b.context_probs)
    assert theory.limit_for_run(b, run, get_objective("asymre"), -0.1) == pytest.approx(expected)
    moving = theory.limit_for_run(b, {**run, "behavior": "lag:5"}, get_objective("asymre"), -0.1)
    assert all(np.isnan(v) for v in moving.values())
