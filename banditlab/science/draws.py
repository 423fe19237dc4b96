"""The random draws of sampled mode: each step, C groups (a context x ~ p(x) each) of B pulls a ~ μ(·|x) per run, with
rewards from the noise model; one group plays the part of one prompt's G samples in an LLM batch.

One torch.Generator serves the whole grid. A grid can be one shard of a larger grid (`shard_rows`): its random
draws are the whole grid's, sliced. Runs can share their random draws (`streams`: common random numbers, e.g. the
runs of one seed at every baseline): every number is drawn once per row of the grid or per stream (`draw`), and
each run takes its row's (`rows`). With a fixed behaviour and Bernoulli or no noise every run draws from one alias
table over the cells (arm, outcome) of each context (`kernels.alias_tables`, `kernels.cells`); otherwise each run
samples its own μ by inverse CDF (`_cdf_draw`).
"""

from __future__ import annotations

import numpy as np
import torch

from banditlab.registry.objectives import Batch
from banditlab.science import kernels


class Draws:
    """The sampled pulls of one `Simulator`'s runs (its bandit tensors, behaviour and grid rows)."""

    def __init__(self, sim, shard_rows: np.ndarray | None, total_runs: int | None, streams: np.ndarray | None):
        """`shard_rows`, `total_runs`, `streams`: as `Simulator` takes them (checked here)."""
        self.sim, self.dtype, self.device, self.batch = sim, sim.dtype, sim.device, sim.cfg.batch
        self.means, self.p_ctx = sim.means, sim.p_ctx
        self.ws = kernels.Workspace()  # per-pull arrays reused from one block of steps to the next
        runs = sim.runs
        self.total_runs = total_runs or runs
        rows = np.arange(runs) if shard_rows is None else np.asarray(shard_rows)
        if rows.shape != (runs,) or (shard_rows is None and self.total_runs != runs):
            raise ValueError(f"shard_rows: expected one row of the {self.total_runs}-run grid per run ({runs})")
        if streams is None:
            draw_rows, self.n_draws = rows, self.total_runs
        else:
            streams = np.asarray(streams)
            if (streams.shape != (self.total_runs,) or streams.dtype.kind not in "iu"
                    or not np.array_equal(np.unique(streams), np.arange(streams.max(initial=-1) + 1))):
                raise ValueError(f"streams: expected {self.total_runs} integers, one per run of the grid, that use "
                                 "every id from 0 to their largest")
            if sim.objective.params.get("red_drop"):
                raise ValueError("streams: RED-Drop draws its drops inside the objective, one per run; give each "
                                 "run its own stream")
            draw_rows, self.n_draws = streams[rows], int(streams.max()) + 1
        # the rows of each draw (the grid's runs, or its streams) that this simulator's runs take; None: all, in order
        self.draw_rows = None if (self.n_draws == runs and np.array_equal(draw_rows, np.arange(runs))) \
            else torch.as_tensor(draw_rows, device=self.device)
        # runs laid out as whole repeats of the streams 0..D−1 (a grid of parameters × seeds): draws broadcast
        self.tiled = self.draw_rows is not None and runs % self.n_draws == 0 and np.array_equal(
            draw_rows, np.arange(runs) % self.n_draws)

    def shared_table(self) -> bool:
        """Whether every run draws from one alias table: a fixed behaviour and Bernoulli or no noise."""
        return self.sim.behavior.is_fixed and self.sim.bandit.noise != "gaussian"

    def pulls(self, snapshot: torch.Tensor, g: torch.Generator, R: int):
        """One step's pulls: (flat index c·K + a of each pull into [R, C·K], its arm a, and a Batch whose logp
        is still unset): C groups of B pulls per run, contexts from p(x), arms from μ(·|x), rewards from the
        noise model."""
        logmu, mu, vmu, cache = self.sim.mu_of(snapshot)
        C, K = self.means.shape
        ctx = self.contexts(g, R)
        if self.shared_table():  # one μ for every run: one alias table
            arms, reward, logp_old = self.alias_draw(cache, ctx, self.draw(torch.rand, (R, C, self.batch), g))
        else:
            pick = (lambda x: x) if C == 1 else (lambda x: x.gather(1, ctx[..., None].expand(R, C, x.shape[-1])))
            arms, reward, logp_old = self._cdf_draw(cache, mu, logmu, pick, g)
        return self.pulls_batch(ctx, arms, reward, logp_old, vmu, g)

    def pulls_batch(self, ctx, arms, reward, logp_old, vmu, g):
        """(flat indices, arms, Batch without logp) from pulls shaped [..., C, B] with contexts [..., C]."""
        C, K = self.means.shape
        lead = arms.shape[:-2]
        flat = (arms if C == 1 else arms + K * ctx[..., None]).reshape(*lead, -1)
        v = vmu.expand(*lead, C).gather(-1, ctx)[..., None].expand(arms.shape)
        batch = Batch(None, logp_old.reshape(*lead, -1), reward.reshape(*lead, -1), group=self.sim.sample_group,
                      v_mu=v.reshape(*lead, -1), generator=g)
        return flat, arms, batch

    def contexts(self, g: torch.Generator, R: int, raw: bool = False) -> torch.Tensor:
        """[R, C] the context of each of the C groups of a step, drawn from p(x) (all 0 with one context);
        `raw`: [rows or streams, C] (see `draw`)."""
        C = self.means.shape[0]
        R = self.n_draws if raw else R
        if C == 1:
            return torch.zeros(R, 1, dtype=torch.long, device=self.device)
        u = self.draw(torch.rand, (R, C), g, raw=raw)
        return torch.searchsorted(self.p_ctx.cumsum(0).expand(R, C).contiguous(), u).clamp_max(C - 1)

    def alias_draw(self, cache: dict, ctx: torch.Tensor, u: torch.Tensor):
        """(arms, rewards, log μ(arm)) of pulls drawn from one alias table over the cells (arm, outcome) of
        each context, with probabilities μ(a|x) P(r|a, x), shared by every run (a fixed behaviour): see
        `cells`."""
        tables = self.alias_tables(cache)
        cell = self.cells(tables, ctx, u)
        return tables["arm"].take(cell), tables["reward"].take(cell), tables["logmu"].take(cell)

    def cells(self, tables: dict, ctx: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Flat cell ids c·M + (arm, outcome) of pulls [..., C, B] with contexts ctx [..., C] and uniforms u: one
        uniform per pull gives the cell i = ⌊uM⌋ of its context's M cells, kept when uM − i < prob[i] and
        replaced by alias[i] otherwise (Walker's method), looked up in one step from `guide_table` for all but
        the draws near the table's breakpoints. On the CPU by the faster of numpy's and torch's kernels."""
        return kernels.cells(tables, ctx[..., None] if ctx.shape[1] > 1 else None, u, self.ws)

    def alias_tables(self, cache: dict) -> dict:
        """`kernels.alias_tables` of the behaviour whose cache this is, built once per behaviour."""
        if "alias" not in cache:
            vals, probs = self.sim.out_vals.cpu().numpy(), self.sim.out_probs.cpu().numpy()  # [C, K, O]
            logmu = cache["logmu"][0]  # [C, K], the same for every run
            cache["alias"] = kernels.alias_tables(logmu, vals, probs, self.dtype, self.device)
        return cache["alias"]

    def _cdf_draw(self, cache: dict, mu, logmu, pick, g):
        """(arms, rewards, log μ(arm)) by inverse-CDF sampling from each run's own μ, a = min{a : F_μ(a) ≥ u},
        and rewards from the noise model."""
        b, B = self.sim.bandit, self.batch
        R, C, K = mu.shape
        rand = lambda *shape: self.draw(torch.rand, shape, g)
        if "cdf" not in cache:
            cdf = mu.cumsum(-1)
            cache["cdf"] = (cdf / cdf[..., -1:]).contiguous()
        arms = torch.searchsorted(pick(cache["cdf"]), rand(R, C, B)).clamp_max(K - 1)
        means = pick(self.means.expand(R, C, K)).gather(-1, arms)
        if b.noise == "bernoulli":
            hit = rand(R, C, B) < (means - b.low) / (b.high - b.low)
            reward = b.low + (b.high - b.low) * hit.to(self.dtype)
        elif b.noise == "gaussian":
            reward = means + b.sigma * self.draw(torch.randn, tuple(means.shape), g)
        else:
            reward = means
        return arms, reward, pick(logmu).gather(-1, arms)

    def draw(self, fn, shape: tuple, g: torch.Generator, out: torch.Tensor | None = None,
             raw: bool = False) -> torch.Tensor:
        """Random numbers of `shape` ([runs, ...]), into `out` if given: one draw per row of the grid or per
        stream (`streams`), each run taking its row's; `raw`: the draw itself, [rows or streams, ...]."""
        if self.draw_rows is None or raw:
            shape = (self.n_draws, *shape[1:])
            if out is not None:
                return fn(shape, generator=g, out=out)
            return fn(shape, generator=g, device=self.device, dtype=self.dtype)
        full = fn((self.n_draws, *shape[1:]), generator=g, device=self.device, dtype=self.dtype)
        if out is not None:
            return torch.index_select(full, 0, self.draw_rows, out=out)
        return full[self.draw_rows]

    def rows(self, x: torch.Tensor, dim: int = 0) -> torch.Tensor:
        """A raw draw's values ([..., rows or streams, ...] at `dim`) for this simulator's runs."""
        return x if self.draw_rows is None else x.index_select(dim, self.draw_rows)
