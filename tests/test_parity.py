"""The registry against the papers' formulas, transcribed here as plain per-sample / per-token loops (not from
any implementation), for every convention setting; no objective returns NaN or inf from finite inputs; a
micro-batched step equals the full-batch step.

Each reference computes the scalar loss of one ragged batch with Python loops over groups, samples and tokens;
the test compares the autograd gradients with respect to every log π_t, in float64, to 1e-10.
"""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dataclasses import replace

from banditlab.registry.objectives import AGGREGATIONS, OBJECTIVES, Batch, batch_totals, get_objective, prepare, select

F64 = torch.float64


# ------------------------------------------------------------------------------------------ a ragged batch
def ragged_batch(seed=0, groups=(4, 4, 3, 1), T=7, rewards=None):
    g = torch.Generator().manual_seed(seed)
    n = sum(groups)
    lengths = torch.randint(1, T + 1, (n,), generator=g)
    lengths[0] = T  # the longest sets T
    mask = (torch.arange(T)[None, :] < lengths[:, None]).to(F64)
    logp_old = -torch.rand(n, T, generator=g, dtype=F64) * 3
    logp = (logp_old + 0.4 * torch.randn(n, T, generator=g, dtype=F64)).clamp(max=-1e-3)
    group = torch.cat([torch.full((k,), i) for i, k in enumerate(groups)])
    if rewards is None:
        rewards = torch.where(torch.rand(n, generator=g) < 0.4, 1.0, -1.0).to(F64)
        rewards[1] = -rewards[0]  # every group of two or more has both signs somewhere
    return logp, logp_old, torch.as_tensor(rewards, dtype=F64), group, mask


# ------------------------------------------------------------------------------------------ the papers, as loops
def group_stats(r, group, std, singleton):
    """GRPO's (r − mean)/σ pieces per sample: (mean, σ). DeepSeekMath eq. 3 uses mean(r) and std(r) of the group."""
    out = []
    for i in range(len(r)):
        mates = [float(r[j]) for j in range(len(r)) if group[j] == group[i]]
        k = len(mates)
        if k == 1:
            out.append((mates[0] if singleton == "self" else 0.0, 1.0))
            continue
        m = sum(mates) / k
        ss = sum((x - m) ** 2 for x in mates)
        var = ss / (k - 1) if std == "unbiased" else ss / k
        out.append((m, math.sqrt(var)))
    return out


def adv(r, group, offset=0.0, std_norm=False, std="population", std_eps=1e-6, singleton="self", baseline="group"):
    if baseline == "none":
        return [float(x) for x in r]
    stats = group_stats(r, group, std, singleton)
    a = [float(r[i]) - (stats[i][0] + offset) for i in range(len(r))]
    if std_norm:
        a = [a[i] / (stats[i][1] + std_eps) for i in range(len(r))]
    return a


def reduce(token_losses, mask, mode):
    """token_losses[i][t]; the aggregations of the GRPO/DAPO/Dr. GRPO papers and verl's naming."""
    n, T = mask.shape
    L = [sum(token_losses[i][t] * mask[i, t] for t in range(T)) for i in range(n)]
    lens = [mask[i].sum() for i in range(n)]
    if mode == "token-mean":
        return sum(L) / sum(lens)
    if mode == "seq-mean-token-mean":
        return sum(L[i] / lens[i] for i in range(n)) / n
    if mode == "seq-mean-token-sum":
        return sum(L) / n
    if mode == "seq-mean-token-sum-norm":
        return sum(L) / (n * T)
    if mode == "token-sum-norm":
        return sum(L) / T
    raise ValueError(mode)


def seq_ratio(logp, logp_old, mask, i):
    return torch.exp(sum((logp[i, t] - logp_old[i, t]) * mask[i, t] for t in range(mask.shape[1]))).detach()


def ref_reinforce(logp, logp_old, r, group, mask, agg, **kw):
    """AsymRE eq. 2 (LLM form): ℓ = −(r − (r̄_g + δV)) log π, per token."""
    a = adv(r, group, **kw)
    return reduce([[-a[i] * logp[i, t] for t in range(mask.shape[1])] for i in range(len(r))], mask, agg)


