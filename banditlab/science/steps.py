"""One SGD step of every run's logits, l ← l − η ∂L/∂l, behind one interface (`Step`), chosen once per Simulator
(`make_step`):

    GeneralStep        the registry objective on a `Batch` of log π gives G = ∂L/∂log π (autograd over the
                       objective alone), the softmax chain rule is applied by hand, ∂L/∂l = G − π Σ G; with
                       cfg.grad = "autograd" the whole step is differentiated instead (the tests' reference).
    ExactLinearStep    exact mode, objective linear in log π: G depends on the behaviour alone, so it is computed
                       once per behaviour and a step is one exp, one row sum and two in-place updates.
    SampledLinearStep  sampled mode, objective linear in log π: G is scattered from the pulls (per pull, from a
                       table of each cell's gradient, or from each stream's cell counts), many steps drawn together
                       while the behaviour is fixed.

The fast steps fall back to the general one where they cannot guarantee the same numbers (a diverged run, a row sum
out of float range). η enters through `Step.eta` alone. A step returns the loss before its update at a logged step
(the per-run L of the general step; the fast steps compute it only when logged).
"""

from __future__ import annotations

import torch

from banditlab.registry.objectives import Batch
from banditlab.science import kernels


def make_step(sim) -> "Step":
    """The step of `sim`'s objective, update mode and cfg.grad."""
    cfg, linear = sim.cfg, sim.objective.linear_in_logp
    if cfg.grad == "analytic" and linear:
        return ExactLinearStep(sim) if cfg.mode == "exact" else SampledLinearStep(sim)
    return GeneralStep(sim)


class Step:
    """l ← l − η ∂L/∂l for every run of `sim`. `floor` (the lowest logit at the last centring) and `drift` (how far
    a logit may have moved since) bound the logits between centrings, which the simulator reports (`centred`)."""

    def __init__(self, sim):
        self.sim, self.lr = sim, sim.lr
        self.floor: float | None = None
        self.drift = float("inf")

    def eta(self, x: torch.Tensor, run_dim: int = -3) -> torch.Tensor:
        """η x: the one place η enters a step. A per-run η (a tensor of R values) broadcasts along x's run
        dimension `run_dim`, counted from the end (x [..., R, C, K] by default)."""
        lr = self.lr.reshape(-1, *[1] * (-run_dim - 1)) if torch.is_tensor(self.lr) else self.lr
        return x * lr

    def start(self) -> None:
        """Before a `Simulator.run`: the logits' bounds are unknown until the first centring."""
        self.floor, self.drift = None, float("inf")

    def centred(self, floor: float) -> None:
        self.floor, self.drift = floor, 0.0

    def rng_now(self, g: torch.Generator) -> torch.Tensor:
        """The generator state at the current step boundary (before any steps drawn ahead)."""
        return g.get_state()

    def stop(self) -> None:
        """After a run: drop whatever was drawn ahead."""

    def __call__(self, state, g: torch.Generator, logged: bool, any_bad: bool, ahead: int):
        raise NotImplementedError


class GeneralStep(Step):
    def __call__(self, state, g, logged, any_bad, ahead):
        grad, loss = self.logit_grad(state.logits, state.snapshot, g, need_loss=logged)
        step = state.logits - self.eta(grad)
        state.logits = torch.where(state.diverged[:, None, None], state.logits, step) if any_bad else step
        return loss

    def logit_grad(self, logits: torch.Tensor, snapshot: torch.Tensor, g: torch.Generator, need_loss: bool = True):
        """(∂L/∂logits [R, C, K], the per-run loss or None) for one step.

        The registry objective gives G = ∂L/∂log π (autograd over the objective alone, on a log π leaf); the
        softmax chain rule is applied by hand: ∂L/∂l_k = G_k − π_k Σ_j G_j. When the objective is linear in
        log π (`Objective.linear_in_logp`) and the update is exact, G depends only on the behaviour, so it is
        computed once per behaviour snapshot (`linear_coeffs`).
        cfg.grad = "autograd" differentiates the whole step instead (the reference the tests compare with)."""
        sim = self.sim
        cfg = sim.cfg
        if cfg.grad == "autograd":
            leaf = logits.detach().requires_grad_(True)
            logp = torch.log_softmax(leaf, -1)
            loss = sim.objective(sim.batch(logp, snapshot, g), **sim.params)
            (grad,) = torch.autograd.grad(loss.sum(), leaf)
            return grad, loss
        if cfg.mode == "exact" and sim.objective.linear_in_logp:
            G, S = linear_coeffs(sim, logits, snapshot)
            pi = torch.softmax(logits, -1)
            loss = (sim.objective(sim.exact_batch(torch.log_softmax(logits, -1), snapshot), **sim.params)
                    if need_loss else None)
            return torch.addcmul(G, pi, S, value=-1), loss
        leaf = torch.log_softmax(logits, -1).detach().requires_grad_(True)
        loss = sim.objective(sim.batch(leaf, snapshot, g), **sim.params)
        (G,) = torch.autograd.grad(loss.sum(), leaf)
        logp = leaf.detach()
        pi = kernels.exp_clamped(logp, torch.empty_like(logp))
        return torch.addcmul(G, pi, G.sum(-1, keepdim=True), value=-1), loss


