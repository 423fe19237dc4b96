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
              it (whole groups), so that the accumulated micro-batch losses equal the full-batch loss exactly

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


def advantage_args(p: dict) -> dict:
    """The advantage settings among an objective's parameters."""
    names = ("baseline", "offset", "std_norm", "red_drop", "std", "std_eps", "singleton", "ties")
    return {k: p[k] for k in names if k in p}


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


def batch_totals(batch: Batch, objective: "Objective") -> dict:
    """The denominators of `aggregate` over a whole batch, {"tokens": Σ w m, "seqs": Σ w}, to hand to each of its
    micro-batches (`Batch.totals`). Row weights are the objective's own (SFT with norm="positive" counts only
    the positive rows), so a micro-batched step equals the full-batch step for every aggregation."""
    n = batch.logp.shape[-2] if batch.tokens else batch.logp.shape[-1]
    w = batch.weight if batch.weight is not None else torch.ones(n, dtype=batch.logp.dtype, device=batch.logp.device)
    if objective.fn is sft and objective.params["norm"] == "positive":
        w = w * (batch.reward > objective.params["threshold"]).to(w.dtype)
    if not batch.tokens:
        return {"tokens": w.sum(-1), "seqs": w.sum(-1)}
    m = batch.mask.to(w.dtype)
    return {"tokens": (w.unsqueeze(-1) * m).sum((-1, -2)).clamp_min(1e-12), "seqs": w.sum(-1).clamp_min(1e-12)}


def _clip_window(rho: Tensor, lo: Any, hi: Any) -> Tensor:
    lo = torch.as_tensor(lo, dtype=rho.dtype, device=rho.device)
    hi = torch.as_tensor(hi, dtype=rho.dtype, device=rho.device)
    return torch.minimum(torch.maximum(rho, lo), hi)


# -------------------------------------------------------------------------------------------- objectives
# Every objective with a baseline takes the advantage settings of `advantage` (baseline, offset, std_norm, std,
# std_eps, singleton; red_drop and ties where RED-Drop applies) and an aggregation `agg` (see `aggregate`).

def reinforce(batch: Batch, baseline: str = "group", offset: Any = 0.0, std_norm: bool = False,
              red_drop: bool = False, std: str = "population", std_eps: Any = 1e-6, singleton: str = "self",
              ties: str = "neutral", agg: str = "token-mean") -> Tensor:
    """Off-policy REINFORCE, no importance ratio (naive when μ ≠ π).

        ℓ = −A · log π(y),   A = r − b        ∇J = E_μ[(r − b) ∇ log π(y)]

    AsymRE (arXiv 2506.20520, eq. 2) is this with b = V (absolute) or b = group mean + δV (its LLM version).
    """
    a = advantage(batch, baseline, offset, std_norm, red_drop, std, std_eps, singleton, ties)
    return aggregate(-_per_token(a, batch) * batch.logp, batch, agg)


def tapered(batch: Batch, a_pos: Any = 1.0, b_pos: Any = 1.0, a_neg: Any = 0.0, b_neg: Any = 1.0,
            ratio_level: str = "sequence", baseline: str = "none", offset: Any = 0.0, std_norm: bool = False,
            std: str = "population", std_eps: Any = 1e-6, singleton: str = "self", agg: str = "token-mean") -> Tensor:
    """Tapered off-policy REINFORCE (TOPR, arXiv 2503.14286, eq. 8) and the importance-sampling family.

        ℓ = −sg(clip(ρ, a±, b±)) · A · log π(y),   window [a+, b+] where A ≥ 0, [a−, b−] where A < 0

    It is the gradient of E_μ[T(ρ, a, b) A] since ∇T = clip(ρ, a, b) ∇ log π. Canonical TOPR: [1,1]/[0,1];
    full IS: [0,∞]/[0,∞]; truncated IS: [0,1]/[0,1] (the TOPR paper's; Trinity-RFT's "truncated IS" is
    [0.4, 3]/[0.4, 3]); naive REINFORCE: [1,1]/[1,1]. TOPR uses no baseline (rewards ±1); with a baseline c
    the split is on the sign of A = r − c. ratio_level "sequence" (default) is the paper's trajectory ratio
    Π_t π/μ; Trinity-RFT's TOPR and IS use per-token ratios (ratio_level="token").
    """
    a = _per_token(advantage(batch, baseline, offset, std_norm, False, std, std_eps, singleton), batch)
    rho = ratio(batch, ratio_level)
    w = torch.where(a >= 0, _clip_window(rho, a_pos, b_pos), _clip_window(rho, a_neg, b_neg))
    return aggregate(-w * a * batch.logp, batch, agg)


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


