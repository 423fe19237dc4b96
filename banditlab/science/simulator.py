"""Vectorised simulation of off-policy policy gradient on tabular softmax bandits.

All runs (seeds × baselines × any swept objective parameter) live in one tensor of logits [R, C, K]
(runs × contexts × arms) and take one step together: a step is one call of a registry objective
(`banditlab.registry.objectives`) on a `Batch` of log π, whose gradient G = ∂ℓ/∂log π goes through the softmax chain rule
by hand, ∂ℓ/∂l = G − π Σ G, and plain SGD on the logits, l ← l − η ∂ℓ/∂l. The step is chosen once per Simulator
(`banditlab.science.steps`): the general one, or for objectives linear in log π the exact step that reuses G while
the behaviour is unchanged and the sampled step that sums G from the pulls; `SimConfig.grad = "autograd"`
differentiates the whole step instead, the reference the tests compare with to 1e-12.

Two update modes:
    exact    the expected (infinite-batch) update: every (context, arm, reward outcome) is one sample with
             weight p(x) μ(a|x) P(r|a), so the loss is E_μ[ℓ] exactly. A group-mean baseline therefore becomes
             V^μ(x) here, and RED-Drop keeps the expected fraction of negatives (see objectives.advantage).
             With AsymRE this is Δl(y) = η(a_y − b π(y)) of theory.py.
    sampled  each step draws C groups (a context x ~ p(x) each) of B pulls a ~ μ(·|x) and rewards from the
             noise model (`banditlab.science.draws`: shards, shared streams, alias tables).

The behaviour policy μ (`banditlab.science.behaviour.Behavior`: fixed, lag:N, delay:K, mix:α) gives log μ and the
refresh rule. Exact tracking, every `log_every` steps and at the end (context-averaged with p(x)): J(π_t) = Σ π r̄,
V^μ_t, entropy H(π_t), support size #{a: π(a) ≥ support_eps}, KL(μ‖π), P(best arm), min logit (after centring,
max = 0) and the loss value. Runs whose logits stop being finite are frozen at their last good state and flagged.

Deliberately left out: optimisers other than SGD (the theorems are about SGD) and per-run random generators (one
torch.Generator serves the whole grid: a run's numbers depend on --seed, the grid and its streams).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from banditlab.registry.objectives import Batch, Objective
from banditlab.science import kernels
from banditlab.science.bandits import Bandit
from banditlab.science.behaviour import Behavior
from banditlab.science.draws import Draws
from banditlab.science.steps import make_step
from banditlab.science.theory import SUPPORT_EPS, in_support

METRICS = ("expected_reward", "v_mu", "entropy", "support_size", "kl_mu_pi", "p_best", "min_logit", "loss")


@dataclass
class SimConfig:
    mode: str = "sampled"          # exact | sampled
    steps: int = 3000              # SGD steps
    batch: int = 64                # pulls per group per step (sampled mode); G in the LLM papers
    lr: float = 1.0                # η, plain SGD on the logits (the Python API also takes one value per run)
    behavior: str = "fixed"        # see behaviour.Behavior.parse
    log_every: int = 25            # record the exact metrics every this many steps
    support_eps: float = SUPPORT_EPS  # an arm is in the support when π(a) ≥ this (theory.SUPPORT_EPS)
    gauss_nodes: int = 8           # Gauss–Hermite nodes for Gaussian noise in exact mode
    dtype: str = "float64"
    device: str = "cpu"
    grad: str = "analytic"         # analytic (registry ∂L/∂log π + softmax chain rule) | autograd (whole step)


@dataclass
class SimState:
    """Everything that changes during a simulation: enough to resume bit-for-bit."""

    step: int
    logits: torch.Tensor           # [R, C, K]
    snapshot: torch.Tensor         # behaviour logits (the lagged copy of π)
    history: list                  # the last `delay` logits, oldest first
    diverged: torch.Tensor         # [R] bool
    good: torch.Tensor             # last finite logits, restored into diverged runs
    rng: torch.Tensor              # generator state
    log_steps: list = field(default_factory=list)
    log_values: list = field(default_factory=list)   # each [R, len(METRICS)]

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class Simulator:
    """One objective on one bandit for R runs whose objective parameters may differ (`run_params`)."""

    def __init__(self, bandit: Bandit, objective: Objective, run_params: dict[str, np.ndarray], cfg: SimConfig,
                 seed: int = 0, runs: int | None = None, shard_rows: np.ndarray | None = None,
                 total_runs: int | None = None, streams: np.ndarray | None = None):
        """`shard_rows` / `total_runs`: this simulator holds only those rows of a grid of `total_runs` runs (a
        shard); its random draws are the full grid's, sliced, so each run's numbers equal the unsharded run's.
        `streams` (one integer per run of the whole grid, ids 0..D−1, default: each run its own): runs of one
        stream share every random number the simulator draws (contexts, pulls, rewards), so that runs that
        differ only in their objective parameters see the same data, common random numbers; with a fixed
        behaviour and Bernoulli or no noise their pulls are drawn once per stream. RED-Drop, which draws its
        drops inside the objective, one per run, takes no streams."""
        self.bandit, self.objective, self.cfg, self.seed = bandit, objective, cfg, seed
        self.behavior = Behavior.parse(cfg.behavior)
        if cfg.mode not in ("exact", "sampled"):
            raise ValueError(f"--mode: expected exact or sampled, got {cfg.mode!r}")
        self.dtype = getattr(torch, cfg.dtype)
        self.device = torch.device(cfg.device)
        sizes = {len(np.atleast_1d(v)) for v in run_params.values()} or {runs or 1}
        if len(sizes) != 1:
            raise ValueError("all per-run parameters must have the same length")
        self.runs = sizes.pop()
        t = lambda x: torch.as_tensor(np.asarray(x, dtype=float), dtype=self.dtype, device=self.device)
        # per-run parameters become [R, 1] tensors that broadcast against the samples
        self.params = {k: (t(v).reshape(-1, 1) if np.ndim(v) else v) for k, v in run_params.items()}
        self.lr = t(cfg.lr).reshape(-1, 1, 1) if np.ndim(cfg.lr) else cfg.lr
        C, K = bandit.contexts, bandit.arms
        self.means = t(bandit.means)                                   # [C, K]
        self.p_ctx = t(bandit.context_probs)                           # [C]
        self.logits0 = t(bandit.logits).expand(self.runs, C, K).clone()
        self.best = self.means.argmax(-1)                              # [C]
        self.log_ref = torch.log_softmax(t(self.behavior.ref_logits(bandit.logits)), -1)
        vals, probs = bandit.outcomes(cfg.gauss_nodes)
        self.out_vals, self.out_probs = t(vals), t(probs)              # [C, K, O]
        O = vals.shape[-1]
        self.exact_group = torch.arange(C, device=self.device).repeat_interleave(K * O)
        self.sample_group = torch.arange(C, device=self.device).repeat_interleave(cfg.batch)
        self.draws = Draws(self, shard_rows, total_runs, streams)
        self.total_runs = self.draws.total_runs
        self._cached_mu: tuple | None = None
        self.step = make_step(self)            # the one step, chosen here

    # ------------------------------------------------------------------------------------------ state
    def initial_state(self, logits: np.ndarray | None = None) -> SimState:
        """π₀ = the bandit's policy, or `logits` [R, C, K] (a different start on the same fixed behaviour μ)."""
        g = torch.Generator(device=self.device).manual_seed(self.seed)
        z = self.logits0
        pi0 = z.clone() if logits is None else torch.as_tensor(logits, dtype=self.dtype, device=self.device).clone()
        return SimState(0, pi0, z.clone(), [], torch.zeros(self.runs, dtype=torch.bool, device=self.device),
                        pi0.clone(), g.get_state())

    def behaviour_logp(self, snapshot: torch.Tensor) -> torch.Tensor:
        """log μ = log((1 − α) softmax(snapshot) + α π_ref), in log space (`Behavior.log_mu`)."""
        return self.behavior.log_mu(snapshot, self.log_ref)

    def mu_of(self, snapshot: torch.Tensor):
        """log μ, μ, V^μ(x) and a cache of what depends on μ alone, for the current snapshot, kept while the snapshot
        does not change."""
        if self._cached_mu is None or self._cached_mu[0] is not snapshot:
            logmu = self.behaviour_logp(snapshot)
            mu = logmu.exp()
            self._cached_mu = (snapshot, logmu, mu, (mu * self.means).sum(-1), {"logmu": logmu})
        return self._cached_mu[1:]

    # ------------------------------------------------------------------------------------------ batches
    def exact_batch(self, logp: torch.Tensor, snapshot: torch.Tensor) -> Batch:
        logmu, mu, vmu, cache = self.mu_of(snapshot)
        R, C, K = logp.shape
        O = self.out_vals.shape[-1]
        if "exact" not in cache:  # everything that depends only on μ
            w = self.p_ctx[:, None, None] * mu[..., None] * self.out_probs
            cache["exact"] = (logmu[..., None].expand(R, C, K, O).reshape(R, -1), w.reshape(R, -1),
                              vmu[..., None, None].expand(R, C, K, O).reshape(R, -1))
        logp_old, weight, v = cache["exact"]
        return Batch(logp[..., None].expand(R, C, K, O).reshape(R, -1), logp_old, self.out_vals.reshape(-1),
                     group=self.exact_group, weight=weight, v_mu=v)

    def sampled_batch(self, logp: torch.Tensor, snapshot: torch.Tensor, g: torch.Generator) -> Batch:
        flat, arms, batch = self.draws.pulls(snapshot, g, logp.shape[0])
        R = logp.shape[0]
        batch.logp = logp.reshape(R, -1).gather(-1, flat).reshape(R, -1)
        return batch

    def batch(self, logp: torch.Tensor, snapshot: torch.Tensor, g: torch.Generator) -> Batch:
        return self.exact_batch(logp, snapshot) if self.cfg.mode == "exact" else self.sampled_batch(logp, snapshot, g)

    # ------------------------------------------------------------------------------------------ metrics
    def metrics(self, logits: torch.Tensor, snapshot: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
        """[R, len(METRICS)] exact metrics of π = softmax(l), context-averaged with p(x), from one exp of the
        centred logits l (max 0 in every row, as `_log` leaves them): with z = e^l and s = Σ z, π = z/s,
        H(π) = log s − Σ π l and KL(μ‖π) = Σ μ log μ − Σ μ l + log s."""
        logmu, mu, vmu, cache = self.mu_of(snapshot)
        if "mu_logmu" not in cache:
            cache["mu_logmu"] = (mu * logmu).sum(-1)
        l = logits
        z = kernels.exp_clamped(l, torch.empty_like(l))
        s = z.sum(-1)
        log_s = s.log()
        pi = z.div_(s[..., None])
        avg = lambda x: (x * self.p_ctx).sum(-1)
        J = avg((pi * self.means).sum(-1))
        ent = avg(log_s - (pi * l).sum(-1))
        support = avg(in_support(pi, self.cfg.support_eps).sum(-1).to(self.dtype))
        kl = avg(cache["mu_logmu"] - (mu * l).sum(-1) + log_s)
        pbest = avg(pi.gather(-1, self.best.expand(pi.shape[0], -1)[..., None])[..., 0])
        min_logit = l.amin(-1).amin(-1)
        return torch.stack([J, avg(vmu), ent, support, kl, pbest, min_logit, loss], -1)

    # ------------------------------------------------------------------------------------------ loop
    def run(self, state: SimState, until: int | None = None, on_step: Callable[[SimState], bool] | None = None
            ) -> SimState:
        """Advance `state` to step `until` (default cfg.steps). `on_step(state)` runs after every step and may
        return True to stop early at that step boundary (used for checkpoints and Ctrl-C)."""
        cfg = self.cfg
        until = cfg.steps if until is None else until
        g = torch.Generator(device=self.device)
        g.set_state(state.rng)
        self._g = g  # `checkpoint` reads the live generator state, which `state.rng` holds only at logged steps
        if state.step == 0 and not state.log_steps:
            self._log(state, torch.full((self.runs,), float("nan"), dtype=self.dtype, device=self.device))
        self.step.start()  # the logits' bounds are unknown until the first centring of this run
        any_bad = bool(state.diverged.any())
        R, C, K = state.logits.shape
        # steps drawn together: per-pull arrays of at most 2^19 values (4 MB in float64; blocks of 2^19 to 2^22 values
        # took the same time, measured), or one step where a step alone has more
        ahead = max(1, min(64, (1 << 19) // (R * C * max(K, cfg.batch))))
        while state.step < until:
            t = state.step
            self.behavior.refresh(state, t, self.logits0)
            logged = (t + 1) % cfg.log_every == 0 or t + 1 == cfg.steps
            loss = self.step(state, g, logged, any_bad, min(ahead, until - t))
            state.step = t + 1
            if logged:
                state.rng = self.step.rng_now(g)
                self._log(state, loss.detach())
                any_bad = bool(state.diverged.any())
            if on_step is not None and on_step(state):
                break
        state.rng = self.step.rng_now(g)
        self.step.stop()
        self._g = None  # between runs the state's own generator state is the truth (steps drawn ahead are dropped)
        return state

    def checkpoint(self, state: SimState) -> dict:
        """Everything needed to resume `state` bit for bit at a step boundary, including the generator's
        current state (call from `on_step`)."""
        d = state.to_dict()
        if getattr(self, "_g", None) is not None:
            d["rng"] = self.step.rng_now(self._g)
        return d

    def _log(self, state: SimState, loss: torch.Tensor) -> None:
        bad = ~torch.isfinite(state.logits.sum((-1, -2)))  # a sum is finite only when every term is
        if bad.any():
            state.diverged = state.diverged | bad
            state.logits = torch.where(state.diverged[:, None, None], state.good, state.logits)
        # centre the logits (softmax is shift invariant) so they stay bounded above, in place; keep a good copy
        state.logits.sub_(state.logits.amax(-1, keepdim=True))
        if state.good.shape == state.logits.shape and state.good is not state.logits:
            state.good.copy_(state.logits)
        else:
            state.good = state.logits.clone()
        state.log_steps.append(state.step)
        values = self.metrics(state.logits, state.snapshot, loss).cpu()
        state.log_values.append(values)
        self.step.centred(float(values[:, METRICS.index("min_logit")].min()))


def tidy_frame(state: SimState, columns: dict):
    """The logged metrics as a tidy pandas frame: one row per (run, logged step), with per-run `columns`."""
    import pandas as pd

    steps = np.asarray(state.log_steps)
    values = torch.stack(state.log_values).numpy()  # [S, R, M]
    S, R, _ = values.shape
    df = pd.DataFrame({"run": np.tile(np.arange(R), S), "step": np.repeat(steps, R)})
    for k, v in columns.items():
        df[k] = np.tile(np.broadcast_to(np.asarray(v), (R,)), S)
    for i, m in enumerate(METRICS):
        df[m] = values[:, :, i].reshape(-1)
    return df


def baseline_columns(values, v_mu: float, absolute: bool) -> dict:
    """The tidy files' two baseline columns (the sweep's and `run_grid`'s) for the objective's `offset` values:
    baseline_offset δV = V − V^μ and baseline V, with `v_mu` the behaviour's V^μ averaged over contexts with p(x).
    With an absolute baseline the values are V; otherwise they are δV."""
    values = np.asarray(values, float)
    return {"baseline_offset": values - v_mu if absolute else values, "baseline": values if absolute else v_mu + values}


def final_policy(state: SimState) -> np.ndarray:
    """π_T = softmax(logits) as numpy, [R, C, K]."""
    return torch.softmax(state.logits, -1).cpu().numpy()


def run_grid(bandit, objective, offsets, *, seeds=1, mode="exact", steps=1000, lr=1.0, batch=64,
             behavior="fixed", log_every=None, seed=0, record_every=0, init_logits=None, progress=None):
    """Run len(offsets) × seeds runs of one objective (one Simulator) and return (tidy frame, trajectory of π or
    None): the entry point of the reproduce experiments.
    `offsets` are the values of the objective's `offset` parameter, one per run, read as its `baseline` says: raw V
    with "absolute", else δV (from V^μ with "vmu", as `banditlab sweep` by default; from the group mean with the
    registry's "group"). The frame has the columns of the sweep's steps.parquet (`baseline_columns`): one row per
    (run, logged step) with run, step, baseline_offset (δV = V − V^μ), baseline (V), seed, the METRICS, diverged.
    The trajectory, if `record_every`, is an array [S, R, C, K] of π_t every `record_every` steps (with t = 0).
    """
    offsets = np.asarray(offsets, float)
    grid_off, grid_seed = np.repeat(offsets, seeds), np.tile(np.arange(seeds), len(offsets))
    cfg = SimConfig(mode=mode, steps=steps, batch=batch, lr=lr, behavior=behavior,
                    log_every=log_every or max(1, steps // 200))
    params = {"offset": grid_off} if "offset" in objective.params else {}  # sft has no baseline
    sim = Simulator(bandit, objective, params, cfg, seed=seed, runs=len(grid_off))
    state = sim.initial_state(init_logits)
    traj = []

    def on_step(st):
        if record_every and st.step % record_every == 0:
            traj.append(torch.softmax(st.logits, -1).numpy().copy())
        if progress is not None:
            progress()
        return False

    if record_every:
        traj.append(torch.softmax(state.logits, -1).numpy().copy())
    state = sim.run(state, on_step=on_step)
    absolute = objective.params.get("baseline") == "absolute"
    df = tidy_frame(state, {**baseline_columns(grid_off, bandit.v_mu_total, absolute), "seed": grid_seed})
    df["diverged"] = np.tile(state.diverged.numpy(), len(df) // sim.runs)
    return df, (np.stack(traj) if record_every else None)
