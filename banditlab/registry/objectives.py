"""The objective registry: every off-policy REINFORCE loss of the papers and frameworks, written once.

Both the bandit simulator (`banditlab.science.simulator`) and the LLM trainer (`llm.train`) build a `Batch` and call
an objective from `OBJECTIVES`. The formulas live in `banditlab.registry.losses` (the pieces they share in
`banditlab.registry.batch` and `banditlab.registry.advantage`) and in no other file; this module re-exports them.

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

from dataclasses import dataclass, replace
from typing import Any, Callable

import torch
from torch import Tensor

from banditlab.registry.advantage import (ADVANTAGE, BASELINES, SINGLETONS, STDS, TIES, advantage,  # noqa: F401
                                          advantage_args)
from banditlab.registry.batch import (AGGREGATIONS, RATIO_LEVELS, Batch, aggregate, mismatch_weight, ratio,  # noqa: F401
                                      safe_exp)
from banditlab.errors import UsageError
from banditlab.registry import losses
from banditlab.registry.losses import (INF, SCOPES, Scope, at_least, between, loss, m2po_mask, rec_mask,  # noqa: F401
                                       reinforce, taper)

# ----------------------------------------------------------------------------------------------- registry
# the values of the string parameters that several functions share; a function's own are its `loss(choices=...)`
CHOICES = {"baseline": BASELINES, "agg": AGGREGATIONS, "ratio_level": RATIO_LEVELS, "std": STDS,
           "singleton": SINGLETONS, "ties": TIES}
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

    @property
    def scope(self) -> Scope:
        """The samples the loss function itself must see at once, as its `loss(scope=...)` declares (`SCOPES`):
        "sample", "group" or "batch". The LLM config refuses micro-batches that would cut below it."""
        return self.fn.scope

    @property
    def advantage_groups(self) -> bool:
        """True when the advantage uses a statistic over each sample's group: baseline "group", std_norm or
        RED-Drop (baselines none, absolute and vmu alone need no other sample)."""
        p = self.params
        return self.fn.uses_advantage and (p["baseline"] == "group" or bool(p["std_norm"]) or bool(p["red_drop"]))

    @property
    def group_statistic(self) -> bool:
        """True when a sample's loss depends on the other samples of its group: the advantage's group statistic
        (`advantage_groups`) or a loss of scope "group". Such an objective needs groups of at least 2 samples
        (the LLM config refuses --group-size 1)."""
        return self.advantage_groups or self.scope == "group"

    @property
    def per_sample(self) -> bool:
        """True when each one-action sample's ∂ℓ/∂log π depends on that sample and the number of samples alone:
        the function declares it (`loss(per_sample=...)`, scope "sample") and the advantage uses no group
        statistic (`advantage_groups`). The simulator's sampled mode then computes the gradient of one sample of
        each (context, arm, outcome) once per behaviour and looks it up for every pull.
        tests/test_simulate.py checks the declaration against autograd for every registry entry."""
        return not self.advantage_groups and self.scope == "sample" and bool(self.fn.per_sample(self.params))

    def check(self, p: dict) -> None:
        """Every parameter's declared range and cross-check (see `loss`); raises ObjectiveError naming the first bad one."""
        ranges = {**(ADVANTAGE_RANGES if self.fn.uses_advantage else {}), **self.fn.ranges}
        choices = {**CHOICES, **self.fn.choices}
        for k, v in p.items():
            default = self.params[k]
            if k in choices and v not in choices[k]:
                raise ObjectiveError(f"{k} must be one of {', '.join(choices[k])}; got {v!r}")
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
        a = None
        if fn.uses_advantage:  # from the batch before its row weights, as `prepare` computes it
            a = batch.adv if batch.adv is not None else advantage(batch, **{k: v for k, v in p.items() if k in ADVANTAGE})
        if batch.rows is not None or fn.rows is not None:
            rows = batch.rows if batch.rows is not None else fn.rows(batch, {**self.params, **overrides})
            if rows is not None:
                batch = replace(batch, weight=rows if batch.weight is None else batch.weight * rows)
        own = {k: v for k, v in p.items() if k in fn.own}
        return fn(batch, **own) if a is None else fn(batch, a, **own)

    def __call__(self, batch: Batch, **overrides) -> Tensor:
        return self.evaluate(batch, **overrides)[0]


OBJECTIVES: dict[str, Objective] = {}


def register(name: str, fn: Callable, summary: str, **defaults) -> Objective:
    """Add the objective `name`: the loss function `fn` (declared with `losses.loss(...)`) with `defaults` for its
    parameters; returns the entry. Any module may call it (a user's, a test's): `get_objective`, the bandit
    simulator, the sweep and the LLM trainer then take `name` like the entries below, and the checks that depend
    on an objective read its declarations (`Objective.scope`, `group_statistic`, `per_sample`, `linear_in_logp`).
    Refused with ObjectiveError: a name already taken, a function without its `loss` declaration, a default that
    is not one of its parameters or is outside its declared range."""
    if name in OBJECTIVES:
        raise ObjectiveError(f"algorithm {name!r} is already registered")
    if not hasattr(fn, "scope"):
        raise ObjectiveError(f"{getattr(fn, '__name__', fn)!r} has no @loss(...) declaration")
    OBJECTIVES[name] = Objective(name, fn, {}, summary).with_params(**defaults)
    return OBJECTIVES[name]