def ref_tapered(logp, logp_old, r, group, mask, agg, windows, level, **kw):
    """TOPR eq. 8: ℓ = −clip(ρ, a, b) A log π with [a+, b+] for A ≥ 0 and [a−, b−] for A < 0."""
    (ap, bp), (an, bn) = windows
    a = adv(r, group, **kw)
    out = []
    for i in range(len(r)):
        row = []
        for t in range(mask.shape[1]):
            rho = seq_ratio(logp, logp_old, mask, i) if level == "sequence" else torch.exp(logp[i, t] - logp_old[i, t]).detach()
            lo, hi = (ap, bp) if a[i] >= 0 else (an, bn)
            row.append(-min(max(rho, torch.tensor(lo, dtype=F64)), torch.tensor(hi, dtype=F64)) * a[i] * logp[i, t])
        out.append(row)
    return reduce(out, mask, agg)


def ref_ppo(logp, logp_old, r, group, mask, agg, eps=0.2, dual_clip=None, **kw):
    """PPO-clip (Schulman et al. 2017, eq. 7) per token with the GRPO advantage; dual clip (Ye et al. 2020)."""
    a = adv(r, group, **kw)
    out = []
    for i in range(len(r)):
        row = []
        for t in range(mask.shape[1]):
            rho = torch.exp(logp[i, t] - logp_old[i, t])
            l = -torch.minimum(rho * a[i], rho.clamp(1 - eps, 1 + eps) * a[i])
            if dual_clip is not None and a[i] < 0:
                l = torch.minimum(l, torch.tensor(-dual_clip * a[i], dtype=F64))
            row.append(l)
        out.append(row)
    return reduce(out, mask, agg)


def ref_rec(logp, logp_old, r, group, mask, agg, clip="one-side", weight="none", reg="none", coef=0.1, temp=1.0,
            eps=0.2, ring=(0.6, 2.0), **kw):
    """REC (arXiv 2509.24203) Table 1 masks, IS or no IS, RED-Weight A·exp(A/τ), OPMD (c/2)Δ², REP −β log π."""
    a = adv(r, group, **kw)
    out = []
    for i in range(len(r)):
        row = []
        for t in range(mask.shape[1]):
            rho = float(torch.exp(logp[i, t] - logp_old[i, t]).detach())
            inside = 1 - eps <= rho <= 1 + eps
            keep = {"none": True, "two-side": inside,
                    "one-side": (a[i] >= 0 and rho <= 1 + eps) or (a[i] <= 0 and rho >= 1 - eps),
                    "ring": inside or (a[i] >= 0 and rho <= 1 - ring[0]) or (a[i] <= 0 and rho >= 1 + ring[1])}[clip]
            ai = a[i] * math.exp(a[i] / temp) if weight == "red-weight" else a[i]
            w = rho if weight == "is" else 1.0
            l = -w * ai * keep * logp[i, t]
            if reg == "k2":
                l = l + coef / 2 * (logp[i, t] - logp_old[i, t]) ** 2
            if reg == "fkl":
                l = l - coef * logp[i, t]
            row.append(l)
        out.append(row)
    return reduce(out, mask, agg)


def ref_sft(logp, logp_old, r, group, mask, agg, norm="all"):
    """Rejection-sampling SFT: −log π on the samples with r > 0; "positive" averages over those samples only."""
    pos = [i for i in range(len(r)) if r[i] > 0]
    rows = pos if norm == "positive" else range(len(r))
    sub = mask[list(rows)]
    return reduce([[-float(r[i] > 0) * logp[i, t] for t in range(mask.shape[1])] for i in rows], sub, agg)


def ref_red_drop(logp, logp_old, r, group, mask, agg, ties):
    """RED-Drop (REC §5) where nothing is dropped at random: every group has n₋ ≤ n₊ (ties counted by `ties`),
    so it is REINFORCE with the group mean."""
    for gid in set(group.tolist()):
        rr = [float(x) for x, g in zip(r, group) if g == gid]
        m = sum(rr) / len(rr)
        npos = sum(x > m or (ties == "positive" and x == m) for x in rr)
        assert sum(x < m for x in rr) <= npos
    return ref_reinforce(logp, logp_old, r, group, mask, agg)