def linear_coeffs(sim, logits: torch.Tensor, snapshot: torch.Tensor):
    """(G, Σ_k G) for an objective linear in log π: G = ∂L/∂log π from the registry, computed once per snapshot."""
    cache = sim.mu_of(snapshot)[3]
    if "G" not in cache:
        leaf = torch.log_softmax(logits, -1).detach().requires_grad_(True)
        (G,) = torch.autograd.grad(sim.objective(sim.exact_batch(leaf, snapshot), **sim.params).sum(), leaf)
        cache["G"] = (G, G.sum(-1, keepdim=True))
    return cache["G"]


class _Linear(Step):
    """The in-place update of the fast steps, l ← l − ηG + z · (ηS / s) with z = exp(l), s = Σ z, S = Σ_k G_k, i.e.
    l − η(G − π S) without a max-subtraction pass; the general step where they cannot take it."""

    def __init__(self, sim):
        super().__init__(sim)
        self.general = GeneralStep(sim)
        self._z: torch.Tensor | None = None  # the exp buffer

    def start(self) -> None:
        super().start()
        self.general.start()

    def _exp(self, l: torch.Tensor, reach: float, safe: bool) -> torch.Tensor:
        """z = exp(l) into the step's buffer; without exp's clamp at −700 where every logit is above it: none has
        moved more than `reach` since the last centring, whose lowest logit was `floor`."""
        if self._z is None or self._z.shape != l.shape:
            self._z = torch.empty_like(l)
        above = self.floor is not None and self.floor - reach > -700
        return kernels.exp_clamped(l, self._z, clamp=not (safe and above))


class ExactLinearStep(_Linear):
    def __call__(self, state, g, logged, any_bad, ahead):
        """The cached exact step, in place. The step keeps Σ_k l_k fixed and moves any logit by at most
        η(max|G| + max|S|); logits are re-centred (max 0) at every logged step, so when log_every · η(max|G| +
        max|S|) < 600 neither exp(l) nor Σ z can leave float range before the next centring (`safe`); otherwise
        each step checks Σ z and falls back to the general step. When also the lowest logit at the last centring
        minus that bound stays above −700, exp needs no clamp."""
        sim = self.sim
        if any_bad:
            return self.general(state, g, logged, any_bad, ahead)
        cache = sim.mu_of(state.snapshot)[3]
        if "fast" not in cache:
            G, S = linear_coeffs(sim, state.logits, state.snapshot)
            lrG, lrS = self.eta(G), self.eta(S)
            bound = float(lrG.abs().max() + lrS.abs().max()) * sim.cfg.log_every
            cache["fast"] = (lrG, lrS, bound < 600 and sim.dtype == torch.float64, bound)
        lrG, lrS, safe, bound = cache["fast"]
        l = state.logits
        z = self._exp(l, bound, safe)
        s = z.sum(-1, keepdim=True)
        if not safe and not bool(((s > 0) & torch.isfinite(s)).all()):
            return self.general(state, g, logged, any_bad, ahead)
        loss = None
        if logged:  # the loss before the update, as the general step reports it; linear in log π = l − log s:
            G, S = cache["G"]  # L = Σ G (l − log s) + L(0)
            if "L0" not in cache:
                cache["L0"] = sim.objective(sim.exact_batch(torch.zeros_like(l), state.snapshot), **sim.params)
            loss = (G * l).sum((-1, -2)) - (S * torch.log(s)).sum((-1, -2)) + cache["L0"]
        l.sub_(lrG).addcmul_(z, lrS / s)
        return loss


