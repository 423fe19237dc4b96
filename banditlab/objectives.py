"""The objective registry: every off-policy REINFORCE loss of the three papers, written once.

Both the bandit simulator (`banditlab.simulate`) and the LLM trainer (`llm.train`) build a `Batch` and call
an objective from `OBJECTIVES`; no other file holds a policy-gradient formula.

Data contract (`Batch`):
    logp      log π(y)   differentiable; shape [..., N] (one action per sample) or [..., N, T] (tokens, with mask)
    logp_old  log μ(y)   behaviour log-probs, same shape as logp, never differentiated
    reward    r          [..., N] (or [N], broadcast over the leading "run" dimensions)
    group     [N] long   group ids (prompt / context); samples of one group share a baseline
    weight    [..., N]   optional sample weights; the exact bandit update passes probabilities μ(a)·P(r|a)
    mask      [..., N, T] token mask (1 = real token); absent for one-action samples
    v_mu      [..., N]   optional exact V^μ of each sample's group (known in the bandit, not in an LLM)
    totals    optional {"tokens", "seqs"}: the whole batch's denominators when this Batch is one micro-batch of
              it, so that the accumulated micro-batch losses equal the full-batch loss exactly
    logp_rollout  optional log-probs of the engine that sampled (vLLM); the behaviour-mismatch correction weighs
              by μ/μ_rollout and off-policy sequence masking measures drift from it (absent: logp_old)
    adv, rows optional advantage and row weights computed once over the whole batch by `prepare`; a micro-batch
              that splits groups carries its slice of them (group statistics cannot be computed from a slice)

Every objective returns a loss with the batch's leading shape (`[...]`, a scalar for an LLM batch):
minimising it by gradient descent follows the paper's estimator exactly. Leading dimensions are independent
runs: the simulator sums their losses so each run receives its own gradient.

Notation as in ../shared/PAPERS.md: A advantage, ρ = π/μ (detached unless stated), sg = stop-gradient.
Parameters may be floats or tensors broadcastable to [..., N] (one value per run), so a sweep over a
parameter is one vectorised call.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, replace
from typing import Any, Callable

import torch
from torch import Tensor

from .errors import UsageError

BASELINES = ("none", "group", "vmu", "absolute")
AGGREGATIONS = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm",
                "token-sum-norm")
RATIO_LEVELS = ("token", "sequence", "sequence-mean")


@dataclass
class Batch:
    logp: Tensor
    logp_old: Tensor
    reward: Tensor
    group: Tensor | None = None
    weight: Tensor | None = None
    mask: Tensor | None = None
    v_mu: Tensor | None = None
    generator: torch.Generator | None = None  # randomness for RED-Drop's random dropping
    totals: dict | None = None  # a micro-batch's full-batch denominators ("tokens", "seqs"), see `batch_totals`
    logp_rollout: Tensor | None = None  # the rollout engine's log-probs (TIS/MIS, OPSM); absent: logp_old
    adv: Tensor | None = None  # the advantage [..., N], computed once over the whole batch (see `prepare`)
    rows: Tensor | None = None  # the objective's row weights [..., N] over the whole batch (see `prepare`)

    @property
    def tokens(self) -> bool:
        return self.mask is not None


# ----------------------------------------------------------------------------------------------- helpers
def _per_token(x: Tensor, batch: Batch) -> Tensor:
    """Broadcast a per-sample quantity [..., N] to the shape of logp."""
    return x.unsqueeze(-1) if batch.tokens else x


def _group_matrix(batch: Batch, n: int, like: Tensor) -> Tensor:
    group = batch.group if batch.group is not None else torch.zeros(n, dtype=torch.long, device=like.device)
    return torch.nn.functional.one_hot(group, int(group.max()) + 1).to(like.dtype)  # [N, G]


def _group_mean(x: Tensor, w: Tensor, onehot: Tensor) -> Tensor:
    """Weighted mean of x over each sample's group, returned per sample: Σ_g w x / Σ_g w."""
    total = (w * x) @ onehot
    count = (w * torch.ones_like(x)) @ onehot
    return (total / count.clamp_min(torch.finfo(x.dtype).tiny)) @ onehot.T