def ref_sapo(logp, logp_old, r, group, mask, agg, tau=(1.0, 1.05), **kw):
    """SAPO eqs. 5–6: ℓ_t = −(4/τ) σ(τ(ρ_t − 1)) A, τ = τ_pos for A > 0 else τ_neg."""
    a = adv(r, group, **kw)
    out = []
    for i in range(len(r)):
        t_ = tau[0] if a[i] > 0 else tau[1]
        out.append([-(4 / t_) * torch.sigmoid(t_ * (torch.exp(logp[i, t] - logp_old[i, t]) - 1)) * a[i]
                    for t in range(mask.shape[1])])
    return reduce(out, mask, agg)


def ref_gmpo(logp, logp_old, r, group, mask, agg, eps=(0.4, 0.4), **kw):
    """GMPO eq. 4: −A · exp(mean_t of Δ_t clipped to [−ε_low, ε_high] on the side sgn(A) exploits)."""
    a = adv(r, group, **kw)
    out = []
    for i in range(len(r)):
        terms = []
        for t in range(mask.shape[1]):
            if mask[i, t]:
                d = logp[i, t] - logp_old[i, t]
                dc = d.clamp(-eps[0], eps[1])
                terms.append(torch.minimum(d, dc) if a[i] > 0 else torch.maximum(d, dc) if a[i] < 0 else 0 * d)
        li = -a[i] * torch.exp(sum(terms) / len(terms))
        out.append([li] * mask.shape[1])
    return reduce(out, mask, agg)


def ref_m2po(logp, logp_old, r, group, mask, agg, tau=0.04, **kw):
    """M2PO Algorithm 1: drop trust-region tokens (A·log ρ > 0) by decreasing (log ρ)² until their mean ≤ τ;
    ℓ_t = −M_t ρ_t A."""
    a = adv(r, group, **kw)
    n, T = mask.shape
    trust = [(i, t) for i in range(n) for t in range(T) if mask[i, t] and a[i] * float((logp[i, t] - logp_old[i, t]).detach()) > 0]
    trust.sort(key=lambda it: float((logp[it] - logp_old[it]).detach()) ** 2)
    dropped = set()
    while trust and sum(float((logp[it] - logp_old[it]).detach()) ** 2 for it in trust) / len(trust) > tau:
        dropped.add(trust.pop())
    return reduce([[0 * logp[i, t] if (i, t) in dropped else -torch.exp(logp[i, t] - logp_old[i, t]) * a[i]
                    for t in range(T)] for i in range(n)], mask, agg)


def ref_gspo(logp, logp_old, r, group, mask, agg, eps=(3e-4, 4e-4), **kw):
    """GSPO eq. 7: −min(s A, clip(s, 1 − ε_low, 1 + ε_high) A) per sequence, s = exp(mean_t log ρ_t), on every token."""
    a = adv(r, group, **kw)
    out = []
    for i in range(len(r)):
        s = torch.exp(sum((logp[i, t] - logp_old[i, t]) * mask[i, t] for t in range(mask.shape[1])) / mask[i].sum())
        out.append([-torch.minimum(s * a[i], s.clamp(1 - eps[0], 1 + eps[1]) * a[i])] * mask.shape[1])
    return reduce(out, mask, agg)


def ref_opsm(logp, logp_old, r, group, mask, agg, delta=0.5, **kw):
    """DeepSeek-V3.2 eq. 9: GRPO's token loss times M_i = 0 where A_i < 0 and mean_t log(μ/π) > δ."""
    a = adv(r, group, **kw)
    out = []
    for i in range(len(r)):
        drift = sum(float((logp_old[i, t] - logp[i, t]).detach()) * mask[i, t] for t in range(mask.shape[1])) / mask[i].sum()
        keep = 0.0 if a[i] < 0 and drift > delta else 1.0
        row = []
        for t in range(mask.shape[1]):
            rho = torch.exp(logp[i, t] - logp_old[i, t])
            row.append(-keep * torch.minimum(rho * a[i], rho.clamp(0.8, 1.2) * a[i]))
        out.append(row)
    return reduce(out, mask, agg)