class SampledLinearStep(_Linear):
    """The sampled step for objectives linear in log π. Their G = ∂ℓ/∂log π does not depend on log π, so the
    registry objective is differentiated on a zero leaf over the pulls only (no softmax of every logit) and G is
    scattered onto the arms; where s leaves float range the step uses softmax(l) instead. With per-sample gradients
    a step moves a logit by at most 2Bη max|g| (`_cell_bound`), so the drift since the last centring bounds the
    logits: the range check and exp's clamp are left out where it shows them unneeded. The loss at a logged step is
    L(0) + Σ_i G_i log π(a_i). With a fixed behaviour the pulls do not depend on π, so up to `ahead` steps are
    drawn (in the same order as one at a time) and differentiated together (`_pull_steps`)."""

    def __init__(self, sim):
        super().__init__(sim)
        self.draws = sim.draws
        self.step_bound: float | None = None  # how far one queued step may move a logit (None: unknown)
        self.queue: list = []                 # steps drawn ahead

    def start(self) -> None:
        super().start()
        self.queue = []

    def stop(self) -> None:
        self.queue = []

    def rng_now(self, g: torch.Generator) -> torch.Tensor:
        return self.queue[0][0] if self.queue else g.get_state()

    def __call__(self, state, g, logged, any_bad, ahead):
        if any_bad:
            if self.queue:  # a run diverged: drop the steps drawn ahead and draw from this step on
                g.set_state(self.queue[0][0])
                self.queue = []
            return self.general(state, g, logged, any_bad, ahead)
        if not self.queue:
            self.queue = self._pull_steps(state, g, ahead)
        _, lrG, lrS, pulls = self.queue.pop(0)
        l = state.logits
        # the logits lie in [floor − drift, drift] (max 0 at the last centring): with drift < 600 in float64,
        # e^l and Σ e^l stay in range (no check), and with floor − drift > −700 exp needs no clamp
        safe = self.step_bound is not None and self.drift < 600 and self.sim.dtype == torch.float64
        z = self._exp(l, self.drift, safe)
        s = z.sum(-1, keepdim=True)
        loss = None
        if logged:
            loss0, flat, coef = pulls()
            logp = (l - s.log()).reshape(l.shape[0], -1).gather(-1, flat)
            loss = loss0 + (coef * logp).sum(-1)
        if not safe and not bool(((s > 0) & torch.isfinite(s)).all()):
            z, s = torch.softmax(l, -1), torch.ones_like(s)
        l.sub_(lrG).addcmul_(z, lrS / s)
        self.drift += self.step_bound if self.step_bound is not None else float("inf")
        return loss

    def _pull_steps(self, state, g: torch.Generator, n: int) -> list:
        """[(generator state before the step, ηG, ηS, pulls)] for the next n steps (one step unless the behaviour
        is fixed and the objective draws no random numbers of its own); pulls() gives the step's (L(0), flat
        indices, ∂ℓ/∂log π(a_i)), which a logged step's loss needs. For objectives whose every pull's gradient
        depends on that pull alone (`Objective.per_sample`), G sums a table of each cell's gradient
        (`_cell_coeffs`) over the pulls' cells, and pulls() is computed for logged steps only."""
        sim, dr = self.sim, self.draws
        R, C, K = state.logits.shape
        logmu, mu, vmu, cache = sim.mu_of(state.snapshot)
        if not (dr.shared_table() and not sim.objective.params.get("red_drop")):
            n = 1
        self.step_bound = None
        rngs, ctxs = [], []
        D = dr.n_draws  # the draw's rows: the grid's runs or its streams
        u = dr.ws.get("u", (n, D, C, sim.cfg.batch), sim.dtype, sim.device) if dr.shared_table() else None
        for k in range(n):
            rngs.append(g.get_state())
            ctxs.append(dr.contexts(g, R, raw=True))
            if u is not None:
                dr.draw(torch.rand, (R, C, sim.cfg.batch), g, out=u[k], raw=True)
        if u is not None and sim.objective.per_sample:
            ctx, tables = torch.stack(ctxs), dr.alias_tables(cache)
            cells = dr.cells(tables, ctx.reshape(n * D, C), u.view(n * D, C, -1)).view(n, D, -1)
            coef = self._cell_coeffs(tables, vmu, cache)
            self.step_bound = self._cell_bound(coef, cache)
            pulls = [lambda k=k: self._cell_pulls(dr.rows(cells[k]), dr.rows(ctx[k]), coef, tables, vmu)
                     for k in range(n)]
            if self._counting():  # η is folded into the counted sums
                G = self._cell_sums(cells, tables, vmu, cache).view(n, R, C, K)
                S = G.sum(-1, keepdim=True)
                return [(rngs[k], G[k], S[k], pulls[k]) for k in range(n)]
            G = kernels.accumulate(dr.rows(cells, 1), coef, tables["flat_arm"], C * K, dr.ws).view(n, R, C, K)
        else:
            if u is not None:  # drawn for the draw's rows, then taken by the runs
                ctx = torch.stack(ctxs)
                pulls = dr.alias_draw(cache, ctx.reshape(n * D, C), u.view(n * D, C, -1))
                arms, reward, logp_old = (dr.rows(x.view(n, D, C, -1), 1) for x in pulls)
                flat, _, batch = dr.pulls_batch(dr.rows(ctx, 1), arms, reward, logp_old, vmu, g)
            else:
                g.set_state(rngs[0])
                flat, _, batch = dr.pulls(state.snapshot, g, R)
                flat, batch.logp_old, batch.reward, batch.v_mu = (x[None] for x in (flat, batch.logp_old, batch.reward,
                                                                                     batch.v_mu))
            batch.logp = torch.zeros(flat.shape, dtype=sim.dtype, device=sim.device, requires_grad=True)
            loss0 = sim.objective(batch, **sim.params)
            (coef,) = torch.autograd.grad(loss0.sum(), batch.logp)
            G = torch.zeros(n, R, C * K, dtype=sim.dtype, device=sim.device).scatter_add_(2, flat, coef)
            G = G.view(n, R, C, K)
            loss0 = loss0.detach()
            pulls = [lambda k=k: (loss0[k], flat[k], coef[k]) for k in range(n)]
        S = G.sum(-1, keepdim=True)
        G, S = self.eta(G), self.eta(S)
        return [(rngs[k], G[k], S[k], pulls[k]) for k in range(n)]

    def _cell_coeffs(self, tables: dict, vmu: torch.Tensor, cache: dict) -> torch.Tensor:
        """[R, C·M] ∂ℓ/∂log π of one pull of each cell (context, arm, outcome) in a step's batch of C·B pulls,
        for an objective whose pulls' gradients depend on the pull alone (`Objective.per_sample`): one registry
        call on probe batches that hold every cell, once per behaviour. Each pull's gradient is computed by the
        same operations as in a batch of drawn pulls, so the sums of `kernels.accumulate` are the same numbers."""
        if "cell_coef" in cache:
            return cache["cell_coef"]
        sim = self.sim
        M, R, N = tables["M"], vmu.shape[0], sim.sample_group.numel()
        CM = tables["arm"].numel()
        P = -(-CM // N)
        cell = torch.arange(P * N, device=sim.device).clamp_max_(CM - 1)  # the last probe repeats the last cell
        probe = lambda x: x.view(R, P, N).transpose(0, 1)
        v = probe(vmu.gather(-1, (cell // M).expand(R, -1)))
        leaf = torch.zeros(P, R, N, dtype=sim.dtype, device=sim.device, requires_grad=True)
        batch = Batch(leaf, tables["logmu"].take(cell).view(P, 1, N).expand(P, R, N),
                      tables["reward"].take(cell).view(P, 1, N).expand(P, R, N), group=sim.sample_group, v_mu=v)
        (c,) = torch.autograd.grad(sim.objective(batch, **sim.params).sum(), leaf)
        coef = torch.empty(R, CM, dtype=sim.dtype, device=sim.device)
        coef[:, cell] = c.transpose(0, 1).reshape(R, -1)
        cache["cell_coef"] = coef
        return coef

    def _cell_bound(self, coef: torch.Tensor, cache: dict) -> float:
        """How far one step may move a logit with per-sample gradients: η(max|G| + max|S|) ≤ 2 B η max|g|, as a
        context's G_k and S = Σ_k G_k each sum at most B of the cells' gradients g (`_cell_coeffs`)."""
        if "cell_bound" not in cache:
            cache["cell_bound"] = 2.0 * self.sim.cfg.batch * float(self.eta(coef, run_dim=-2).abs().max())
        return cache["cell_bound"]

    def _counting(self) -> bool:
        """Whether ηG is summed from each stream's cell counts (`_cell_sums`) rather than pull by pull
        (`kernels.accumulate`): when the grid's runs share streams and a context's O·K cells are at most 6 times
        its B pulls (decided on the whole grid, so that a shard sums as the unsharded run does).
        Counting costs about one operation per cell and run, the per-pull sums about 7 per pull (measured on
        the CPU); on a grid without shared streams the per-pull sums are cheaper and sum in the per-pull
        registry path's order, bit for bit."""
        sim = self.sim
        cells, pulls = sim.out_vals.shape[-1] * sim.means.shape[1], sim.cfg.batch
        return self.draws.n_draws < self.draws.total_runs and cells <= 6 * pulls

    def _cell_sums(self, cells: torch.Tensor, tables: dict, vmu: torch.Tensor, cache: dict) -> torch.Tensor:
        """ηG [n, R, C·K] of n steps' pulls given as cells [n, D, C·B] of the draw's D rows or streams:
        G[r, x, a] = Σ_o N[d(r), x, a, o] g[r, x, a, o], the count N of each cell (context x, arm a, outcome o)
        among the pulls of run r's row or stream d(r) times that cell's ∂ℓ/∂log π (`_cell_coeffs`)."""
        sim, dr = self.sim, self.draws
        n, D, _ = cells.shape
        R, CK, O = vmu.shape[0], sim.means.numel(), sim.out_vals.shape[-1]
        if "cell_coef_lr" not in cache:  # [O, R, C·K], η folded in
            coef = self.eta(self._cell_coeffs(tables, vmu, cache).view(R, CK, O))
            cache["cell_coef_lr"] = coef.permute(2, 0, 1).contiguous()
        coef = cache["cell_coef_lr"]
        width = O * CK
        slot = tables["outcome_major"].take(cells) + (torch.arange(n * D, device=cells.device) * width).view(n, D, 1)
        N = torch.bincount(slot.view(-1), minlength=n * D * width).to(sim.dtype).view(n, D, O, CK)
        G = dr.ws.get("G", (n, R, CK), sim.dtype, sim.device)
        if dr.tiled:  # the runs repeat the streams 0..D−1 in order: broadcast
            Gv, coef = G.view(n, R // D, D, CK), coef.view(O, R // D, D, CK)
            N = N.unsqueeze(1)
        else:
            Gv, N = G, dr.rows(N, 1)
        torch.mul(N[..., 0, :], coef[0], out=Gv)
        for o in range(1, O):
            Gv.addcmul_(N[..., o, :], coef[o])
        return G

    def _cell_pulls(self, cells: torch.Tensor, ctx: torch.Tensor, coef: torch.Tensor, tables: dict, vmu: torch.Tensor):
        """(L(0) [R], flat indices c·K + a [R, C·B], ∂ℓ/∂log π [R, C·B]) of one step's pulls given as cells."""
        sim = self.sim
        R, C = ctx.shape
        pick = lambda name: tables[name].take(cells).view(R, C, -1)
        flat, _, batch = self.draws.pulls_batch(ctx, pick("arm"), pick("reward"), pick("logmu"), vmu, None)
        batch.logp = torch.zeros(flat.shape, dtype=sim.dtype, device=sim.device)
        return sim.objective(batch, **sim.params), flat, coef.gather(-1, cells)