def _red_drop_keep(r: Tensor, w: Tensor, onehot: Tensor, batch: Batch, ties: str = "neutral") -> Tensor:
    """RED-Drop (REC paper): where a group has more negatives (r < mean) than positives, drop random negatives
    until balanced. With probability weights (exact bandit mode) negatives keep the fraction n₊/n₋ of their
    weight, the expectation of random dropping; otherwise exactly n₋ − n₊ negatives are dropped at random."""
    mean = _group_mean(r, w, onehot)
    pos = (r >= mean if ties == "positive" else r > mean).to(r.dtype)
    neg = (r < mean).to(r.dtype)
    n_pos, n_neg = (w * pos) @ onehot @ onehot.T, (w * neg) @ onehot @ onehot.T
    excess = n_neg > n_pos
    if batch.weight is not None:
        frac = torch.where(excess, n_pos / n_neg.clamp_min(1e-300), torch.ones_like(n_pos))
        return torch.where(neg.bool(), frac, torch.ones_like(r))
    u = torch.rand(r.shape, generator=batch.generator, device=r.device, dtype=r.dtype)
    same = onehot @ onehot.T  # [N, N] same-group indicator
    # rank of each negative among the negatives of its group, by a random key
    rank = ((u.unsqueeze(-2) < u.unsqueeze(-1)) * same * neg.unsqueeze(-2)).sum(-1)
    drop = neg.bool() & excess & (rank >= n_pos)
    return (~drop).to(r.dtype)


STDS = ("population", "unbiased")
SINGLETONS = ("self", "reference")
TIES = ("neutral", "positive")


def advantage(batch: Batch, baseline: str = "group", offset: Any = 0.0, std_norm: bool = False,
              red_drop: bool = False, std: str = "population", std_eps: Any = 1e-6, singleton: str = "self",
              ties: str = "neutral") -> Tensor:
    """Per-sample advantage A = (r − b) / (σ_g + std_eps if std_norm), shape [..., N].

    baseline   "none": b = 0 · "absolute": b = offset (a fixed V) · "group": b = group mean + offset (AsymRE's
               δV; GRPO/REC with offset 0) · "vmu": b = V^μ(x) + offset, the behaviour's exact expected reward.
    With probability weights the group mean is Σ w r / Σ w, i.e. exactly V^μ in the bandit's exact mode.
    std        "population" (default): σ² = mean of (r − r̄)², the maximum-likelihood estimate and the only one
               that means anything for the exact mode's probability-weighted groups (it is σ of r under μ) ·
               "unbiased": σ² · n/(n − 1), Bessel's correction as in verl, Trinity-RFT and TRL (sampled data only).
    std_eps    added to σ (1e-6 as verl / Trinity; TRL uses 1e-4).
    singleton  a group with one sample: "self" (default) is its own baseline, b = r + offset and σ = 1, so A = −δV
               (no information about other samples, none invented) · "reference": mean 0 and σ = 1 as in verl and
               Trinity-RFT, so A = r − offset.
    red_drop   drop surplus negatives first (see `_red_drop_keep`); dropped samples get A = 0 and the mean
               is recomputed on the kept ones. ties: a sample at the group mean is "neutral" (default: neither
               positive nor negative, the REC paper's r > r̄ / r < r̄) or "positive" (Trinity-RFT: r ≥ r̄).
    """
    if baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}, got {baseline!r}")
    for name, value, allowed in (("std", std, STDS), ("singleton", singleton, SINGLETONS), ("ties", ties, TIES)):
        if value not in allowed:
            raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    r = batch.reward.to(batch.logp.dtype)
    n = r.shape[-1]
    lead = batch.logp.shape[:-1] if not batch.tokens else batch.logp.shape[:-2]
    r = r.expand(*lead, n)
    if baseline == "absolute":
        a = r - torch.as_tensor(offset, dtype=r.dtype, device=r.device)
    elif baseline == "vmu" and not (std_norm or red_drop):  # the bandit's fast path: no group statistics
        if batch.v_mu is None:
            raise ValueError("baseline='vmu' needs the batch's exact V^μ (only the bandit simulator knows it)")
        a = r - (batch.v_mu.to(r.dtype) + offset)
    elif baseline == "none":
        a = r
    else:
        a = None
    if a is not None and not (std_norm or red_drop):
        return a
    w = batch.weight if batch.weight is not None else torch.ones_like(r)
    onehot = _group_matrix(batch, n, r)
    # samples in each one's group: needed only by the singleton rules and Bessel's correction
    count = torch.ones(n, dtype=r.dtype, device=r.device) @ onehot @ onehot.T if (
        std_norm or singleton == "reference") else None
    alone = count == 1 if count is not None else None
    keep = _red_drop_keep(r, w, onehot, batch, ties) if red_drop else None
    wk = w * keep if red_drop else w
    gmean = _group_mean(r, wk, onehot)
    mean = torch.where(alone, torch.zeros_like(gmean), gmean) if singleton == "reference" else gmean
    if a is None:
        if baseline == "group":
            a = r - (mean + offset)
        else:
            if batch.v_mu is None:
                raise ValueError("baseline='vmu' needs the batch's exact V^μ (only the bandit simulator knows it)")
            a = r - (batch.v_mu.to(r.dtype) + offset)
    if std_norm:
        var = _group_mean((r - gmean) ** 2, wk, onehot)
        if std == "unbiased":
            if batch.weight is not None:
                raise ValueError("std='unbiased' needs sampled data: exact-mode groups are probability-weighted "
                                 "expectations, whose σ is the population one")
            kept = (keep @ onehot @ onehot.T) if red_drop else count
            var = var * kept / (kept - 1).clamp_min(1)
        sigma = torch.where(alone, torch.ones_like(var), var.sqrt())
        a = a / (sigma + torch.as_tensor(std_eps, dtype=r.dtype, device=r.device))
    return a * keep if red_drop else a


