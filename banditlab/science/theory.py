"""Closed-form theory of off-policy REINFORCE on a tabular softmax bandit (numpy, no simulation).

Notation (../shared/PAPERS.md §1): behaviour μ, mean rewards r, baseline V, V^μ = Σ μ r,
a_y = μ(y)(r(y) − V), b = Σ a = V^μ − V. The expected (infinite-batch) update of the logits is

    Δl(y) = η (a_y − b π(y))                                                      [derived]

Theorem 4.2 of AsymRE (arXiv 2506.20520): for V < V^μ the dynamics converge, whatever π₀, to

    π*(y) = (a_y − τ)₊ / b,     τ the unique scalar with Σ_y (a_y − τ)₊ = b.

τ is found exactly by sorting a (the simplex-projection algorithm): no bisection, no tolerance.
At V = V^μ, l(y) = l₀(y) + η t a_y and π concentrates on argmax a. Above V^μ the limit depends on π₀:
no closed form, `limit_policy` raises `TheoremDoesNotApply`.
"""

from __future__ import annotations

import numpy as np

from banditlab.science.behaviour import Behavior

SUPPORT_EPS = 1e-3
"""An arm is in a policy's support when π(a) ≥ SUPPORT_EPS: the one rule of the simulator's `support_size`
metric, the sweep's and `banditlab theory`'s support columns, the figures and the classroom page. A simulated
softmax policy is never exactly 0, so the support of a finite run needs a threshold; the closed form is counted
with the same one so that the two can be compared."""

LIMIT_KEYS = ("theory_expected_reward", "theory_support_size", "theory_entropy")


class TheoremDoesNotApply(ValueError):
    """V > V^μ: the limit depends on π₀ and has no closed form; simulate instead."""


def v_mu(mu: np.ndarray, rewards: np.ndarray) -> float:
    """V^μ = Σ_y μ(y) r(y), the behaviour policy's expected reward."""
    return float(np.dot(mu, rewards))


def expected_reward(pi: np.ndarray, rewards: np.ndarray) -> float:
    """J(π) = Σ_y π(y) r(y), the exact expected reward of a policy."""
    return float(np.dot(pi, rewards))


def entropy(pi: np.ndarray) -> float:
    """H(π) = −Σ π log π in nats (0 log 0 = 0)."""
    p = np.asarray(pi, dtype=float)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum()) + 0.0  # no "-0.0" for a one-arm policy


def in_support(pi, eps: float = SUPPORT_EPS):
    """π(y) ≥ eps elementwise, for numpy arrays and torch tensors alike: the support rule (`SUPPORT_EPS`) that the
    simulator's `support_size` metric and `support_size` here both count."""
    return pi >= eps


def support_size(pi: np.ndarray, eps: float = SUPPORT_EPS) -> int:
    """Number of arms with π(y) ≥ eps (the support rule, `in_support`)."""
    return int(in_support(np.asarray(pi), eps).sum())


def expected_logit_drift(mu: np.ndarray, rewards: np.ndarray, V: float, pi: np.ndarray | None = None) -> np.ndarray:
    """Expected logit change per unit learning rate, a_y − b π(y) (π = μ if not given).

    At π = μ this is μ(y)(r(y) − V^μ) for every V: on-policy, the baseline only changes the variance.
    """
    mu, r = np.asarray(mu, float), np.asarray(rewards, float)
    a = mu * (r - V)
    return a - a.sum() * (mu if pi is None else np.asarray(pi, float))


def _tau(a: np.ndarray, b: float) -> float:
    """The unique τ with Σ (a − τ)₊ = b > 0, by sorting a in decreasing order."""
    s = np.sort(a)[::-1]
    cums = np.cumsum(s) - b
    k = np.arange(1, len(s) + 1)
    taus = cums / k
    valid = s > taus  # the support is the largest prefix with s_k > τ_k
    kmax = int(np.nonzero(valid)[0].max())
    return float(taus[kmax])


