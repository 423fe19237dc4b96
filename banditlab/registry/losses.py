"""The loss functions of the objective registry (`banditlab.registry.objectives`), each with its formula, paper and
equation in its docstring, and its parameters' ranges, linearity in log π and row weights declared beside it."""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable, Literal

import torch
from torch import Tensor

from banditlab.registry.advantage import _group_spread
from banditlab.registry.batch import Batch, _clip_window, _per_token, aggregate, mismatch_weight, ratio, safe_exp

# -------------------------------------------------------------------------------------------- objectives
# An objective is `fn(batch, a, <its own parameters>, agg)` → (loss, clipped): `a` the per-sample advantage of
# `advantage` (computed by the registry, once; objectives without a baseline take no `a`), `clipped` a 0/1 tensor
# shaped like logp marking the tokens whose gradient the objective cuts or bounds (None: it never clips). The
# `loss` decorator declares, beside the function, its parameters' ranges, the values of its string parameters
# (`choices`), cross-checks, whether it is linear in log π, whether each one-action sample's gradient depends on
# that sample alone (`per_sample`: no statistic over other samples in the function itself; the advantage's part
# is `Objective.per_sample`'s), any row weights its group rule sets, and its `scope`: the samples the function
# itself must see at once (see SCOPES).
INF = math.inf

Scope = Literal["sample", "group", "batch"]
SCOPES: tuple[Scope, ...] = ("sample", "group", "batch")
"""A loss's scope, the least a micro-batch must hold for the summed micro-batch losses to equal the full-batch loss
(the advantage, row weights and denominators are the whole batch's, computed once by `objectives.prepare`):
    "sample"  each token's or sequence's term needs that sample alone: any cut is exact
    "group"   the function computes a statistic over each sample's group (prompt): micro-batches of whole groups
    "batch"   the function computes a statistic over every token of the batch (M2PO's mask): one micro-batch"""


def at_least(lo: float, strict: bool = False) -> tuple:
    return (lo, INF, strict, False)


def between(lo: float, hi: float) -> tuple:
    return (lo, hi, False, False)