ADVANTAGE = {k: v.default for k, v in inspect.signature(advantage).parameters.items() if k != "batch"}


def advantage_args(p: dict) -> dict:
    """The advantage settings among an objective's parameters."""
    return {k: p[k] for k in ADVANTAGE if k in p}


MAX_LOG_RATIO = {torch.float64: 177.0, torch.float32: 22.0, torch.bfloat16: 22.0, torch.float16: 2.7}


def safe_exp(x: Tensor) -> Tensor:
    """exp(x) with x clamped above at log(finfo.max)/4 (ρ ≤ 3.6e9 in float32 / bfloat16, 1e77 in float64), so a
    ratio times an advantage times a log-prob, summed over any batch, stays finite. The cap is a truncation that
    only acts where an importance weight is already useless (a single sample would outweigh 10⁹ others)."""
    cap = MAX_LOG_RATIO.get(x.dtype, math.log(torch.finfo(x.dtype).max) / 4)
    return torch.exp(x.clamp(max=cap))


def ratio(batch: Batch, level: str = "token", differentiable: bool = False) -> Tensor:
    """Importance ratio ρ = π/μ in log space, shaped like logp (exponentiated by `safe_exp`: never inf).

    token: ρ_t = exp(log π_t − log μ_t) · sequence: exp(Σ_t (log π_t − log μ_t)) (the trajectory ratio of TOPR)
    · sequence-mean: exp(mean_t(...)) (length-normalised). One-action samples: all three are π(y)/μ(y).
    """
    if level not in RATIO_LEVELS:
        raise ValueError(f"ratio level must be one of {RATIO_LEVELS}, got {level!r}")
    logp = batch.logp if differentiable else batch.logp.detach()
    diff = logp - batch.logp_old.detach()
    if batch.tokens and level != "token":
        m = batch.mask.to(diff.dtype)
        s = (diff * m).sum(-1, keepdim=True)
        if level == "sequence-mean":
            s = s / m.sum(-1, keepdim=True).clamp_min(1)
        diff = s.expand_as(diff)
    return safe_exp(diff)


def aggregate(loss: Tensor, batch: Batch, mode: str = "token-mean") -> Tensor:
    """Reduce a per-sample [..., N] or per-token [..., N, T] loss to the leading shape.

    One-action samples: Σ_i w_i ℓ_i / Σ_i w_i (a plain mean without weights), so the exact mode's loss is
    the expectation E_μ[ℓ]. Tokens (mask m, weights w broadcast per sequence):
      token-mean               Σ_{i,t} w m ℓ / Σ_{i,t} w m        (DAPO; verl / Trinity "token-mean")
      seq-mean-token-mean      Σ_i w_i (Σ_t m ℓ / Σ_t m) / Σ_i w_i (GRPO paper; verl "seq-mean-token-mean")
      seq-mean-token-sum       Σ_i w_i Σ_t m ℓ / Σ_i w_i         (verl "seq-mean-token-sum")
      seq-mean-token-sum-norm  Σ_i w_i Σ_t m ℓ / (T Σ_i w_i)     (Dr. GRPO as in TRL's "dr_grpo": T = max length)
      token-sum-norm           Σ_i w_i Σ_t m ℓ / T               (verl's "seq-mean-token-sum-norm", which has
                                                                  no 1/N despite its name)
    With `batch.totals` (a micro-batch), Σ w m and Σ w are the whole batch's, so micro-batch losses add up to
    the full-batch loss for every mode.
    """
    w = batch.weight if batch.weight is not None else torch.ones(loss.shape[:-1] if batch.tokens else loss.shape,
                                                                  dtype=loss.dtype, device=loss.device)
    tot = batch.totals
    if not batch.tokens:
        if batch.weight is None and tot is None:
            return loss.mean(-1)
        w = w.expand_as(loss)
        return (w * loss).sum(-1) / (tot["seqs"] if tot else w.sum(-1).clamp_min(1e-12))
    if mode not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {mode!r}")
    m = batch.mask.to(loss.dtype)
    w = w.expand(loss.shape[:-1])
    if mode == "token-mean":
        wm = w.unsqueeze(-1) * m
        return (wm * loss).sum((-1, -2)) / (tot["tokens"] if tot else wm.sum((-1, -2)).clamp_min(1e-12))
    per_seq = (loss * m).sum(-1)
    if mode == "seq-mean-token-mean":
        per_seq = per_seq / m.sum(-1).clamp_min(1)
    elif mode in ("seq-mean-token-sum-norm", "token-sum-norm"):
        per_seq = per_seq / loss.shape[-1]
    if mode == "token-sum-norm":
        return (w * per_seq).sum(-1)
    return (w * per_seq).sum(-1) / (tot["seqs"] if tot else w.sum(-1).clamp_min(1e-12))


