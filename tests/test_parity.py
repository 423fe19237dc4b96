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

from banditlab.objectives import AGGREGATIONS, OBJECTIVES, Batch, batch_totals, get_objective

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
    "tis-trinity": ("tis", {"a_pos": 0.4, "b_pos": 3.0, "a_neg": 0.4, "b_neg": 3.0, "ratio_level": "token"},
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


def test_readme_embeds_the_parity_table_printed_by_algos(capsys):
    from pathlib import Path

    from banditlab.cli import main
    from banditlab.references import ROWS, markdown

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    embedded = readme.split("<!-- parity:begin -->\n")[1].split("\n<!-- parity:end -->")[0]
    assert embedded == markdown()
    assert [r[0] for r in ROWS] == list(OBJECTIVES)  # one row per registry entry, in registry order
    with pytest.raises(SystemExit) as e:
        main(["algos", "--references"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == markdown()