def limit_policy(mu: np.ndarray, rewards: np.ndarray, V: float, pi0: np.ndarray | None = None) -> np.ndarray:
    """Limit of the expected off-policy REINFORCE dynamics with baseline V on fixed behaviour μ.

    V < V^μ : π* = (a − τ)₊ / (V^μ − V)  (Theorem 4.2; independent of π₀)
    V = V^μ : π* uniform over argmax_y μ(y)(r(y) − V^μ), weighted by π₀ on ties (generically one arm)
    V > V^μ : raises TheoremDoesNotApply.
    """
    mu, r = np.asarray(mu, dtype=float), np.asarray(rewards, dtype=float)
    if mu.shape != r.shape or mu.ndim != 1:
        raise ValueError(f"mu and rewards must be 1-d of equal length, got {mu.shape} and {r.shape}")
    a = mu * (r - V)
    b = float(a.sum())
    scale = max(1.0, float(np.abs(a).max()))
    if b > 1e-12 * scale:
        pi = np.clip(a - _tau(a, b), 0.0, None) / b
        return pi / pi.sum()
    if b >= -1e-12 * scale:
        top = np.isclose(a, a.max(), rtol=0, atol=1e-12 * scale)
        w = top * (mu if pi0 is None else np.asarray(pi0, float))
        return w / w.sum()
    raise TheoremDoesNotApply(f"V = {V:.4g} > V^μ = {b + V:.4g}: the limit depends on π₀; simulate it")


def limit_summary(mu: np.ndarray, rewards: np.ndarray, V: float, eps: float = SUPPORT_EPS) -> dict:
    """Expected reward, support size (π* ≥ eps) and entropy of the limit policy; NaNs where the theorem does not
    apply."""
    try:
        pi = limit_policy(mu, rewards, V)
    except TheoremDoesNotApply:
        return dict.fromkeys(LIMIT_KEYS, np.nan)
    return {"theory_expected_reward": expected_reward(pi, rewards),
            "theory_support_size": support_size(pi, eps), "theory_entropy": entropy(pi)}


def averaged_limit_summary(mu: np.ndarray, rewards: np.ndarray, V: np.ndarray, context_probs: np.ndarray,
                           eps: float = SUPPORT_EPS) -> dict:
    """`limit_summary` of each context x (behaviour mu[x], rewards[x], baseline V[x]), averaged with p(x):
    Σ_x p(x) J(π*_x), Σ_x p(x) |supp π*_x| and Σ_x p(x) H(π*_x). The numbers `banditlab theory` prints and the
    sweep's summary.csv records (`limit_for_run`); NaN where the theorem does not apply in some context."""
    rows = [limit_summary(m, r, v, eps) for m, r, v in zip(mu, rewards, V)]
    return {k: float(np.dot(context_probs, [s[k] for s in rows])) for k in LIMIT_KEYS}


def single_arm_from(mu: np.ndarray, rewards: np.ndarray) -> tuple[float, int]:
    """(V₁, i): the limit π* is the single arm i = argmax_y μ(y)(r(y) − V^μ) for every V in [V₁, V^μ], and has more
    than one arm below V₁. The support collapses at the latest at V^μ, and earlier when one arm's advantage leads:

        π* = {i}  ⇔  a_i − a_j ≥ V^μ − V for all j ≠ i,   a_y = μ(y)(r(y) − V)

    (Theorem 4.2's π* = (a − τ)₊/(V^μ − V) keeps j only while a_j > τ = a_i − (V^μ − V)). Each condition is linear
    in V, so V₁ = max_{j≠i} (V^μ − μ_i r_i + μ_j r_j) / (1 − μ_i + μ_j); −inf when μ is one arm. On REC's 3-armed
    bandit (r = 0, 0.8, 1; μ = 0.3, 0.6, 0.1; V^μ = 0.58) V₁ = 0.40. Supports are nested as V grows, so
    [V₁, V^μ] is the whole single-arm range below V^μ. A tie for the argmax at V^μ gives V₁ = V^μ."""
    mu, r = np.asarray(mu, dtype=float), np.asarray(rewards, dtype=float)
    vmu = v_mu(mu, r)
    i = int(np.argmax(mu * (r - vmu)))
    j = np.arange(len(mu)) != i
    den = 1.0 - mu[i] + mu[j]
    num = vmu - mu[i] * r[i] + mu[j] * r[j]
    with np.errstate(divide="ignore", invalid="ignore"):
        bounds = np.where(den > 0, num / np.where(den > 0, den, 1.0), -np.inf)
    return (float(bounds.max()) if bounds.size else -np.inf), i