def ref_dapo(logp, logp_old, r, group, mask, agg, keep_lone=False, **kw):
    """DAPO eqs. 10–11: groups whose rewards are all equal leave the batch (a one-sample group too, unless
    `keep_lone`); PPO clip [0.8, 1.28] on the rest."""
    mates = lambda i: [float(r[j]) for j in range(len(r)) if group[j] == group[i]]
    keep = [i for i in range(len(r)) if len(set(mates(i))) > 1 or (keep_lone and len(mates(i)) == 1)]
    a = adv(r, group, **kw)
    out = []
    for i in keep:
        row = []
        for t in range(mask.shape[1]):
            rho = torch.exp(logp[i, t] - logp_old[i, t])
            row.append(-torch.minimum(rho * a[i], rho.clamp(0.8, 1.28) * a[i]))
        out.append(row)
    return reduce(out, mask[keep], agg)


# ------------------------------------------------------------------------------------------ the cases
CASES = {  # id: (registry name, overrides, reference, reference kwargs)
    "reinforce": ("reinforce", {}, ref_reinforce, {}),
    "asymre-0.3": ("asymre", {"offset": -0.3}, ref_reinforce, {"offset": -0.3}),
    "asymre-singleton-reference": ("asymre", {"singleton": "reference"}, ref_reinforce,
                                   {"offset": -0.1, "singleton": "reference"}),
    "topr-sequence": ("topr", {}, ref_tapered, {"windows": ((1, 1), (0, 1)), "level": "sequence", "baseline": "none"}),
    "topr-token": ("topr", {"ratio_level": "token"}, ref_tapered,
                   {"windows": ((1, 1), (0, 1)), "level": "token", "baseline": "none"}),
    "is-sequence": ("is", {}, ref_tapered, {"windows": ((0, math.inf), (0, math.inf)), "level": "sequence"}),
    "is-token": ("is", {"ratio_level": "token"}, ref_tapered,
                 {"windows": ((0, math.inf), (0, math.inf)), "level": "token"}),
    "tis": ("tis", {}, ref_tapered, {"windows": ((0, 1), (0, 1)), "level": "sequence"}),
    "tis-window": ("tis", {"a_pos": 0.4, "b_pos": 3.0, "a_neg": 0.4, "b_neg": 3.0, "ratio_level": "token"},
                    ref_tapered, {"windows": ((0.4, 3), (0.4, 3)), "level": "token"}),
    "ppo": ("ppo", {}, ref_ppo, {}),
    "ppo-dual-clip": ("ppo", {"dual_clip": 3.0, "eps_low": 0.1, "eps_high": 0.1}, ref_ppo,
                      {"dual_clip": 3.0, "eps": 0.1}),
    "grpo-population": ("grpo", {}, ref_ppo, {"std_norm": True}),
    "grpo-unbiased-trl": ("grpo", {"std": "unbiased", "std_eps": 1e-4}, ref_ppo,
                          {"std_norm": True, "std": "unbiased", "std_eps": 1e-4}),
    "grpo-unbiased-singleton-reference": ("grpo", {"std": "unbiased", "singleton": "reference"}, ref_ppo,
                                          {"std_norm": True, "std": "unbiased", "singleton": "reference"}),
    "rec-one-side": ("rec", {}, ref_rec, {}),
    "rec-two-side-is": ("rec", {"clip": "two-side", "weight": "is"}, ref_rec, {"clip": "two-side", "weight": "is"}),
    "rec-ring": ("rec-ring", {}, ref_rec, {"clip": "ring"}),
    "red-weight": ("red-weight", {"temp": 2.0}, ref_rec, {"clip": "none", "weight": "red-weight", "temp": 2.0}),
    "opmd": ("opmd", {"coef": 0.2}, ref_rec, {"clip": "none", "reg": "k2", "coef": 0.2}),
    "rep-asymre": ("rep-asymre", {"coef": 0.1}, ref_rec, {"clip": "none", "reg": "fkl", "coef": 0.1}),
    "sft-all": ("sft", {}, ref_sft, {}),
    "sft-positive": ("sft", {"norm": "positive"}, ref_sft, {"norm": "positive"}),
    "dapo": ("dapo", {}, ref_dapo, {"std_norm": True}),
    "dapo-unbiased": ("dapo", {"std": "unbiased"}, ref_dapo, {"std_norm": True, "std": "unbiased"}),
    "dapo-keep-singletons": ("dapo", {"dynamic_sampling_singletons": "keep", "singleton": "reference"}, ref_dapo,
                             {"std_norm": True, "keep_lone": True, "singleton": "reference"}),
    "gspo": ("gspo", {"eps_low": 0.05, "eps_high": 0.1}, ref_gspo, {"std_norm": True, "eps": (0.05, 0.1)}),
    "cispo": ("cispo", {}, ref_tapered, {"windows": ((0, 5), (0, 5)), "level": "token", "std_norm": True}),
    "cispo-verl": ("cispo", {"a_pos": 0.8, "a_neg": 0.8, "b_pos": 1.2, "b_neg": 1.2}, ref_tapered,
                   {"windows": ((0.8, 1.2), (0.8, 1.2)), "level": "token", "std_norm": True}),
    "sapo": ("sapo", {}, ref_sapo, {"std_norm": True}),
    "gmpo": ("gmpo", {"eps_low": 0.1, "eps_high": 0.2}, ref_gmpo, {"std_norm": True, "eps": (0.1, 0.2)}),
    "m2po": ("m2po", {}, ref_m2po, {"std_norm": True}),
    "grpo-opsm": ("grpo-opsm", {"opsm_delta": 0.05}, ref_opsm, {"std_norm": True, "delta": 0.05}),
    "grpo-tis": ("grpo-tis", {}, ref_ppo, {"std_norm": True}),  # no engine log-probs: weight 1 (see below)
}


