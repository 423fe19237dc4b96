"""What every objective shares: the `Batch` data contract, the advantage, importance ratios and aggregation.

The objectives themselves are in `banditlab.registry.losses`, their registry in `banditlab.registry.objectives` (which re-exports
everything here); see that module's docstring for the data contract's fields.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, replace
from typing import Any

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
      seq-mean-token-sum-norm  Σ_i w_i Σ_t m ℓ / (T Σ_i w_i)     (Dr. GRPO as in TRL's "dr_grpo": T = max length;
                                                                  verl "seq-mean-token-sum-norm")
      token-sum-norm           Σ_i w_i Σ_t m ℓ / T               (Trinity-RFT's "seq-mean-token-sum-norm", which
                                                                  has no 1/N despite its name)
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
        "masked-is": w = ρ_roll · 1[ρ_roll ≤ C]       (TRL's *_mask modes, which keep the ratio where it passes)
    Without `batch.logp_rollout` (the bandit: the behaviour is the sampler) ρ_roll = 1 and w = 1. None: no weight.
    """
    if mode == "none" or batch.logp_rollout is None:
        return None
    rho = ratio(replace(batch, logp=batch.logp_old, logp_old=batch.logp_rollout), level)
    c = torch.as_tensor(cap, dtype=rho.dtype, device=rho.device)
    if mode == "truncate":
        return torch.minimum(rho, c)
    return (rho <= c).to(rho.dtype) * (rho if mode == "masked-is" else 1)


def _group_spread(batch: Batch, p: dict) -> Tensor | None:
    """DAPO's dynamic sampling (arXiv 2503.14476, eq. 11: 0 < |{correct}| < G) as row weights: 1 for the samples
    of groups whose rewards are not all equal, 0 for the others, so those leave the loss and its denominators
    as if they had been filtered out of the batch. A one-sample group has all its rewards equal and is dropped,
    unless `dynamic_sampling_singletons` is "keep" (verl's filter_groups keeps it). None when dynamic sampling
    is off."""
    if not p.get("dynamic_sampling"):
        return None
    r = batch.reward.to(batch.logp.dtype)
    n = r.shape[-1]
    r = r.expand(*(batch.logp.shape[:-2] if batch.tokens else batch.logp.shape[:-1]), n)
    w = batch.weight if batch.weight is not None else torch.ones_like(r)
    onehot = _group_matrix(batch, n, r)
    var = _group_mean((r - _group_mean(r, w, onehot)) ** 2, w, onehot)
    keep = var > 1e-12
    if p.get("dynamic_sampling_singletons") == "keep":
        keep = keep | ((torch.ones(n, dtype=r.dtype, device=r.device) @ onehot @ onehot.T) == 1)
    return keep.to(r.dtype)