def ppo(batch: Batch, eps_low: Any = 0.2, eps_high: Any = 0.2, dual_clip: Any = None, ratio_level: str = "token",
        baseline: str = "group", offset: Any = 0.0, std_norm: bool = False, std: str = "population",
        std_eps: Any = 1e-6, singleton: str = "self", agg: str = "token-mean") -> Tensor:
    """PPO's clipped surrogate with a group-mean advantage (GRPO when std_norm, arXiv 2402.03300).

        ℓ = −min(ρ A, clip(ρ, 1 − ε_low, 1 + ε_high) A),   ρ = exp(log π − log μ) differentiable
    dual_clip c (None by default, as in the PPO and GRPO papers; verl uses c = 3): where A < 0 the loss is
    also capped at −c A, i.e. ℓ = min(ℓ, −c A) (Ye et al. 2020), which bounds the push-down of a token whose
    ratio has already grown past c.
    """
    a = _per_token(advantage(batch, baseline, offset, std_norm, False, std, std_eps, singleton), batch)
    rho = ratio(batch, ratio_level, differentiable=True)
    loss = -torch.minimum(rho * a, _clip_window(rho, 1 - eps_low, 1 + eps_high) * a)
    if dual_clip is not None:
        c = torch.as_tensor(dual_clip, dtype=loss.dtype, device=loss.device)
        loss = torch.where(a < 0, torch.minimum(loss, -c * a), loss)
    return aggregate(loss, batch, agg)


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


def rec(batch: Batch, clip: str = "one-side", weight: str = "none", reg: str = "none", eps_low: Any = 0.2,
        eps_high: Any = 0.2, eps_low_ring: Any = 0.6, eps_high_ring: Any = 2.0, coef: Any = 0.1,
        temp: Any = 1.0, ratio_level: str = "token", baseline: str = "group", offset: Any = 0.0,
        std_norm: bool = False, red_drop: bool = False, std: str = "population", std_eps: Any = 1e-6,
        singleton: str = "self", ties: str = "neutral", agg: str = "token-mean") -> Tensor:
    """REINFORCE with clipping and regularisation (REC / REP, arXiv 2509.24203, §4).

        ℓ = −w · A' · M · log π(y)  +  reg
        M       clip mask (none / one-side / two-side / ring on ρ = π/μ, detached), see `rec_mask`
        w       1 ("none", NoIS) or sg(ρ) ("is")
        A'      A, or RED-Weight's A · exp(A / temp) (weight="red-weight")
        reg     "k2":  (coef/2)(log π − log μ)²  (OPMD, Kimi k1.5; the REC authors' Trinity-RFT configs write
                       coef · (log π − log μ)², so their coef c is our 2c)
                "fkl": −coef · log π             (AsymRE as REP: coef = β = −δV)
    one-side + IS + std_norm has the gradient of PPO-clip, i.e. GRPO.
    """
    a = _per_token(advantage(batch, baseline, offset, std_norm, red_drop, std, std_eps, singleton, ties), batch)
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
    loss = -w * a * m * batch.logp
    if reg == "k2":
        loss = loss + 0.5 * coef * (batch.logp - batch.logp_old.detach()) ** 2
    elif reg == "fkl":
        loss = loss - coef * batch.logp
    elif reg != "none":
        raise ValueError(f"reg must be one of none, k2, fkl; got {reg!r}")
    return aggregate(loss, batch, agg)