def grads(loss_fn, logp):
    leaf = logp.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(loss_fn(leaf), leaf)
    return g


@pytest.mark.parametrize("agg", AGGREGATIONS)
@pytest.mark.parametrize("case", list(CASES))
def test_gradient_matches_the_paper_formula(case, agg):
    name, overrides, ref, kw = CASES[case]
    logp, old, r, group, mask = ragged_batch(seed=len(case))
    obj = get_objective(name, agg=agg, **overrides)
    ours = grads(lambda lp: obj(Batch(lp, old, r, group=group, mask=mask)), logp)
    theirs = grads(lambda lp: ref(lp, old, r, group, mask, agg, **kw), logp)
    assert torch.allclose(ours * mask, theirs * mask, atol=1e-10, rtol=1e-9), case


@pytest.mark.parametrize("ties", ["neutral", "positive"])
def test_red_drop_without_random_drops_matches_reinforce(ties):
    # group 0: [0, −1, −1, 2] has mean 0, so with ties="positive" n₊ = 2 = n₋; group 1 is balanced either way
    r = [0.0, -1.0, -1.0, 2.0, 1.0, -1.0, 0.0] if ties == "positive" else [1.0, -1.0, 1.0, -1.0, 1.0, -1.0, 0.0]
    logp, old, r, group, mask = ragged_batch(seed=3, groups=(4, 3), rewards=r)
    obj = get_objective("red-drop", ties=ties)
    ours = grads(lambda lp: obj(Batch(lp, old, r, group=group, mask=mask)), logp)
    theirs = grads(lambda lp: ref_red_drop(lp, old, r, group, mask, "token-mean", ties), logp)
    assert torch.allclose(ours * mask, theirs * mask, atol=1e-10)


def test_red_drop_ties_decide_what_is_negative():
    """[0, −1, −1, 2]: with neutral ties one of the two −1s is dropped (n₊ = 1 < n₋ = 2), with positive ties none."""
    logp, old, r, group, mask = ragged_batch(seed=4, groups=(4,), rewards=[0.0, -1.0, -1.0, 2.0])
    for ties, dropped in (("neutral", 1), ("positive", 0)):
        g = torch.Generator().manual_seed(0)
        obj = get_objective("red-drop", ties=ties)
        grad = grads(lambda lp: obj(Batch(lp, old, r, group=group, mask=mask, generator=g)), logp)
        silent = [i for i in (1, 2) if not grad[i].abs().sum() > 0]
        assert len(silent) == dropped, ties


def test_unbiased_std_is_refused_for_probability_weights():
    logp, old, r, group, _ = ragged_batch(groups=(4,))
    b = Batch(logp[:, 0], old[:, 0], r, group=group, weight=torch.full((4,), 0.25, dtype=F64))
    with pytest.raises(ValueError, match="unbiased"):
        get_objective("grpo", std="unbiased")(b)