def loss(linear: Callable[[dict], bool] = lambda p: False, rows: Callable | None = None,
         ranges: dict | None = None, checks: tuple = (), scope: Scope = "sample",
         per_sample: Callable[[dict], bool] = lambda p: False, choices: dict | None = None) -> Callable:
    """Declare an objective function's properties (see the comment above)."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}; got {scope!r}")

    def deco(fn):
        sig = inspect.signature(fn).parameters
        fn.uses_advantage = "a" in sig
        fn.own = {k: v.default for k, v in sig.items() if k not in ("batch", "a")}
        fn.linear, fn.rows, fn.ranges, fn.checks, fn.scope = linear, rows, ranges or {}, checks, scope
        fn.per_sample, fn.choices = per_sample, choices or {}
        return fn
    return deco


@loss(linear=lambda p: True, per_sample=lambda p: True)
def reinforce(batch: Batch, a: Tensor, agg: str = "token-mean") -> tuple:
    """Off-policy REINFORCE, no importance ratio (naive when μ ≠ π).

        ℓ = −A · log π(y),   A = r − b        ∇J = E_μ[(r − b) ∇ log π(y)]

    AsymRE (arXiv 2506.20520, eq. 2) is this with b = V (absolute) or b = group mean + δV (its LLM version).
    """
    return aggregate(-_per_token(a, batch) * batch.logp, batch, agg), None


def _window(rho: Tensor, a: Tensor, p: dict) -> tuple[Tensor, Tensor]:
    t = lambda x: torch.as_tensor(x, dtype=rho.dtype, device=rho.device)
    return (torch.where(a >= 0, t(p["a_pos"]), t(p["a_neg"])), torch.where(a >= 0, t(p["b_pos"]), t(p["b_neg"])))


@loss(linear=lambda p: p["a_pos"] == p["b_pos"] and p["a_neg"] == p["b_neg"],  # degenerate windows: constant weight
      per_sample=lambda p: True,
      ranges={"a_pos": at_least(0), "b_pos": at_least(0), "a_neg": at_least(0), "b_neg": at_least(0)},
      checks=(("a_pos <= b_pos", lambda p: p["a_pos"] <= p["b_pos"]),
              ("a_neg <= b_neg", lambda p: p["a_neg"] <= p["b_neg"])))
def tapered(batch: Batch, a: Tensor, a_pos: Any = 1.0, b_pos: Any = 1.0, a_neg: Any = 0.0, b_neg: Any = 1.0,
            ratio_level: str = "sequence", agg: str = "token-mean") -> tuple:
    """Tapered off-policy REINFORCE (TOPR, arXiv 2503.14286, eq. 8) and the clipped-IS-weight family.

        ℓ = −sg(clip(ρ, a±, b±)) · A · log π(y),   window [a+, b+] where A ≥ 0, [a−, b−] where A < 0

    It is the gradient of E_μ[T(ρ, a, b) A] since ∇T = clip(ρ, a, b) ∇ log π. Canonical TOPR: [1,1]/[0,1];
    full IS: [0,∞]/[0,∞]; truncated IS: [0,1]/[0,1] (the TOPR paper's); naive REINFORCE: [1,1]/[1,1];
    CISPO (MiniMax-M1, arXiv 2506.13585, eq. 4): [1 − ε_low, 1 + ε_high] on both signs with per-token
    ratios. TOPR uses no baseline (rewards ±1); with a baseline c the split is on the sign of A = r − c.
    ratio_level "sequence" is the paper's trajectory ratio Π_t π/μ; Trinity-RFT's TOPR and IS use per-token
    ratios (ratio_level="token").
    """
    a = _per_token(a, batch)
    rho = ratio(batch, ratio_level)
    lo, hi = _window(rho, a, {"a_pos": a_pos, "b_pos": b_pos, "a_neg": a_neg, "b_neg": b_neg})
    w = torch.minimum(torch.maximum(rho, lo), hi)
    return aggregate(-w * a * batch.logp, batch, agg), ((rho < lo) | (rho > hi)).to(rho.dtype)


def taper(rho: Tensor, a: Any, b: Any) -> Tensor:
    """TOPR's tapered ratio T(ρ, a, b) (arXiv 2503.14286, eq. 7), whose gradient is clip(ρ, a, b) ∇ log π:

        T = a (1 + log(ρ/a))  for ρ < a;     ρ  for a ≤ ρ ≤ b;     b (1 + log(ρ/b))  for ρ > b.
    The objective `tapered` optimises is E_μ[T(ρ, a±, b±) A]; `b = inf` gives ρ above a, `a = 0` gives ρ below b.
    """
    rho = torch.as_tensor(rho)
    a = torch.as_tensor(a, dtype=rho.dtype)
    b = torch.as_tensor(b, dtype=rho.dtype)
    safe = lambda c: torch.where((c > 0) & torch.isfinite(c), c, torch.ones_like(c))  # unused branches stay finite
    low = safe(a) * (1 + torch.log(rho / safe(a)))
    high = safe(b) * (1 + torch.log(rho / safe(b)))
    return torch.where(rho < a, low, torch.where(rho > b, high, rho))


def _sequence_mask(batch: Batch, a: Tensor, delta: Any) -> Tensor:
    """Off-policy sequence masking (DeepSeek-V3.2, arXiv 2512.02556, eq. 9): keep a sequence unless A < 0 and
    its mean drift (1/|y|) Σ_t (log μ_roll − log π) exceeds δ (μ_roll: the sampler's log-probs, else log μ)."""
    old = batch.logp_rollout if batch.logp_rollout is not None else batch.logp_old
    drift = old.detach() - batch.logp.detach()
    if batch.tokens:
        m = batch.mask.to(drift.dtype)
        drift = ((drift * m).sum(-1) / m.sum(-1).clamp_min(1)).unsqueeze(-1)
    return ((a >= 0) | (drift <= delta)).to(a.dtype).expand_as(batch.logp)


@loss(ranges={"eps_low": between(0, 1), "eps_high": at_least(0), "dual_clip": at_least(1, strict=True),
              "opsm_delta": at_least(0), "mismatch_cap": at_least(0, strict=True)},
      rows=_group_spread, per_sample=lambda p: not p["dynamic_sampling"],
      choices={"mismatch": ("none", "truncate", "mask", "masked-is"), "mismatch_level": ("token", "sequence"),
               "dynamic_sampling_singletons": ("drop", "keep")})
def ppo(batch: Batch, a: Tensor, eps_low: Any = 0.2, eps_high: Any = 0.2, dual_clip: Any = None,
        ratio_level: str = "token", dynamic_sampling: bool = False, dynamic_sampling_singletons: str = "drop",
        opsm_delta: Any = None, mismatch: str = "none",
        mismatch_level: str = "token", mismatch_cap: Any = 2.0, agg: str = "token-mean") -> tuple:
    """PPO's clipped surrogate with a group-mean advantage (GRPO when std_norm, arXiv 2402.03300, eq. 3).

        ℓ = −min(ρ A, clip(ρ, 1 − ε_low, 1 + ε_high) A),   ρ = exp(log π − log μ) differentiable
    Settings that make the later methods:
      eps_high > eps_low       DAPO's clip-higher (arXiv 2503.14476, eq. 10: ε_low = 0.2, ε_high = 0.28)
      dynamic_sampling         DAPO's dynamic sampling: groups whose rewards are all equal leave the batch;
                               dynamic_sampling_singletons="keep" keeps one-sample groups (verl's filter_groups)
      ratio_level              "sequence-mean": GSPO (arXiv 2507.18071, eq. 7), s = (π(y)/μ(y))^{1/|y|}
      dual_clip c              where A < 0 the loss is also capped at −c A (Ye et al. 2020; verl uses c = 3)
      opsm_delta δ             off-policy sequence masking (DeepSeek-V3.2, eq. 9; see `_sequence_mask`)
      mismatch                 "truncate" (TIS), "mask" (MIS) or "masked-is" by the engine mismatch (see
                               `mismatch_weight`)
    """
    a = _per_token(a, batch)
    rho = ratio(batch, ratio_level, differentiable=True)
    loss_ = -torch.minimum(rho * a, _clip_window(rho, 1 - eps_low, 1 + eps_high) * a)
    if dual_clip is not None:
        c = torch.as_tensor(dual_clip, dtype=loss_.dtype, device=loss_.device)
        loss_ = torch.where(a < 0, torch.minimum(loss_, -c * a), loss_)
    clipped = 1 - rec_mask(rho.detach(), a, "one-side", eps_low, eps_high, 0.0, 0.0)
    if opsm_delta is not None:
        keep = _sequence_mask(batch, a, opsm_delta)
        loss_, clipped = loss_ * keep, torch.maximum(clipped, 1 - keep)
    w = mismatch_weight(batch, mismatch, mismatch_level, mismatch_cap)
    if w is not None:
        loss_ = loss_ * w
    return aggregate(loss_, batch, agg), clipped


def rec_mask(rho: Tensor, a: Tensor, clip: str, eps_low: Any, eps_high: Any, eps_low_ring: Any,
             eps_high_ring: Any) -> Tensor:
    """REC's token mask M (arXiv 2509.24203, Table 1): which tokens keep their gradient."""
    t = lambda x: torch.as_tensor(x, dtype=rho.dtype, device=rho.device)
    lo, hi = 1 - t(eps_low), 1 + t(eps_high)
    if clip == "none":
        return torch.ones_like(rho)
    two = (rho >= lo) & (rho <= hi)
    if clip == "two-side":
        return two.to(rho.dtype)
    if clip == "one-side":
        return (((a >= 0) & (rho <= hi)) | ((a <= 0) & (rho >= lo))).to(rho.dtype)
    if clip == "ring":
        ring_lo, ring_hi = 1 - t(eps_low_ring), 1 + t(eps_high_ring)
        return (two | ((a >= 0) & (rho <= ring_lo)) | ((a <= 0) & (rho >= ring_hi))).to(rho.dtype)
    raise ValueError(f"clip must be one of none, one-side, two-side, ring; got {clip!r}")


@loss(linear=lambda p: p["clip"] == "none" and p["weight"] != "is" and p["reg"] != "k2", per_sample=lambda p: True,
      ranges={"eps_low": between(0, 1), "eps_high": at_least(0), "eps_low_ring": between(0, 1),
              "eps_high_ring": at_least(0), "coef": at_least(0), "temp": at_least(0, strict=True)},
      choices={"clip": ("none", "one-side", "two-side", "ring"), "weight": ("none", "is", "red-weight"),
               "reg": ("none", "k2", "fkl")},
      checks=(("eps_low <= eps_low_ring", lambda p: p["clip"] != "ring" or p["eps_low"] <= p["eps_low_ring"]),
              ("eps_high <= eps_high_ring", lambda p: p["clip"] != "ring" or p["eps_high"] <= p["eps_high_ring"])))
def rec(batch: Batch, a: Tensor, clip: str = "one-side", weight: str = "none", reg: str = "none",
        eps_low: Any = 0.2, eps_high: Any = 0.2, eps_low_ring: Any = 0.6, eps_high_ring: Any = 2.0,
        coef: Any = 0.1, temp: Any = 1.0, ratio_level: str = "token", agg: str = "token-mean") -> tuple:
    """REINFORCE with clipping and regularisation (REC / REP, arXiv 2509.24203, §4).

        ℓ = −w · A' · M · log π(y)  +  reg
        M       clip mask (none / one-side / two-side / ring on ρ = π/μ, detached), see `rec_mask`
        w       1 ("none", NoIS) or sg(ρ) ("is")
        A'      A, or RED-Weight's A · exp(A / temp) (weight="red-weight")
        reg     "k2":  (coef/2)(log π − log μ)²  (OPMD, Kimi k1.5; the REC authors' Trinity-RFT configs write
                       coef · (log π − log μ)², so their coef c is our 2c)
                "fkl": −coef · log π             (AsymRE as REP: coef = β = −δV)
    one-side + IS + std_norm has the gradient of PPO-clip, i.e. GRPO. RED-Drop is the advantage's red_drop.
    """
    a = _per_token(a, batch)
    rho = ratio(batch, ratio_level)
    m = rec_mask(rho, a, clip, eps_low, eps_high, eps_low_ring, eps_high_ring)
    if weight == "none":
        w = torch.ones_like(rho)
    elif weight == "is":
        w = rho
    elif weight == "red-weight":
        w = torch.ones_like(rho)
        a = a * safe_exp(a / torch.as_tensor(temp, dtype=a.dtype, device=a.device))
    else:
        raise ValueError(f"weight must be one of none, is, red-weight; got {weight!r}")
    loss_ = -w * a * m * batch.logp
    if reg == "k2":
        loss_ = loss_ + 0.5 * coef * (batch.logp - batch.logp_old.detach()) ** 2
    elif reg == "fkl":
        loss_ = loss_ - coef * batch.logp
    elif reg != "none":
        raise ValueError(f"reg must be one of none, k2, fkl; got {reg!r}")
    return aggregate(loss_, batch, agg), (1 - m if clip != "none" else None)


@loss(ranges={"tau_pos": at_least(0, strict=True), "tau_neg": at_least(0, strict=True)}, per_sample=lambda p: True)
def sapo(batch: Batch, a: Tensor, tau_pos: Any = 1.0, tau_neg: Any = 1.05, agg: str = "token-mean") -> tuple:
    """Soft Adaptive Policy Optimization (SAPO, arXiv 2511.20347, eqs. 5–6): a smooth gate in place of the clip.

        ℓ = −(4/τ) σ(τ (ρ − 1)) A,   τ = τ_pos where A > 0, τ_neg otherwise;   ρ per token, differentiable
    ∂ℓ/∂log π = −4 σ(1 − σ) ρ A: exactly REINFORCE's −A at ρ = 1, decaying smoothly as ρ leaves 1 (faster for
    negatives, τ_neg > τ_pos). Nothing is cut, so no clip mask.
    """
    a = _per_token(a, batch)
    rho = ratio(batch, "token", differentiable=True)
    tau = torch.where(a > 0, torch.as_tensor(tau_pos, dtype=rho.dtype, device=rho.device),
                      torch.as_tensor(tau_neg, dtype=rho.dtype, device=rho.device))
    return aggregate(-(4 / tau) * torch.sigmoid(tau * (rho - 1)) * a, batch, agg), None


@loss(ranges={"eps_low": at_least(0), "eps_high": at_least(0)}, per_sample=lambda p: True)
def gmpo(batch: Batch, a: Tensor, eps_low: Any = 0.4, eps_high: Any = 0.4,
         agg: str = "seq-mean-token-mean") -> tuple:
    """Geometric-Mean Policy Optimization (GMPO, arXiv 2507.20673, eq. 4): the geometric mean of clipped token
    ratios, clipped in log space on the side that A's sign would exploit.

        ℓ_i = −A_i · exp( (1/|y_i|) Σ_t sgn(A_i) · min(sgn(A_i) Δ_t, sgn(A_i) clip(Δ_t, −ε_low, ε_high)) ),
        Δ_t = log π_t − log μ_t (differentiable)
    Every token of sequence i carries ℓ_i, so aggregation "seq-mean-token-mean" gives verl's mean over sequences.
    """
    a = _per_token(a, batch)
    d = batch.logp - batch.logp_old.detach()
    dc = d.clamp(-torch.as_tensor(eps_low, dtype=d.dtype), torch.as_tensor(eps_high, dtype=d.dtype))
    s = torch.sign(a)
    d_min = s * torch.minimum(s * d, s * dc)
    if batch.tokens:
        m = batch.mask.to(d.dtype)
        d_min = ((d_min * m).sum(-1, keepdim=True) / m.sum(-1, keepdim=True).clamp_min(1)).expand_as(d)
    return aggregate(-a * safe_exp(d_min), batch, agg), (d.detach() != dc.detach()).to(d.dtype)


def m2po_mask(log_ratio: Tensor, a: Tensor, valid: Tensor, w: Tensor, threshold: Any, lead: int) -> Tensor:
    """M2PO's token mask (arXiv 2510.01161, Algorithm 1): among the tokens where PPO's clip would act (A > 0 and
    log ρ > 0, or A < 0 and log ρ < 0), drop those with the largest (log ρ)² until the (weighted) mean second
    moment of the rest is at most τ. All arguments shaped like log ρ; the first `lead` dimensions are independent
    runs, each masked over all of its tokens. Returns 1 = kept."""
    shape = log_ratio.shape
    flat = lambda x: x.reshape(*shape[:lead], -1)
    trust = valid & (((a > 0) & (log_ratio > 0)) | ((a < 0) & (log_ratio < 0)))
    m2, tr, wt = flat(log_ratio ** 2), flat(trust), flat(w)
    order = torch.where(tr, m2, torch.full_like(m2, INF)).argsort(dim=-1, stable=True)
    tr_s = tr.gather(-1, order)
    ws = (wt * tr).gather(-1, order)
    prefix = (ws * m2.gather(-1, order)).cumsum(-1) / ws.cumsum(-1).clamp_min(1e-300)
    keep = torch.empty_like(tr_s).scatter_(-1, order, (prefix <= threshold) | ~tr_s)
    return keep.reshape(shape).to(log_ratio.dtype)


@loss(ranges={"m2_threshold": at_least(0)}, scope="batch")
def m2po(batch: Batch, a: Tensor, m2_threshold: Any = 0.04, agg: str = "token-mean") -> tuple:
    """Second-Moment Trust Policy Optimization (M2PO, arXiv 2510.01161, eq. 7 with Algorithm 1's mask M):

        ℓ = −M · ρ · A,   ρ per token (differentiable),   M from `m2po_mask` over the whole batch
    The mask bounds the batch's mean (log ρ)² by τ instead of each ratio, so stale data keeps most tokens. It is
    computed over the Batch given (scope "batch"): the LLM trainer refuses micro-batches smaller than the batch.
    """
    a = _per_token(a, batch)
    rho = ratio(batch, "token", differentiable=True)
    d = (batch.logp - batch.logp_old).detach()
    valid = batch.mask.bool() if batch.tokens else torch.ones_like(d, dtype=torch.bool)
    w = batch.weight if batch.weight is not None else torch.ones(d.shape[:-1] if batch.tokens else d.shape,
                                                                 dtype=d.dtype, device=d.device)
    lead = d.dim() - (2 if batch.tokens else 1)
    keep = m2po_mask(d, a.expand_as(d), valid.expand_as(d), _per_token(w, batch).expand_as(d), m2_threshold, lead)
    return aggregate(-keep * rho * a, batch, agg), 1 - keep


def _positive_rows(batch: Batch, p: dict) -> Tensor | None:
    """SFT's norm="positive": only the positive samples count, in the loss and its denominators."""
    if p["norm"] != "positive":
        return None
    shape = batch.logp.shape[:-1] if batch.tokens else batch.logp.shape
    return (batch.reward > p["threshold"]).to(batch.logp.dtype).expand(shape)


@loss(linear=lambda p: True, rows=_positive_rows, per_sample=lambda p: p["norm"] == "all",
      choices={"norm": ("all", "positive")})
def sft(batch: Batch, threshold: Any = 0.0, norm: str = "all", agg: str = "token-mean") -> tuple:
    """Supervised fine-tuning on the positive samples only (rejection-sampling SFT).

        ℓ = −1[r > threshold] · log π(y)
    norm "all" (default): averaged over all samples, negatives contributing zero, the gradient of the expected
    objective E_μ[1[r > t] log π] that the bandit's exact mode integrates · "positive": averaged over the
    positive samples' tokens only (Trinity-RFT's sft loss; ordinary SFT on the accepted samples).
    """
    pos = (batch.reward > threshold).to(batch.logp.dtype)
    pos = pos.expand(batch.logp.shape[:-1] if batch.tokens else batch.logp.shape)
    return aggregate(-_per_token(pos, batch) * batch.logp, batch, agg), None