def sft(batch: Batch, threshold: Any = 0.0, norm: str = "all", agg: str = "token-mean") -> Tensor:
    """Supervised fine-tuning on the positive samples only (rejection-sampling SFT).

        ℓ = −1[r > threshold] · log π(y)
    norm "all" (default): averaged over all samples, negatives contributing zero, the gradient of the expected
    objective E_μ[1[r > t] log π] that the bandit's exact mode integrates · "positive": averaged over the
    positive samples' tokens only (Trinity-RFT's sft loss; ordinary SFT on the accepted samples).
    """
    if norm not in ("all", "positive"):
        raise ValueError(f"norm must be all or positive, got {norm!r}")
    pos = (batch.reward > threshold).to(batch.logp.dtype)
    pos = pos.expand(batch.logp.shape[:-1] if batch.tokens else batch.logp.shape)
    if norm == "positive":
        w = pos if batch.weight is None else batch.weight * pos
        return aggregate(-_per_token(pos, batch) * batch.logp, replace(batch, weight=w), agg)
    return aggregate(-_per_token(pos, batch) * batch.logp, batch, agg)


# ----------------------------------------------------------------------------------------------- registry
CHOICES = {"baseline": BASELINES, "agg": AGGREGATIONS, "ratio_level": RATIO_LEVELS, "std": STDS,
           "singleton": SINGLETONS, "ties": TIES, "clip": ("none", "one-side", "two-side", "ring"),
           "weight": ("none", "is", "red-weight"), "reg": ("none", "k2", "fkl"), "norm": ("all", "positive")}


@dataclass(frozen=True)
class Objective:
    """A registry entry: a loss function and the defaults that make it the named algorithm."""

    name: str
    fn: Callable[..., Tensor]
    defaults: dict
    summary: str

    @property
    def params(self) -> dict:
        sig = inspect.signature(self.fn)
        out = {k: p.default for k, p in sig.parameters.items() if k != "batch"}
        out.update(self.defaults)
        return out

    @property
    def linear_in_logp(self) -> bool:
        """True when ∂ℓ/∂log π does not depend on log π (no ratio, no k2 term): then, for a fixed batch of
        samples and weights, the gradient with respect to log π is a constant the simulator may reuse while the
        behaviour does not change. tests/test_simulate.py checks this against autograd for every objective."""
        p = self.params
        if self.fn in (reinforce, sft):
            return True
        if self.fn is rec:
            return p["clip"] == "none" and p["weight"] != "is" and p["reg"] != "k2"
        if self.fn is tapered:  # degenerate windows [a, a]: the weight is a constant, not a clipped ratio
            return p["a_pos"] == p["b_pos"] and p["a_neg"] == p["b_neg"]
        return False

    def with_params(self, **overrides) -> "Objective":
        unknown = sorted(set(overrides) - set(self.params))
        if unknown:
            raise ValueError(f"algorithm {self.name!r} has no parameter {unknown[0]!r} "
                             f"(it has: {', '.join(self.params)})")
        for k, v in overrides.items():
            if k in CHOICES and isinstance(v, str) and v not in CHOICES[k]:
                raise ValueError(f"{k} must be one of {', '.join(CHOICES[k])}; got {v!r}")
        return replace(self, defaults={**self.defaults, **overrides})

    def __call__(self, batch: Batch, **overrides) -> Tensor:
        return self.fn(batch, **{**self.defaults, **overrides})


def _entry(name: str, fn: Callable, summary: str, **defaults) -> Objective:
    return Objective(name, fn, defaults, summary)