def _clip_window(rho: Tensor, lo: Any, hi: Any) -> Tensor:
    lo = torch.as_tensor(lo, dtype=rho.dtype, device=rho.device)
    hi = torch.as_tensor(hi, dtype=rho.dtype, device=rho.device)
    return torch.minimum(torch.maximum(rho, lo), hi)




def mismatch_weight(batch: Batch, mode: str = "none", level: str = "token", cap: Any = 2.0) -> Tensor | None:
    """The behaviour-mismatch correction between the engine that sampled and the trainer's behaviour log-probs
    (Yao et al. 2025, "Your efficient RL framework secretly brings you off-policy RL training", §2; verl's
    rollout correction, TRL's vllm_importance_sampling_mode), detached, shaped like logp:

        ρ_roll = exp(log μ − log μ_roll) per token ("token") or exp(Σ_t (log μ − log μ_roll)) per sequence
        TIS ("truncate"): w = min(ρ_roll, C)          MIS ("mask"): w = 1[ρ_roll ≤ C]
    Without `batch.logp_rollout` (the bandit: the behaviour is the sampler) ρ_roll = 1 and w = 1. None: no weight.
    """
    if mode == "none" or batch.logp_rollout is None:
        return None
    rho = ratio(replace(batch, logp=batch.logp_old, logp_old=batch.logp_rollout), level)
    c = torch.as_tensor(cap, dtype=rho.dtype, device=rho.device)
    return torch.minimum(rho, c) if mode == "truncate" else (rho <= c).to(rho.dtype)


def _group_spread(batch: Batch, p: dict) -> Tensor | None:
    """DAPO's dynamic sampling (arXiv 2503.14476, eq. 11: 0 < |{correct}| < G) as row weights: 1 for the samples
    of groups whose rewards are not all equal, 0 for the others, so those leave the loss and its denominators
    as if they had been filtered out of the batch. None when dynamic sampling is off."""
    if not p.get("dynamic_sampling"):
        return None
    r = batch.reward.to(batch.logp.dtype)
    n = r.shape[-1]
    r = r.expand(*(batch.logp.shape[:-2] if batch.tokens else batch.logp.shape[:-1]), n)
    w = batch.weight if batch.weight is not None else torch.ones_like(r)
    onehot = _group_matrix(batch, n, r)
    var = _group_mean((r - _group_mean(r, w, onehot)) ** 2, w, onehot)
    return (var > 1e-12).to(r.dtype)


# -------------------------------------------------------------------------------------------- objectives
# An objective is `fn(batch, a, <its own parameters>, agg)` → (loss, clipped): `a` the per-sample advantage of
# `advantage` (computed by the registry, once; objectives without a baseline take no `a`), `clipped` a 0/1 tensor
# shaped like logp marking the tokens whose gradient the objective cuts or bounds (None: it never clips). The
# `loss` decorator declares, beside the function, its parameters' ranges, cross-checks, whether it is linear in
# log π, and any row weights its group rule sets.
INF = math.inf


def at_least(lo: float, strict: bool = False) -> tuple:
    return (lo, INF, strict, False)


def between(lo: float, hi: float) -> tuple:
    return (lo, hi, False, False)


def loss(linear: Callable[[dict], bool] = lambda p: False, rows: Callable | None = None,
         ranges: dict | None = None, checks: tuple = ()) -> Callable:
    """Declare an objective function's properties (see the comment above)."""
    def deco(fn):
        sig = inspect.signature(fn).parameters
        fn.uses_advantage = "a" in sig
        fn.own = {k: v.default for k, v in sig.items() if k not in ("batch", "a")}
        fn.linear, fn.rows, fn.ranges, fn.checks = linear, rows, ranges or {}, checks
        return fn
    return deco