# ------------------------------------------------------------------------------------------ never NaN or inf
@settings(max_examples=30, deadline=None)
@given(T=st.integers(1, 4096), dtype=st.sampled_from(["float32", "bfloat16"]), spread=st.floats(0.0, 30.0),
       shift=st.floats(-1.0, 1.0), seed=st.integers(0, 2**16))
def test_no_objective_returns_nan_or_inf_from_finite_inputs(T, dtype, spread, shift, seed):
    """Every objective, any length up to 4,096 tokens, per-token log-ratios up to ±30 with a drift of either
    sign (so sequence sums go far beyond exp's range in both directions), float32 and bfloat16."""
    dt = getattr(torch, dtype)
    g = torch.Generator().manual_seed(seed)
    n = 4
    old = -torch.rand(n, T, generator=g) * 40
    logp = (old + spread * (shift + torch.rand(n, T, generator=g) - 0.5)).clamp(max=0.0)
    mask = (torch.arange(T)[None, :] < torch.randint(1, T + 1, (n,), generator=g)[:, None]).float()
    r = torch.tensor([1.0, -1.0, -1.0, 1.0])
    for name, obj in OBJECTIVES.items():
        leaf = logp.to(dt).requires_grad_(True)
        batch = Batch(leaf, old.to(dt), r, group=torch.tensor([0, 0, 1, 1]), mask=mask.to(dt))
        loss = obj(batch)
        (grad,) = torch.autograd.grad(loss, leaf)
        assert torch.isfinite(loss).all() and torch.isfinite(grad).all(), (name, T, dtype, spread, shift)


def test_sequence_ratio_that_overflowed_float32_is_finite():
    """The reported case: `is` at 400 tokens with Δ = 0.25 per token (Σ = 100 > log(float32 max) ≈ 88.7)."""
    old = torch.full((2, 400), -2.0)
    leaf = (old + 0.25).requires_grad_(True)
    b = Batch(leaf, old, torch.tensor([1.0, -1.0]), group=torch.tensor([0, 0]), mask=torch.ones(2, 400))
    loss = get_objective("is")(b)
    (grad,) = torch.autograd.grad(loss, leaf)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()


# ------------------------------------------------------------------------------------------ micro-batches
@pytest.mark.parametrize("agg", AGGREGATIONS)
@pytest.mark.parametrize("name,kw", [("grpo", {}), ("topr", {}), ("opmd", {}), ("sft", {"norm": "positive"})])
def test_micro_batches_add_up_to_the_full_batch(name, kw, agg):
    """Whole groups per micro-batch, each aggregated with the full batch's `batch_totals`: the summed gradient
    equals the full-batch gradient."""
    logp, old, r, group, mask = ragged_batch(seed=7, groups=(4, 4, 3, 1))
    obj = get_objective(name, agg=agg, **kw)
    full = grads(lambda lp: obj(Batch(lp, old, r, group=group, mask=mask)), logp)
    tot = batch_totals(Batch(logp, old, r, group=group, mask=mask), obj)

    def summed(lp):
        loss = 0.0
        for gid in range(int(group.max()) + 1):
            rows = (group == gid).nonzero().squeeze(-1)
            loss = loss + obj(Batch(lp[rows], old[rows], r[rows], group=group[rows] - gid, mask=mask[rows],
                                    totals=tot))
        return loss

    assert torch.allclose(grads(summed, logp), full, atol=1e-12)