OBJECTIVES: dict[str, Objective] = {o.name: o for o in [
    _entry("reinforce", reinforce, "REINFORCE, A = r − b, no ratio (naive off-policy)"),
    _entry("asymre", reinforce, "Asymmetric REINFORCE, A = r − (group mean + δV)", offset=-0.1),
    _entry("topr", tapered, "TOPR: ratio tapered to [1,1] on A ≥ 0, [0,1] on A < 0 (sequence ratio; "
           "Trinity-RFT: ratio_level=token)"),
    _entry("is", tapered, "full importance sampling, windows [0,∞]/[0,∞] (sequence ratio, capped: never inf)",
           a_pos=0.0, b_pos=float("inf"), a_neg=0.0, b_neg=float("inf"), baseline="group"),
    _entry("tis", tapered, "truncated IS as in the TOPR paper, clip(ρ, 0, 1); NOT Trinity-RFT's "
           "truncated_importance_sampling, clamp(ρ, 0.4, 3): set a_pos=a_neg=0.4, b_pos=b_neg=3",
           a_pos=0.0, b_pos=1.0, a_neg=0.0, b_neg=1.0, baseline="group"),
    _entry("ppo", ppo, "PPO clipped surrogate with group-mean advantage (verl adds dual_clip=3)"),
    _entry("grpo", ppo, "GRPO: PPO clip with group-std-normalised advantage (verl/TRL: std=unbiased)",
           std_norm=True),
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
]}


def get_objective(name: str, **overrides) -> Objective:
    """Look up a registry entry by name and apply parameter overrides (unknown names raise ValueError)."""
    if name not in OBJECTIVES:
        raise ValueError(f"unknown algorithm {name!r} (choose from: {', '.join(OBJECTIVES)})")
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
    """Build an objective from `--algo NAME --algo-arg key=value ...`."""
    obj = get_objective(name)
    overrides = {}
    for item in args:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep:
            raise ValueError(f"--algo-arg {item!r}: expected key=value")
        if key not in obj.params:
            raise ValueError(f"--algo-arg {key!r}: algorithm {name!r} has no such parameter "
                             f"(it has: {', '.join(obj.params)})")
        try:
            overrides[key] = parse_value(text.strip(), obj.params[key])
        except ValueError as err:
            raise ValueError(f"--algo-arg {key}: {err}") from None
    try:
        return obj.with_params(**overrides)
    except ValueError as err:
        raise ValueError(f"--algo-arg {err}") from None


def clip_fraction(batch: Batch, objective: Objective) -> Tensor:
    """Share of real tokens (or samples) whose gradient weight the objective clips, from the same mask functions:
    REC's clip mask (rec), PPO's active set = one-side mask (ppo, grpo), ρ outside the taper window [a±, b±]
    (tapered: TOPR's [1, 1] counts every ρ ≠ 1 on positives). Zero for objectives without clipping."""
    p = objective.params
    if objective.fn not in (rec, ppo, tapered):
        return torch.zeros((), device=batch.logp.device)
    a = _per_token(advantage(batch, **advantage_args(p)), batch)
    rho = ratio(batch, p["ratio_level"])
    if objective.fn is tapered:
        t = lambda x: torch.as_tensor(x, dtype=rho.dtype, device=rho.device)
        lo = torch.where(a >= 0, t(p["a_pos"]), t(p["a_neg"]))
        hi = torch.where(a >= 0, t(p["b_pos"]), t(p["b_neg"]))
        clipped = ((rho < lo) | (rho > hi)).to(rho.dtype)
    else:
        mode = p["clip"] if objective.fn is rec else "one-side"
        clipped = 1 - rec_mask(rho, a, mode, p["eps_low"], p["eps_high"], p.get("eps_low_ring", 0.6),
                               p.get("eps_high_ring", 2.0))
    m = batch.mask.to(rho.dtype) if batch.tokens else torch.ones_like(rho)
    return (clipped * m).sum() / m.sum().clamp_min(1)