@loss(linear=lambda p: True)
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
      ranges={"a_pos": at_least(0), "b_pos": at_least(0), "a_neg": at_least(0), "b_neg": at_least(0)},
      checks=(("a_pos <= b_pos", lambda p: p["a_pos"] <= p["b_pos"]),
              ("a_neg <= b_neg", lambda p: p["a_neg"] <= p["b_neg"])))
def tapered(batch: Batch, a: Tensor, a_pos: Any = 1.0, b_pos: Any = 1.0, a_neg: Any = 0.0, b_neg: Any = 1.0,
            ratio_level: str = "sequence", agg: str = "token-mean") -> tuple:
    """Tapered off-policy REINFORCE (TOPR, arXiv 2503.14286, eq. 8) and the clipped-IS-weight family.

        ℓ = −sg(clip(ρ, a±, b±)) · A · log π(y),   window [a+, b+] where A ≥ 0, [a−, b−] where A < 0

    It is the gradient of E_μ[T(ρ, a, b) A] since ∇T = clip(ρ, a, b) ∇ log π. Canonical TOPR: [1,1]/[0,1];
    full IS: [0,∞]/[0,∞]; truncated IS: [0,1]/[0,1] (the TOPR paper's; Trinity-RFT's "truncated IS" is
    [0.4, 3]/[0.4, 3]); naive REINFORCE: [1,1]/[1,1]; CISPO (MiniMax-M1, arXiv 2506.13585, eq. 4):
    [1 − ε_low, 1 + ε_high] on both signs with per-token ratios. TOPR uses no baseline (rewards ±1); with a
    baseline c the split is on the sign of A = r − c. ratio_level "sequence" is the paper's trajectory ratio
    Π_t π/μ; Trinity-RFT's TOPR and IS use per-token ratios (ratio_level="token").
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
      rows=_group_spread)
def ppo(batch: Batch, a: Tensor, eps_low: Any = 0.2, eps_high: Any = 0.2, dual_clip: Any = None,
        ratio_level: str = "token", dynamic_sampling: bool = False, opsm_delta: Any = None, mismatch: str = "none",
        mismatch_level: str = "token", mismatch_cap: Any = 2.0, agg: str = "token-mean") -> tuple:
    """PPO's clipped surrogate with a group-mean advantage (GRPO when std_norm, arXiv 2402.03300, eq. 3).

        ℓ = −min(ρ A, clip(ρ, 1 − ε_low, 1 + ε_high) A),   ρ = exp(log π − log μ) differentiable
    Settings that make the later methods:
      eps_high > eps_low       DAPO's clip-higher (arXiv 2503.14476, eq. 10: ε_low = 0.2, ε_high = 0.28)
      dynamic_sampling         DAPO's dynamic sampling: groups whose rewards are all equal leave the batch
      ratio_level              "sequence-mean": GSPO (arXiv 2507.18071, eq. 7), s = (π(y)/μ(y))^{1/|y|}
      dual_clip c              where A < 0 the loss is also capped at −c A (Ye et al. 2020; verl uses c = 3)
      opsm_delta δ             off-policy sequence masking (DeepSeek-V3.2, eq. 9; see `_sequence_mask`)
      mismatch                 "truncate" (TIS) or "mask" (MIS) by the engine mismatch (see `mismatch_weight`)
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