def test_docs_embed_the_parity_table_printed_by_algos(capsys):
    from pathlib import Path

    from banditlab.cli.app import main
    from banditlab.registry.references import ROWS, markdown

    doc = (Path(__file__).resolve().parents[1] / "docs" / "objectives.md").read_text()
    embedded = doc.split("<!-- parity:begin -->\n")[1].split("\n<!-- parity:end -->")[0]
    assert embedded == markdown()
    assert [r.name for r in ROWS] == list(OBJECTIVES)  # one row per registry entry, in registry order
    with pytest.raises(SystemExit) as e:
        main(["algos", "--references"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == markdown()


def test_every_claim_is_a_valid_setting_and_was_measured_by_the_lane():
    """Each claim's settings build its objective; the lane's record (banditlab/parity_measured.json, written by
    `.ci/parity --record`) holds every claim and aggregation, measured with the pinned releases."""
    from banditlab.registry.references import PEERS, agg_keys, claims, measured

    for key, (row, claim) in claims().items():
        get_objective(row.name, **claim.settings)
    m = measured()
    assert set(m["results"]) == set(claims()) | set(agg_keys())
    assert all(f"{pkg} {v}" in m["run"] for pkg, v, _ in PEERS.values())
    assert all(d["grad"] <= 1e-6 for d in m["results"].values())  # the lane's widest tolerance


# ------------------------------------------------------------------------------------------ engine mismatch
@pytest.mark.parametrize("mode", ["truncate", "mask", "masked-is"])
@pytest.mark.parametrize("level", ["token", "sequence"])
def test_mismatch_correction_matches_the_loop(mode, level):
    """TIS / MIS (Yao et al. 2025; TRL vllm_importance_sampling_mode): GRPO's token loss times w = min(ρ_roll, C),
    1[ρ_roll ≤ C] or ρ_roll 1[ρ_roll ≤ C], ρ_roll = μ/μ_roll per token or its product over the sequence. C = 1.1 so
    both sides occur."""
    logp, old, r, group, mask = ragged_batch(seed=11)
    roll = old + 0.1 * torch.randn(old.shape, generator=torch.Generator().manual_seed(1), dtype=F64)
    name = "grpo-tis" if mode == "truncate" else "grpo-mis"
    obj = get_objective(name, mismatch=mode, mismatch_level=level, mismatch_cap=1.1)

    def ref(lp):
        a = adv(r, group, std_norm=True)
        out = []
        for i in range(len(r)):
            seq = math.exp(sum(float(old[i, t] - roll[i, t]) * mask[i, t] for t in range(mask.shape[1])))
            row = []
            for t in range(mask.shape[1]):
                rr = seq if level == "sequence" else math.exp(float(old[i, t] - roll[i, t]))
                w = min(rr, 1.1) if mode == "truncate" else float(rr <= 1.1) * (rr if mode == "masked-is" else 1)
                rho = torch.exp(lp[i, t] - old[i, t])
                row.append(-w * torch.minimum(rho * a[i], rho.clamp(0.8, 1.2) * a[i]))
            out.append(row)
        return reduce(out, mask, "token-mean")

    ours = grads(lambda lp: obj(Batch(lp, old, r, group=group, mask=mask, logp_rollout=roll)), logp)
    assert torch.allclose(ours * mask, grads(ref, logp) * mask, atol=1e-10)
    plain = grads(lambda lp: get_objective("grpo")(Batch(lp, old, r, group=group, mask=mask)), logp)
    assert not torch.allclose(ours * mask, plain * mask, atol=1e-6)  # the correction acted


# ------------------------------------------------------------------------------------------ micro-batches that split groups
@pytest.mark.parametrize("agg", AGGREGATIONS)
@pytest.mark.parametrize("name", [n for n, o in OBJECTIVES.items() if o.scope == "sample"])
def test_prepared_micro_batches_that_split_groups_add_up(name, agg):
    """`prepare` computes the advantage (RED-Drop's random drops included), the row weights and the denominators
    once; slices of 1, 2 and 3 rows cut across every group and the summed gradient equals the full-batch one, for
    every loss of scope "sample". A loss of scope "group" or "batch" (M2PO's mask ranks all of the batch's current
    log-ratios) computes over the rows it is given, which a slice across groups cannot hold."""
    logp, old, r, group, mask = ragged_batch(seed=9, groups=(4, 4, 3, 1))
    obj = get_objective(name, agg=agg)
    base = Batch(logp, old, r, group=group, mask=mask, generator=torch.Generator().manual_seed(2))
    ready = prepare(base, obj)
    full = grads(lambda lp: obj(replace(ready, logp=lp, totals=None)), logp)
    cuts = [0, 1, 3, 6, 7, 9, 12]

    def summed(lp):
        b = replace(ready, logp=lp)
        return sum(obj(select(b, torch.arange(s, e))) for s, e in zip(cuts[:-1], cuts[1:]))

    assert torch.allclose(grads(summed, logp), full, atol=1e-12), name
