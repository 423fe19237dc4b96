"""The advantage and the other statistics over each sample's group (the prompt's G samples, a bandit context's
pulls): group means and standard deviations, RED-Drop's balancing and DAPO's dynamic sampling. The registry
computes them once over the whole batch (`objectives.prepare`), so micro-batches may cut groups."""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor

from banditlab.registry.batch import Batch

BASELINES = ("none", "group", "vmu", "absolute")


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
