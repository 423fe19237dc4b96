"""What every objective shares: the `Batch` data contract, importance ratios and aggregation.

The advantage and the other group statistics are in `banditlab.registry.advantage`, the objectives in
`banditlab.registry.losses`, their registry in `banditlab.registry.objectives` (which re-exports everything here);
see that module's docstring for the data contract's fields.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

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