@loss(linear=lambda p: p["clip"] == "none" and p["weight"] != "is" and p["reg"] != "k2",
      ranges={"eps_low": between(0, 1), "eps_high": at_least(0), "eps_low_ring": between(0, 1),
              "eps_high_ring": at_least(0), "coef": at_least(0), "temp": at_least(0, strict=True)},
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


@loss(ranges={"tau_pos": at_least(0, strict=True), "tau_neg": at_least(0, strict=True)})
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


@loss(ranges={"eps_low": at_least(0), "eps_high": at_least(0)})
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


@loss(ranges={"m2_threshold": at_least(0)})
def m2po(batch: Batch, a: Tensor, m2_threshold: Any = 0.04, agg: str = "token-mean") -> tuple:
    """Second-Moment Trust Policy Optimization (M2PO, arXiv 2510.01161, eq. 7 with Algorithm 1's mask M):

        ℓ = −M · ρ · A,   ρ per token (differentiable),   M from `m2po_mask` over the whole batch
    The mask bounds the batch's mean (log ρ)² by τ instead of each ratio, so stale data keeps most tokens. It is
    computed over the Batch given: a micro-batched step equals the full-batch step only with whole batches.
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


@loss(linear=lambda p: True, rows=_positive_rows)
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


# ----------------------------------------------------------------------------------------------- registry
CHOICES = {"baseline": BASELINES, "agg": AGGREGATIONS, "ratio_level": RATIO_LEVELS, "std": STDS,
           "singleton": SINGLETONS, "ties": TIES, "clip": ("none", "one-side", "two-side", "ring"),
           "weight": ("none", "is", "red-weight"), "reg": ("none", "k2", "fkl"), "norm": ("all", "positive"),
           "mismatch": ("none", "truncate", "mask"), "mismatch_level": ("token", "sequence")}
ADVANTAGE_RANGES = {"offset": between(-1e6, 1e6), "std_eps": at_least(0)}


class ObjectiveError(UsageError, ValueError):
    """A bad algorithm name or parameter: a one-line UsageError (exit 2) that callers may also catch as ValueError."""


def _range_error(name: str, value: Any, rng: tuple) -> str | None:
    lo, hi, lo_open, hi_open = rng
    if value is None:
        return None
    bad = value != value or value < lo or value > hi or (lo_open and value == lo) or (hi_open and value == hi)
    if not bad:
        return None
    text = (f"> {lo:g}" if lo_open else f">= {lo:g}") if hi == INF else f"in [{lo:g}, {hi:g}]"
    return f"{name} must be {text}, got {value!r}"


@dataclass(frozen=True)
class Objective:
    """A registry entry: a loss function and the defaults that make it the named algorithm."""

    name: str
    fn: Callable[..., tuple]
    defaults: dict
    summary: str

    @property
    def params(self) -> dict:
        own = dict(self.fn.own)
        agg = own.pop("agg", None)
        out = {**own, **(ADVANTAGE if self.fn.uses_advantage else {})}
        if agg is not None:
            out["agg"] = agg
        out.update(self.defaults)
        return out

    @property
    def linear_in_logp(self) -> bool:
        """True when ∂ℓ/∂log π does not depend on log π (no ratio, no k2 term): then, for a fixed batch of
        samples and weights, the gradient with respect to log π is a constant the simulator may reuse while the
        behaviour does not change. Each function declares it (`loss(linear=...)`); tests/test_simulate.py checks
        the declaration against autograd for every registry entry."""
        return bool(self.fn.linear(self.params))

    def check(self, p: dict) -> None:
        """Every parameter's declared range and cross-check (see `loss`); raises ObjectiveError naming the first bad one."""
        ranges = {**(ADVANTAGE_RANGES if self.fn.uses_advantage else {}), **self.fn.ranges}
        for k, v in p.items():
            default = self.params[k]
            if k in CHOICES and v not in CHOICES[k]:
                raise ObjectiveError(f"{k} must be one of {', '.join(CHOICES[k])}; got {v!r}")
            if isinstance(default, bool) and not isinstance(v, bool):
                raise ObjectiveError(f"{k} must be true or false, got {v!r}")
            if (isinstance(default, (int, float)) and not isinstance(default, bool)) or default is None:
                if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                    raise ObjectiveError(f"{k} must be a number, got {v!r}")
            err = _range_error(k, v, ranges[k]) if k in ranges else None
            if err:
                raise ObjectiveError(err)
        for text, ok in self.fn.checks:
            if not ok(p):
                raise ObjectiveError(f"{text} is required, got " + ", ".join(
                    f"{k}={p[k]!r}" for k in p if k in text))

    def with_params(self, **overrides) -> "Objective":
        unknown = sorted(set(overrides) - set(self.params))
        if unknown:
            raise ObjectiveError(f"algorithm {self.name!r} has no parameter {unknown[0]!r} "
                                 f"(it has: {', '.join(self.params)})")
        out = replace(self, defaults={**self.defaults, **overrides})
        out.check(out.params)
        return out

    def evaluate(self, batch: Batch, **overrides) -> tuple[Tensor, Tensor | None]:
        """(loss, clip mask) on a batch; overrides may be tensors broadcastable to [..., N] (one value per run).
        The advantage and row weights are the batch's own (`prepare`) where present, else computed here."""
        p = {**self.defaults, **overrides}
        fn = self.fn
        if batch.rows is not None or fn.rows is not None:
            rows = batch.rows if batch.rows is not None else fn.rows(batch, {**self.params, **overrides})
            if rows is not None:
                batch = replace(batch, weight=rows if batch.weight is None else batch.weight * rows)
        own = {k: v for k, v in p.items() if k in fn.own}
        if not fn.uses_advantage:
            return fn(batch, **own)
        a = batch.adv if batch.adv is not None else advantage(batch, **{k: v for k, v in p.items() if k in ADVANTAGE})
        return fn(batch, a, **own)

    def __call__(self, batch: Batch, **overrides) -> Tensor:
        return self.evaluate(batch, **overrides)[0]


def _entry(name: str, fn: Callable, summary: str, **defaults) -> Objective:
    return Objective(name, fn, defaults, summary)


GRPO_STD = {"std_norm": True}
OBJECTIVES: dict[str, Objective] = {o.name: o for o in [
    _entry("reinforce", reinforce, "REINFORCE, A = r − b, no ratio (naive off-policy)"),
    _entry("asymre", reinforce, "Asymmetric REINFORCE, A = r − (group mean + δV)", offset=-0.1),
    _entry("topr", tapered, "TOPR: ratio tapered to [1,1] on A ≥ 0, [0,1] on A < 0 (sequence ratio; "
           "Trinity-RFT: ratio_level=token)", baseline="none"),
    _entry("is", tapered, "full importance sampling, windows [0,∞]/[0,∞] (sequence ratio, capped: never inf)",
           a_pos=0.0, b_pos=INF, a_neg=0.0, b_neg=INF),
    _entry("tis", tapered, "truncated IS as in the TOPR paper, clip(ρ, 0, 1); NOT Trinity-RFT's "
           "truncated_importance_sampling, clamp(ρ, 0.4, 3): set a_pos=a_neg=0.4, b_pos=b_neg=3",
           a_pos=0.0, b_pos=1.0, a_neg=0.0, b_neg=1.0),
    _entry("ppo", ppo, "PPO clipped surrogate with group-mean advantage (verl adds dual_clip=3)"),
    _entry("grpo", ppo, "GRPO: PPO clip with group-std-normalised advantage (verl/TRL: std=unbiased)", **GRPO_STD),
    _entry("rec", rec, "REC: REINFORCE with token clipping (one-side by default)"),
    _entry("rec-ring", rec, "REC with ring clipping", clip="ring"),
    _entry("red-drop", rec, "RED-Drop: balance negatives per group, no clip (Trinity-RFT: ties=positive)",
           clip="none", red_drop=True),
    _entry("red-weight", rec, "RED-Weight: A·exp(A/temp), no clip", clip="none", weight="red-weight"),
    _entry("opmd", rec, "OPMD as in the REC paper: REINFORCE + (coef/2)(log π − log μ)²; the REC authors' "
           "Trinity-RFT config coef c = our 2c, and Trinity-RFT's algorithm named 'opmd' is a different loss",
           clip="none", reg="k2"),
    _entry("rep-asymre", rec, "AsymRE as REP: REINFORCE − β log π", clip="none", reg="fkl"),
    _entry("sft", sft, "SFT on positive samples only (Trinity-RFT's sft loss: norm=positive)"),
    _entry("dapo", ppo, "DAPO: GRPO with clip-higher ε_high = 0.28 and dynamic sampling (drop all-equal groups)",
           eps_high=0.28, dynamic_sampling=True, **GRPO_STD),
    _entry("gspo", ppo, "GSPO: PPO clip on the length-normalised sequence ratio (π/μ)^{1/|y|}, ε = 3e-4 / 4e-4",
           ratio_level="sequence-mean", eps_low=3e-4, eps_high=4e-4, agg="seq-mean-token-mean", **GRPO_STD),
    _entry("cispo", tapered, "CISPO: REINFORCE × sg(clip(ρ, 0, 5)) per token (TRL ε_max = 5)",
           a_pos=0.0, b_pos=5.0, a_neg=0.0, b_neg=5.0, ratio_level="token", **GRPO_STD),
    _entry("sapo", sapo, "SAPO: soft sigmoid gate (4/τ)σ(τ(ρ − 1)) in place of the clip, τ = 1 / 1.05",
           agg="seq-mean-token-mean", **GRPO_STD),
    _entry("gmpo", gmpo, "GMPO: geometric mean of log-space-clipped token ratios, ε = 0.4", **GRPO_STD),
    _entry("m2po", m2po, "M2PO: mask the largest (log ρ)² until the batch's mean is ≤ 0.04", **GRPO_STD),
    _entry("grpo-opsm", ppo, "GRPO + off-policy sequence masking (DeepSeek-V3.2): drop A < 0 sequences with "
           "mean log(μ/π) > δ = 0.5", opsm_delta=0.5, **GRPO_STD),
    _entry("grpo-tis", ppo, "GRPO × engine-mismatch TIS min(μ/μ_roll, 2) per token (mismatch_level=sequence)",
           mismatch="truncate", **GRPO_STD),
    _entry("grpo-mis", ppo, "GRPO × engine-mismatch MIS 1[μ/μ_roll ≤ 2] per token (mismatch_level=sequence)",
           mismatch="mask", **GRPO_STD),
]}


def get_objective(name: str, **overrides) -> Objective:
    """Look up a registry entry by name and apply parameter overrides (unknown names raise ObjectiveError)."""
    if name not in OBJECTIVES:
        raise ObjectiveError(f"unknown algorithm {name!r} (choose from: {', '.join(OBJECTIVES)})")
    return OBJECTIVES[name].with_params(**overrides)


def parse_value(text: str, default: Any) -> Any:
    """Parse a CLI value to the type of the parameter's default ('inf' allowed for floats; 'none' or a number
    where the default is None)."""
    if default is None:
        if text.lower() == "none":
            return None
        default = 0.0
    if isinstance(default, bool):
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected true/false, got {text!r}")
    if isinstance(default, (int, float)):
        value = float(text)
        if value != value:
            raise ValueError("NaN is not a valid value")
        return value
    return text


def parse_algo_args(name: str, args: list[str]) -> Objective:
    """Build an objective from `--algo NAME --algo-arg key=value ...`: unknown or repeated keys, unparsable
    values and values outside a parameter's declared range are refused (ObjectiveError, one line)."""
    obj = get_objective(name)
    overrides = {}
    for item in args:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep:
            raise ObjectiveError(f"--algo-arg {item!r}: expected key=value")
        if key not in obj.params:
            raise ObjectiveError(f"--algo-arg {key!r}: algorithm {name!r} has no such parameter "
                                 f"(it has: {', '.join(obj.params)})")
        if key in overrides:
            raise ObjectiveError(f"--algo-arg {key}: given twice")
        try:
            overrides[key] = parse_value(text.strip(), obj.params[key])
        except ValueError as err:
            raise ObjectiveError(f"--algo-arg {key}: {err}") from None
    try:
        return obj.with_params(**overrides)
    except ObjectiveError as err:
        raise ObjectiveError(f"--algo-arg {err}") from None


# ------------------------------------------------------------------------------------ whole batch, micro-batches
def prepare(batch: Batch, objective: Objective) -> Batch:
    """The batch with everything that needs whole groups computed once: the advantage (`adv`, RED-Drop's random
    drops included), the objective's row weights (`rows`) and the denominators (`totals`). Slices of it
    (`select`) are micro-batches whose accumulated losses equal the full-batch loss, whatever groups they split."""
    p = objective.params
    adv = advantage(batch, **advantage_args(p)) if objective.fn.uses_advantage else None
    rows = objective.fn.rows(batch, p) if objective.fn.rows is not None else None
    out = replace(batch, adv=adv, rows=rows)
    return replace(out, totals=batch_totals(out, objective))


def select(batch: Batch, idx: Tensor) -> Batch:
    """Samples `idx` of a batch (shaped [N] or [N, T], no leading run dimensions), every per-sample field sliced."""
    pick = lambda x: None if x is None else x[idx]
    return replace(batch, logp=batch.logp[idx], logp_old=batch.logp_old[idx], reward=pick(batch.reward),
                   group=pick(batch.group), weight=pick(batch.weight), mask=pick(batch.mask), v_mu=pick(batch.v_mu),
                   logp_rollout=pick(batch.logp_rollout), adv=pick(batch.adv), rows=pick(batch.rows))


def batch_totals(batch: Batch, objective: Objective) -> dict:
    """The denominators of `aggregate` over a whole batch, {"tokens": Σ w m, "seqs": Σ w}, to hand to each of its
    micro-batches (`Batch.totals`). Row weights include the objective's own (`loss(rows=...)`: SFT's positive
    rows, DAPO's dynamic sampling), so a micro-batched step equals the full-batch step for every aggregation."""
    n = batch.logp.shape[-2] if batch.tokens else batch.logp.shape[-1]
    w = batch.weight if batch.weight is not None else torch.ones(n, dtype=batch.logp.dtype, device=batch.logp.device)
    rows = batch.rows if batch.rows is not None else (
        objective.fn.rows(batch, objective.params) if objective.fn.rows is not None else None)
    if rows is not None:
        w = w * rows
    if not batch.tokens:
        return {"tokens": w.sum(-1), "seqs": w.sum(-1)}
    m = batch.mask.to(w.dtype)
    return {"tokens": (w.unsqueeze(-1) * m).sum((-1, -2)).clamp_min(1e-12), "seqs": w.sum(-1).clamp_min(1e-12)}


def clip_fraction(batch: Batch, objective: Objective) -> Tensor:
    """Share of real tokens (or samples) whose gradient weight the objective clips, from the objective's own clip
    mask (PPO's active set, REC's mask, ρ outside TOPR's window, ...). Zero for objectives that never clip."""
    with torch.no_grad():
        _, clipped = objective.evaluate(replace(batch, logp=batch.logp.detach()))
    if clipped is None:
        return torch.zeros((), device=batch.logp.device)
    m = batch.mask.to(clipped.dtype) if batch.tokens else torch.ones_like(clipped)
    return (clipped * m).sum() / m.sum().clamp_min(1)