def unregister(name: str) -> None:
    """Remove the objective `name` (ObjectiveError if there is none)."""
    if OBJECTIVES.pop(name, None) is None:
        raise ObjectiveError(f"unknown algorithm {name!r}")


# the built-in entries, in the order `banditlab algos` and the parity table list them
GRPO_STD = {"std_norm": True}
register("reinforce", losses.reinforce, "REINFORCE, A = r − b, no ratio (naive off-policy)")
register("asymre", losses.reinforce, "Asymmetric REINFORCE, A = r − (b + δV); defaults b = group mean, δV = −0.1 (the "
         "LLM setting; `banditlab sweep` sets b = V^μ and δV from --baseline)", baseline="group", offset=-0.1)
register("topr", losses.tapered, "TOPR: ratio tapered to [1,1] on A ≥ 0, [0,1] on A < 0 (sequence ratio; "
         "Trinity-RFT: ratio_level=token)", baseline="none")
register("is", losses.tapered, "full importance sampling, windows [0,∞]/[0,∞] (sequence ratio, capped: never inf)",
         a_pos=0.0, b_pos=INF, a_neg=0.0, b_neg=INF)
register("tis", losses.tapered, "truncated IS as in the TOPR paper, clip(ρ, 0, 1)",
         a_pos=0.0, b_pos=1.0, a_neg=0.0, b_neg=1.0)
register("ppo", losses.ppo, "PPO clipped surrogate with group-mean advantage (verl and Trinity-RFT: dual_clip=3)")
register("grpo", losses.ppo, "GRPO: PPO clip with group-std-normalised advantage (verl/Trinity-RFT/TRL: std=unbiased)", **GRPO_STD)
register("rec", losses.rec, "REC: REINFORCE with token clipping (one-side by default)")
register("rec-ring", losses.rec, "REC with ring clipping", clip="ring")
register("red-drop", losses.rec, "RED-Drop: balance negatives per group, no clip (Trinity-RFT: ties=positive)",
         clip="none", red_drop=True)
register("red-weight", losses.rec, "RED-Weight: A·exp(A/temp), no clip", clip="none", weight="red-weight")
register("opmd", losses.rec, "OPMD as in the REC paper: REINFORCE + (coef/2)(log π − log μ)²; the REC authors' "
         "Trinity-RFT config coef c = our 2c, and Trinity-RFT's algorithm named 'opmd' is a different loss",
         clip="none", reg="k2")
register("rep-asymre", losses.rec, "AsymRE as REP: REINFORCE − β log π", clip="none", reg="fkl")
register("sft", losses.sft, "SFT on positive samples only (Trinity-RFT's sft loss: norm=positive)")
register("dapo", losses.ppo, "DAPO: GRPO with clip-higher ε_high = 0.28 and dynamic sampling (drop all-equal groups)",
         eps_high=0.28, dynamic_sampling=True, **GRPO_STD)
register("gspo", losses.ppo, "GSPO: PPO clip on the length-normalised sequence ratio (π/μ)^{1/|y|}, ε = 3e-4 / 4e-4",
         ratio_level="sequence-mean", eps_low=3e-4, eps_high=4e-4, agg="seq-mean-token-mean", **GRPO_STD)
register("cispo", losses.tapered, "CISPO: REINFORCE × sg(clip(ρ, 0, 5)) per token (TRL ε_max = 5)",
         a_pos=0.0, b_pos=5.0, a_neg=0.0, b_neg=5.0, ratio_level="token", **GRPO_STD)
register("sapo", losses.sapo, "SAPO: soft sigmoid gate (4/τ)σ(τ(ρ − 1)) in place of the clip, τ = 1 / 1.05",
         agg="seq-mean-token-mean", **GRPO_STD)
register("gmpo", losses.gmpo, "GMPO: geometric mean of log-space-clipped token ratios, ε = 0.4", **GRPO_STD)
register("m2po", losses.m2po, "M2PO: mask the largest (log ρ)² until the batch's mean is ≤ 0.04", **GRPO_STD)
register("grpo-opsm", losses.ppo, "GRPO + off-policy sequence masking (DeepSeek-V3.2): drop A < 0 sequences with "
         "mean log(μ/π) > δ = 0.5", opsm_delta=0.5, **GRPO_STD)
register("grpo-tis", losses.ppo, "GRPO × engine-mismatch TIS min(μ/μ_roll, 2) per token (per sequence: mismatch_level=sequence)",
         mismatch="truncate", **GRPO_STD)
register("grpo-mis", losses.ppo, "GRPO × engine-mismatch MIS 1[μ/μ_roll ≤ 2] per token (per sequence: mismatch_level=sequence)",
         mismatch="mask", **GRPO_STD)


def get_objective(name: str, **overrides) -> Objective:
    """Look up a registry entry by name and apply parameter overrides (unknown names raise ObjectiveError).

    The defaults are the registry's, one meaning for the bandit's Python API and the LLM trainer: for `asymre`,
    b = the group mean (an LLM has no V^μ) and δV = −0.1. `banditlab sweep` overrides both: b = the exact V^μ
    (`--baseline-ref vmu`, its default) and δV from `--baseline`. The sweep's objective at δV in Python is
    `get_objective("asymre", baseline="vmu", offset=δV)`. The two baselines agree in exact mode, where the group
    mean is V^μ; in sampled mode a group mean of G pulls acts as V^μ + δV·G/(G − 1) (`theory.group_baseline_offset`)."""
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
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"expected a number, got {text!r}") from None
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