def policy_iteration(mu: np.ndarray, rewards: np.ndarray, V: float, iterations: int) -> list[np.ndarray]:
    """Theorem 4.3: run to the limit, set μ ← π*, repeat. Returns [μ₀, π*₁, π*₂, ...].

    The prediction exists only while V < V^μ_k (then J strictly increases and the support shrinks); at V = V^μ_k
    the next policy is the single arm argmax a; when V > V^μ_k the sequence stops (the theorem is silent).
    """
    out = [np.asarray(mu, dtype=float)]
    for _ in range(iterations):
        try:
            out.append(limit_policy(out[-1], rewards, V))
        except TheoremDoesNotApply:
            break
    return out


def group_baseline_offset(offset: float, group_size: int) -> float:
    """Effective V − V^μ of a sampled group-mean baseline r̄_G + δV with G pulls per group [derived].

    E[(r_i − r̄_G − δV) ∇log π(y_i)] = (1 − 1/G) E_μ[(r − V^μ − δV·G/(G−1)) ∇log π(y)], because r̄_G contains
    r_i itself. So its limit is that of the fixed baseline V = V^μ + δV·G/(G − 1) (lr scaled by 1 − 1/G).
    """
    if group_size < 2:
        raise ValueError("a group-mean baseline needs at least 2 samples per group")
    return offset * group_size / (group_size - 1)


def effective_positive_share(p: float | np.ndarray, c: float | np.ndarray) -> np.ndarray:
    """TOPR §4: with ±1 rewards and baseline c, positives weigh (1 − c) and negatives (1 + c), so the
    effective share of positives is p̃ = p(1 − c) / (1 + c(1 − 2p))."""
    p, c = np.asarray(p, float), np.asarray(c, float)
    return p * (1 - c) / (1 + c * (1 - 2 * p))


def baseline_for_share(p: float, share: float) -> float:
    """Inverse of `effective_positive_share` in c: the baseline that gives effective positive share p̃."""
    # p̃ (1 + c(1 − 2p)) = p (1 − c)  ⇒  c = (p − p̃) / (p̃ (1 − 2p) + p)
    return float((p - share) / (share * (1 - 2 * p) + p))


def limit_for_run(bandit, run: dict, objective, offset: float) -> dict:
    """Theorem 4.2's limit for one baseline value of a sweep (`run`: the sweep's settings, as in its config.json),
    per context and averaged with p(x); NaN where the theorem does not apply (not REINFORCE/AsymRE, a std-normalised
    or RED-Drop advantage, or a behaviour that moves). A sampled group-mean baseline r̄_G + δV has the limit of the
    fixed baseline V^μ + δV·G/(G − 1) (`group_baseline_offset`)."""
    from banditlab.registry.objectives import reinforce
    p = objective.params
    mu = Behavior.parse(run["behavior"]).theory_mu(bandit.mu)  # None where the behaviour moves
    if objective.fn is not reinforce or p["std_norm"] or p["red_drop"] or mu is None:
        return dict.fromkeys(LIMIT_KEYS, np.nan)
    if run["absolute"]:
        V = np.full(bandit.contexts, offset)
    else:
        vmu = np.array([v_mu(m, r) for m, r in zip(mu, bandit.means)])
        grouped = run["baseline_ref"] == "group" and run["mode"] == "sampled"
        V = vmu + (group_baseline_offset(offset, run["batch"]) if grouped else offset)
    return averaged_limit_summary(mu, bandit.means, V, bandit.context_probs, run["support_eps"])
