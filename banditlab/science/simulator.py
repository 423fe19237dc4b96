"""Vectorised simulation of off-policy policy gradient on tabular softmax bandits.

All runs (seeds × baselines × any swept objective parameter) live in one tensor of logits [R, C, K]
(runs × contexts × arms) and take one step together: a step is one call of a registry objective
(`banditlab.registry.objectives`) on a `Batch` of log π, whose gradient G = ∂ℓ/∂log π goes through the softmax chain rule
by hand, ∂ℓ/∂l = G − π Σ G, and plain SGD on the logits, l ← l − η ∂ℓ/∂l (`logit_grad`). Objectives linear in
log π reuse G while the behaviour is unchanged (`_fast_step`); `SimConfig.grad = "autograd"` differentiates the
whole step instead, the reference the tests compare with to 1e-12. A grid can be one shard of a larger grid
(`shard_rows`): its random draws are the whole grid's, sliced. Runs can share their random draws (`streams`:
common random numbers, e.g. the runs of one seed at every baseline).

Two update modes:
    exact    the expected (infinite-batch) update: every (context, arm, reward outcome) is one sample with
             weight p(x) μ(a|x) P(r|a), so the loss is E_μ[ℓ] exactly. A group-mean baseline therefore becomes
             V^μ(x) here, and RED-Drop keeps the expected fraction of negatives (see objectives.advantage).
             With AsymRE this is Δl(y) = η(a_y − b π(y)) of theory.py.
    sampled  each step draws C groups (a context x ~ p(x) each) of B pulls a ~ μ(·|x) and rewards from the
             noise model; one group plays the part of one prompt's G samples in an LLM batch. With a fixed
             behaviour and Bernoulli or no noise every run draws from one table (`guide_table`), and an objective
             whose pulls' gradients depend on the pull alone sums a table of each cell's gradient
             (`_cell_coeffs`): the numbers of the registry called on every pull, bit for bit on the CPU (CUDA's
             atomic `scatter_add_` sums in no fixed order on either path); with shared streams, from each
             stream's cell counts (`_cell_sums`), the same numbers to rounding.

Behaviour policy μ (`Behavior`, parsed from strings such as "fixed", "lag:10", "lag:1,mix:0.2:uniform"):
    fixed       μ = π₀ forever (fully offline)             lag:N    μ ← π every N steps (lag:1 = on-policy)
    delay:K     the copied policy is the one K steps old   mix:α[:init|uniform]  μ = (1−α) μ_lag + α π_ref
Exact tracking, every `log_every` steps and at the end (context-averaged with p(x)): J(π_t) = Σ π r̄, V^μ_t,
entropy H(π_t), support size #{a: π(a) ≥ support_eps}, KL(μ‖π), P(best arm), min logit (after centring, max = 0)
and the loss value. Runs whose logits stop being finite are frozen at their last good state and flagged.

Deliberately left out: optimisers other than SGD (the theorems are about SGD) and per-run random generators (one
torch.Generator serves the whole grid: a run's numbers depend on --seed, the grid and its streams).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from banditlab.science.bandits import Bandit
from banditlab.registry.objectives import Batch, Objective
from banditlab.science.theory import SUPPORT_EPS

METRICS = ("expected_reward", "v_mu", "entropy", "support_size", "kl_mu_pi", "p_best", "min_logit", "loss")


def _exp_torch(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    return torch.exp(torch.clamp_min(x, -700.0, out=out), out=out)


def _exp_numpy(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    buf = torch.clamp_min(x, -700.0, out=out).numpy()
    with np.errstate(over="ignore"):  # an overflow shows as Σ z = inf, which the callers check
        np.exp(buf, out=buf)
    return out


_EXP_KERNELS = {"torch": _exp_torch, "numpy": _exp_numpy}
_choice: dict = {}


def fastest(name: str, kernels: dict, *args) -> str:
    """The name of the fastest of `kernels` (functions of `args`) on this machine: numpy's and torch's CPU kernels
    differ by 2× either way between CPUs (numpy's float64 exp is 2× faster than torch's on some, 2.4× slower on
    others). Best of 5 alternating rounds of 4 calls, measured once per machine and remembered in
    CACHE/kernels.json under the CPU model and library versions: on some machines the two exps differ in the last
    bit (float64: about 5 % of values on an AMD EPYC, none on an Intel Xeon; float32: about 40 % on that Xeon), so
    a choice that flipped with the machine's load would make a rerun or a resumed run differ.
    BANDITLAB_KERNEL=numpy|torch forces one (the same numbers across machines of one CPU model)."""
    if name in _choice:
        return _choice[name]
    forced = os.environ.get("BANDITLAB_KERNEL", "")
    key = f"{name} | {_machine()}"
    memo = _read_memo()
    if forced in kernels:
        _choice[name] = forced
    elif memo.get(key) in kernels:
        _choice[name] = memo[key]
    else:
        import time

        best = {k: float("inf") for k in kernels}
        for _ in range(5):
            for k, fn in kernels.items():
                t = time.perf_counter()
                for _ in range(4):
                    fn(*args)
                best[k] = min(best[k], time.perf_counter() - t)
        _choice[name] = min(best, key=best.get)
        _write_memo({**_read_memo(), key: _choice[name]})
    return _choice[name]


def _machine() -> str:
    """The CPU model and the versions whose kernels are compared."""
    import platform

    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), model)
    except OSError:
        pass
    return f"{model} | torch {torch.__version__} | numpy {np.__version__}"


def _memo_path():
    from banditlab.plumbing.safeio import cache_dir

    return cache_dir() / "kernels.json"


def _read_memo() -> dict:
    """The remembered choices; an unreadable or foreign file counts as none (it is measured again)."""
    import json

    try:
        memo = json.loads(_memo_path().read_text()[: 1 << 20])
    except (OSError, ValueError, RuntimeError):
        return {}
    if not isinstance(memo, dict):
        return {}
    return {k: v for k, v in memo.items() if isinstance(k, str) and isinstance(v, str)}


def _write_memo(memo: dict) -> None:
    """Atomically; a cache that cannot be written leaves the choice to this process alone."""
    import json

    try:
        path = _memo_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(memo, indent=1, sort_keys=True))
        os.replace(tmp, path)
    except (OSError, RuntimeError):
        pass


def exp_kernel(dtype: torch.dtype) -> str:
    """"numpy" or "torch": the faster CPU exp for `dtype` here (timed on 16k values, about 5 ms)."""
    name = f"exp-{dtype}"
    if name not in _choice:
        x = torch.linspace(-30.0, 5.0, 1 << 14, dtype=dtype)
        fastest(name, _EXP_KERNELS, x, torch.empty_like(x))
    return _choice[name]


def exp_clamped(x: torch.Tensor, out: torch.Tensor, clamp: bool = True) -> torch.Tensor:
    """out = exp(max(x, −700)): below −745 exp underflows on a slow path (4–8× slower), while e^−700 = 1e−304
    is below one ulp of any sum it enters. `clamp=False` skips the max when the caller knows x > −700.
    On the CPU by the faster kernel of `exp_kernel`."""
    if x.device.type != "cpu":
        return _exp_torch(x, out) if clamp else torch.exp(x, out=out)
    if exp_kernel(x.dtype) == "torch":
        return _exp_torch(x, out) if clamp else torch.exp(x, out=out)
    if clamp:
        return _exp_numpy(x, out)
    with np.errstate(over="ignore"):
        np.exp(x.numpy(), out=out.numpy())
    return out


def _alias_torch(u: torch.Tensor, base: torch.Tensor | None, M: int, prob: torch.Tensor, alias: torch.Tensor):
    """Walker's alias method on flat tables of M cells per context: u ∈ [0, 1) picks cell i = base + ⌊uM⌋
    (base = c·M for context c), kept when the coin uM − ⌊uM⌋ < prob[i], else alias[i]. Returns flat cell ids."""
    x = u * M
    i = x.long().clamp_max_(M - 1)
    coin = x.sub_(i)
    if base is not None:
        i += base
    return torch.where(coin < prob.take(i), i, alias.take(i))


def _alias_split(u: np.ndarray, M: int) -> tuple[np.ndarray, np.ndarray]:
    """(i, coin) of the alias method in numpy: i = min(⌊uM⌋, M − 1) and coin = uM − i, by `_alias_torch`'s
    floating-point operations."""
    x = u * M
    i = np.minimum(x.astype(np.intp), M - 1)
    x -= i
    return i, x


def _alias_numpy(u: np.ndarray, base: np.ndarray | None, M: int, prob: np.ndarray, alias: np.ndarray):
    """`_alias_torch` in numpy: the same floating-point operations, so the same cells."""
    i, coin = _alias_split(u, M)
    if base is not None:
        i += base
    return np.where(coin < prob.take(i), i, alias.take(i))


def guide_table(prob: np.ndarray, alias: np.ndarray, C: int, M: int, dtype) -> tuple[np.ndarray, int]:
    """(table [C·L], L): the alias method's cell for u ∈ [j/L, (j+1)/L) in context c at index c·L + j, or −1 where
    the alias method gives more than one cell on that interval. L is a power of two, so j = ⌊uL⌋ is exact. The
    alias method's cell is a monotone function of uM and its coin, so it is one cell on an interval exactly when it
    is the same cell, from the same ⌊uM⌋, at the interval's two ends (the lowest and the highest float of the
    draw's dtype in it): evaluated here with the very operations of `_alias_numpy`. At most 2M of the L
    intervals of a context are ambiguous (L ≥ 256 M where memory allows: under 1 % of draws)."""
    L = 1 << int(np.clip(math.ceil(math.log2(256 * M)), 8, 20))
    while C * L > 1 << 22 and L > 256:
        L //= 2
    j = np.arange(L)
    lo = (j / L).astype(dtype)
    hi = np.nextafter(((j + 1) / L).astype(dtype), dtype(0))
    table = np.empty((C, L), dtype=np.int64)
    for c in range(C):
        p, a = prob[c * M:(c + 1) * M], alias[c * M:(c + 1) * M] - c * M
        ends = [(_alias_split(u, M)[0], _alias_numpy(u, None, M, p, a)) for u in (lo, hi)]
        (i_lo, cell_lo), (i_hi, cell_hi) = ends
        table[c] = np.where((i_lo == i_hi) & (cell_lo == cell_hi), cell_lo + c * M, -1)
    return table.reshape(-1), L


def _same_device(a: torch.device, b: torch.device) -> bool:
    """Whether tensors on `a` are on `b`, where "cuda" means the current CUDA device ("cuda:0" != "cuda" in torch)."""
    return a.type == b.type and (b.index is None or a.index == b.index)


class Workspace:
    """Arrays reused from one block of sampled steps to the next, grown when a block needs more: the uniforms, the
    numpy kernels' per-pull temporaries and G. A block's per-pull arrays are megabytes; allocated afresh in every
    block they page-faulted (0.55 s of system time in the 1.5 s simulation of the default sweep, measured), which
    the strong numpy peer's preallocated buffers avoid. A block's outputs (G, the cells) are views into it, valid
    until the next block is drawn. The torch kernels (the CPU's choice on some machines, and CUDA's) allocate their
    temporaries and keep only the uniforms and G here."""

    def __init__(self):
        self._flat: dict = {}

    def get(self, name: str, shape: tuple, dtype, device: torch.device | None = None):
        """An uninitialised array of `shape`: numpy for a numpy dtype, torch (on `device`) for a torch dtype."""
        size = math.prod(shape)
        flat = self._flat.get(name)
        moved = device is not None and flat is not None and not _same_device(flat.device, device)
        if flat is None or flat.dtype != dtype or len(flat) < size or moved:
            on_torch = isinstance(dtype, torch.dtype)
            flat = torch.empty(size, dtype=dtype, device=device) if on_torch else np.empty(size, dtype)
            self._flat[name] = flat
        return flat[:size].reshape(shape)


def _cells_torch(u: torch.Tensor, ctx: torch.Tensor | None, tables: dict, ws: Workspace) -> torch.Tensor:
    """Flat cell ids of draws u [..., C, B] (contexts ctx [..., C, 1] or None): the guide table's cell where it
    has one, the alias method's elsewhere; the same cells as the alias method alone."""
    L, M = tables["L"], tables["M"]
    j = (u * L).long()
    if ctx is not None:
        j += ctx * L
    cell = tables["guide"].take(j)
    miss = (cell < 0).nonzero(as_tuple=True)
    if miss[0].numel():
        base = None if ctx is None else (ctx * M).expand_as(u)[miss]
        cell[miss] = _alias_torch(u[miss], base, M, tables["prob"], tables["alias"])
    return cell


def _cells_numpy(u: torch.Tensor, ctx: torch.Tensor | None, tables: dict, ws: Workspace) -> torch.Tensor:
    """`_cells_torch` with numpy's kernels into `ws`'s arrays (on the CPU)."""
    L, M = tables["L"], tables["M"]
    un = u.numpy()
    x = np.multiply(un, L, out=ws.get("x", un.shape, un.dtype))
    j = ws.get("j", un.shape, np.intp)
    np.copyto(j, x, casting="unsafe")  # truncation: ⌊uL⌋
    if ctx is not None:
        j += ctx.numpy() * L
    cell = np.take(tables["guide"].numpy(), j, out=ws.get("cell", un.shape, np.int64), mode="clip")  # in range
    miss = np.flatnonzero(np.less(cell, 0, out=ws.get("miss", un.shape, np.bool_)))
    if miss.size:
        base = None if ctx is None else np.broadcast_to(ctx.numpy() * M, un.shape).reshape(-1)[miss]
        cell.reshape(-1)[miss] = _alias_numpy(un.reshape(-1)[miss], base, M, tables["prob"].numpy(),
                                              tables["alias"].numpy())
    return torch.from_numpy(cell)


def _accumulate_torch(cells: torch.Tensor, coef: torch.Tensor, arm: torch.Tensor, width: int,
                      ws: Workspace) -> torch.Tensor:
    """G [n, R, width] with G[k, r, arm[c]] = Σ coef[r, c] over step k's pulls of run r (cells [n, R, P]), summed in
    pull order (the order of the per-pull registry path's `scatter_add_`)."""
    n, R, P = cells.shape
    run = torch.arange(R, device=cells.device)[:, None]
    idx = cells + run * coef.shape[-1]  # (run, cell)
    w = coef.reshape(-1).take(idx)
    slot = (arm[None, :] + run * width).reshape(-1).take(idx)
    slot += torch.arange(n, device=cells.device).view(n, 1, 1) * (R * width)
    G = ws.get("G", (n * R * width,), coef.dtype, coef.device).zero_()
    return G.scatter_add_(0, slot.reshape(-1), w.reshape(-1)).view(n, R, width)


def _accumulate_numpy(cells: torch.Tensor, coef: torch.Tensor, arm: torch.Tensor, width: int,
                      ws: Workspace) -> torch.Tensor:
    """`_accumulate_torch` with numpy's gathers into `ws`'s arrays (on the CPU); the same sums."""
    n, R, P = cells.shape
    idx = np.add(cells.numpy(), np.arange(R)[:, None] * coef.shape[-1], out=ws.get("idx", (n, R, P), np.intp))
    w = np.take(coef.numpy().reshape(-1), idx, out=ws.get("w", (n, R, P), coef.numpy().dtype), mode="clip")
    slot = np.take((arm.numpy() + np.arange(R)[:, None] * width).reshape(-1), idx,
                   out=ws.get("slot", (n, R, P), np.intp), mode="clip")  # in range by construction
    slot += np.arange(n).reshape(n, 1, 1) * (R * width)
    G = ws.get("G", (n * R * width,), coef.dtype, coef.device).zero_()
    return G.scatter_add_(0, torch.from_numpy(slot).reshape(-1), torch.from_numpy(w).reshape(-1)).view(n, R, width)


@dataclass(frozen=True)
class Behavior:
    lag: int | None = None     # None: fixed behaviour μ = π₀
    delay: int = 0
    mix: float = 0.0
    mix_ref: str = "init"      # init (π₀) | uniform

    @staticmethod
    def parse(text: str) -> "Behavior":
        """Parse 'fixed', 'on-policy', 'lag:N', 'delay:K', 'mix:A[:init|uniform]', comma-combined."""
        out = {"lag": None, "delay": 0, "mix": 0.0, "mix_ref": "init"}
        err = f"--behavior {text!r}: expected fixed, on-policy, lag:N, delay:K or mix:A[:init|uniform], comma-separated"
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, _, rest = part.partition(":")
            try:
                if name == "fixed" and not rest:
                    out["lag"] = None
                elif name == "on-policy" and not rest:
                    out["lag"] = 1
                elif name == "lag":
                    out["lag"] = int(rest)
                    if out["lag"] < 1:
                        raise ValueError
                elif name == "delay":
                    out["delay"] = int(rest)
                    if out["delay"] < 0:
                        raise ValueError
                elif name == "mix":
                    alpha, _, ref = rest.partition(":")
                    out["mix"], out["mix_ref"] = float(alpha), ref or "init"
                    if not 0.0 <= out["mix"] <= 1.0 or out["mix_ref"] not in ("init", "uniform"):
                        raise ValueError
                else:
                    raise ValueError
            except ValueError:
                raise ValueError(err) from None
        if out["delay"] and out["lag"] is None:
            raise ValueError(f"--behavior {text!r}: delay:K needs lag:N (a fixed behaviour never refreshes)")
        return Behavior(**out)

    @property
    def is_fixed(self) -> bool:
        return self.lag is None


@dataclass
class SimConfig:
    mode: str = "sampled"          # exact | sampled
    steps: int = 3000              # SGD steps
    batch: int = 64                # pulls per group per step (sampled mode); G in the LLM papers
    lr: float = 1.0                # η, plain SGD on the logits (the Python API also takes one value per run)
    behavior: str = "fixed"        # see Behavior.parse
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
        ref = bandit.logits if self.behavior.mix_ref == "init" else np.zeros_like(bandit.logits)
        self.log_ref = torch.log_softmax(t(ref), -1)
        vals, probs = bandit.outcomes(cfg.gauss_nodes)
        self.out_vals, self.out_probs = t(vals), t(probs)              # [C, K, O]
        O = vals.shape[-1]
        self.exact_group = torch.arange(C, device=self.device).repeat_interleave(K * O)
        self.sample_group = torch.arange(C, device=self.device).repeat_interleave(cfg.batch)
        self.total_runs = total_runs or self.runs
        rows = np.arange(self.runs) if shard_rows is None else np.asarray(shard_rows)
        if rows.shape != (self.runs,) or (shard_rows is None and self.total_runs != self.runs):
            raise ValueError(f"shard_rows: expected one row of the {self.total_runs}-run grid per run ({self.runs})")
        if streams is None:
            draw_rows, self._n_draws = rows, self.total_runs
        else:
            streams = np.asarray(streams)
            if (streams.shape != (self.total_runs,) or streams.dtype.kind not in "iu"
                    or not np.array_equal(np.unique(streams), np.arange(streams.max(initial=-1) + 1))):
                raise ValueError(f"streams: expected {self.total_runs} integers, one per run of the grid, that use "
                                 "every id from 0 to their largest")
            if objective.params.get("red_drop"):
                raise ValueError("streams: RED-Drop draws its drops inside the objective, one per run; give each "
                                 "run its own stream")
            draw_rows, self._n_draws = streams[rows], int(streams.max()) + 1
        # the rows of each draw (the grid's runs, or its streams) that this simulator's runs take; None: all, in order
        self._draw_rows = None if (self._n_draws == self.runs and np.array_equal(draw_rows, np.arange(self.runs))) \
            else torch.as_tensor(draw_rows, device=self.device)
        # runs laid out as whole repeats of the streams 0..D−1 (a grid of parameters × seeds): draws broadcast
        self._tiled = self._draw_rows is not None and self.runs % self._n_draws == 0 and np.array_equal(
            draw_rows, np.arange(self.runs) % self._n_draws)
        self._cached_mu: tuple | None = None
        self._z: torch.Tensor | None = None   # the fast step's exp buffer
        self._floor: float | None = None
        self._drift = float("inf")             # how far a logit may have moved since the last centring (sampled)
        self._step_bound: float | None = None  # how far one queued sampled step may move a logit (None: unknown)
        self._queue: list = []                 # sampled steps drawn ahead (`_pull_steps`)
        self._ws = Workspace()                 # their per-pull arrays
        self._fast_loss: torch.Tensor | None = None

    # ------------------------------------------------------------------------------------------ state
    def initial_state(self, logits: np.ndarray | None = None) -> SimState:
        """π₀ = the bandit's policy, or `logits` [R, C, K] (a different start on the same fixed behaviour μ)."""
        g = torch.Generator(device=self.device).manual_seed(self.seed)
        z = self.logits0
        pi0 = z.clone() if logits is None else torch.as_tensor(logits, dtype=self.dtype, device=self.device).clone()
        return SimState(0, pi0, z.clone(), [], torch.zeros(self.runs, dtype=torch.bool, device=self.device),
                        pi0.clone(), g.get_state())

    def behaviour_logp(self, snapshot: torch.Tensor) -> torch.Tensor:
        """log μ = log((1 − α) softmax(snapshot) + α π_ref), in log space."""
        lp = torch.log_softmax(snapshot, -1)
        a = self.behavior.mix
        if a == 0.0:
            return lp
        if a == 1.0:
            return self.log_ref.expand_as(lp)
        return torch.logaddexp(lp + math.log1p(-a), self.log_ref + math.log(a))

    def _behaviour(self, snapshot: torch.Tensor):
        """log μ, μ and V^μ(x) for the current snapshot, cached while the snapshot does not change."""
        if self._cached_mu is None or self._cached_mu[0] is not snapshot:
            logmu = self.behaviour_logp(snapshot)
            mu = logmu.exp()
            self._cached_mu = (snapshot, logmu, mu, (mu * self.means).sum(-1), {})
        return self._cached_mu[1:]

    # ------------------------------------------------------------------------------------------ batches
    def exact_batch(self, logp: torch.Tensor, snapshot: torch.Tensor) -> Batch:
        logmu, mu, vmu, cache = self._behaviour(snapshot)
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
        flat, arms, batch = self.sampled_pulls(snapshot, g, logp.shape[0])
        R = logp.shape[0]
        batch.logp = logp.reshape(R, -1).gather(-1, flat).reshape(R, -1)
        return batch

    def sampled_pulls(self, snapshot: torch.Tensor, g: torch.Generator, R: int):
        """One step's pulls: (flat index c·K + a of each pull into [R, C·K], its arm a, and a Batch whose logp
        is still unset): C groups of B pulls per run, contexts from p(x), arms from μ(·|x), rewards from the
        noise model."""
        logmu, mu, vmu, cache = self._behaviour(snapshot)
        C, K = self.means.shape
        ctx = self._contexts(g, R)
        if self._shared_table():  # one μ for every run: one alias table
            arms, reward, logp_old = self._alias_draw(cache, ctx, self._draw(torch.rand, (R, C, self.cfg.batch), g))
        else:
            pick = (lambda x: x) if C == 1 else (lambda x: x.gather(1, ctx[..., None].expand(R, C, x.shape[-1])))
            arms, reward, logp_old = self._cdf_draw(cache, mu, logmu, pick, g)
        return self._pulls_batch(ctx, arms, reward, logp_old, vmu, g)

    def _pulls_batch(self, ctx, arms, reward, logp_old, vmu, g):
        """(flat indices, arms, Batch without logp) from pulls shaped [..., C, B] with contexts [..., C]."""
        C, K = self.means.shape
        lead = arms.shape[:-2]
        flat = (arms if C == 1 else arms + K * ctx[..., None]).reshape(*lead, -1)
        v = vmu.expand(*lead, C).gather(-1, ctx)[..., None].expand(arms.shape)
        batch = Batch(None, logp_old.reshape(*lead, -1), reward.reshape(*lead, -1), group=self.sample_group,
                      v_mu=v.reshape(*lead, -1), generator=g)
        return flat, arms, batch

    def _contexts(self, g: torch.Generator, R: int, raw: bool = False) -> torch.Tensor:
        """[R, C] the context of each of the C groups of a step, drawn from p(x) (all 0 with one context);
        `raw`: [rows or streams, C] (see `_draw`)."""
        C = self.means.shape[0]
        R = self._n_draws if raw else R
        if C == 1:
            return torch.zeros(R, 1, dtype=torch.long, device=self.device)
        u = self._draw(torch.rand, (R, C), g, raw=raw)
        return torch.searchsorted(self.p_ctx.cumsum(0).expand(R, C).contiguous(), u).clamp_max(C - 1)

    def _shared_table(self) -> bool:
        return self.behavior.is_fixed and self.bandit.noise != "gaussian"

    def _alias_draw(self, cache: dict, ctx: torch.Tensor, u: torch.Tensor):
        """(arms, rewards, log μ(arm)) of pulls drawn from one alias table over the cells (arm, outcome) of
        each context, with probabilities μ(a|x) P(r|a, x), shared by every run (a fixed behaviour): see
        `_cells`."""
        tables = self._alias_tables(cache)
        cell = self._cells(tables, ctx, u)
        return tables["arm"].take(cell), tables["reward"].take(cell), tables["logmu"].take(cell)

    def _cells(self, tables: dict, ctx: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Flat cell ids c·M + (arm, outcome) of pulls [..., C, B] with contexts ctx [..., C] and uniforms u: one
        uniform per pull gives the cell i = ⌊uM⌋ of its context's M cells, kept when uM − i < prob[i] and
        replaced by alias[i] otherwise (Walker's method), looked up in one step from `guide_table` for all but
        the draws near the table's breakpoints. On the CPU by the faster of numpy's and torch's kernels."""
        ctx = ctx[..., None] if ctx.shape[1] > 1 else None
        if u.device.type != "cpu":
            return _cells_torch(u, ctx, tables, self._ws)
        kernels = {"torch": _cells_torch, "numpy": _cells_numpy}
        few = u.reshape(-1)[: 1 << 14]
        return kernels[fastest("cells", kernels, few, None, tables, self._ws)](u, ctx, tables, self._ws)

    def _alias_tables(self, cache: dict) -> dict:
        """Flat alias and guide tables over every context's (arm, outcome) cells, built once per behaviour
        (Vose's method), with each cell's arm, reward, log μ and flat arm index c·K + a."""
        if "alias" in cache:
            return cache["alias"]
        logmu = self._cached_mu[1][0]                             # [C, K], the same for every run
        vals, probs = self.out_vals.cpu().numpy(), self.out_probs.cpu().numpy()  # [C, K, O]
        C, K, O = vals.shape
        M = K * O
        p = (logmu.exp().cpu().numpy()[..., None] * probs).reshape(C, M)
        prob, alias = np.ones((C, M)), np.tile(np.arange(M), (C, 1))
        for c in range(C):
            scaled = p[c] * M / p[c].sum()
            small = [j for j in range(M) if scaled[j] < 1.0]
            large = [j for j in range(M) if scaled[j] >= 1.0]
            while small and large:
                lo, hi = small.pop(), large.pop()
                prob[c, lo], alias[c, lo] = scaled[lo], hi
                scaled[hi] -= 1.0 - scaled[lo]
                (small if scaled[hi] < 1.0 else large).append(hi)
        alias += np.arange(C)[:, None] * M                      # flat cell ids
        cells = np.arange(C * M)
        t = lambda x, dt=self.dtype: torch.as_tensor(x, dtype=dt, device=self.device)
        prob = t(prob.reshape(-1))
        prob_np = prob.cpu().numpy()  # the draws' dtype: the same comparisons
        guide, L = guide_table(prob_np, alias.reshape(-1), C, M, prob_np.dtype.type)
        cache["alias"] = {"M": M, "L": L, "prob": prob, "alias": t(alias.reshape(-1), torch.long),
                          "guide": t(guide, torch.long),
                          "arm": t((cells % M) // O, torch.long), "flat_arm": t(cells // M * K + (cells % M) // O,
                                                                                 torch.long),
                          "outcome_major": t(cells % O * (C * K) + cells // M * K + (cells % M) // O, torch.long),
                          "reward": t(vals.reshape(-1)), "logmu": t(np.repeat(logmu.cpu().numpy().reshape(-1), O))}
        return cache["alias"]

    def _cdf_draw(self, cache: dict, mu, logmu, pick, g):
        """(arms, rewards, log μ(arm)) by inverse-CDF sampling from each run's own μ, a = min{a : F_μ(a) ≥ u},
        and rewards from the noise model."""
        b, B = self.bandit, self.cfg.batch
        R, C, K = mu.shape
        rand = lambda *shape: self._draw(torch.rand, shape, g)
        if "cdf" not in cache:
            cdf = mu.cumsum(-1)
            cache["cdf"] = (cdf / cdf[..., -1:]).contiguous()
        arms = torch.searchsorted(pick(cache["cdf"]), rand(R, C, B)).clamp_max(K - 1)
        means = pick(self.means.expand(R, C, K)).gather(-1, arms)
        if b.noise == "bernoulli":
            hit = rand(R, C, B) < (means - b.low) / (b.high - b.low)
            reward = b.low + (b.high - b.low) * hit.to(self.dtype)
        elif b.noise == "gaussian":
            reward = means + b.sigma * self._draw(torch.randn, tuple(means.shape), g)
        else:
            reward = means
        return arms, reward, pick(logmu).gather(-1, arms)

    def _draw(self, fn, shape: tuple, g: torch.Generator, out: torch.Tensor | None = None,
              raw: bool = False) -> torch.Tensor:
        """Random numbers of `shape` ([runs, ...]), into `out` if given: one draw per row of the grid or per
        stream (`streams`), each run taking its row's; `raw`: the draw itself, [rows or streams, ...]."""
        if self._draw_rows is None or raw:
            shape = (self._n_draws, *shape[1:])
            if out is not None:
                return fn(shape, generator=g, out=out)
            return fn(shape, generator=g, device=self.device, dtype=self.dtype)
        full = fn((self._n_draws, *shape[1:]), generator=g, device=self.device, dtype=self.dtype)
        if out is not None:
            return torch.index_select(full, 0, self._draw_rows, out=out)
        return full[self._draw_rows]

    def _rows(self, x: torch.Tensor, dim: int = 0) -> torch.Tensor:
        """A raw draw's values ([..., rows or streams, ...] at `dim`) for this simulator's runs."""
        return x if self._draw_rows is None else x.index_select(dim, self._draw_rows)

    # ------------------------------------------------------------------------------------------ metrics
    def metrics(self, logits: torch.Tensor, snapshot: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
        """[R, len(METRICS)] exact metrics of π = softmax(l), context-averaged with p(x), from one exp of the
        centred logits l (max 0 in every row, as `_log` leaves them): with z = e^l and s = Σ z, π = z/s,
        H(π) = log s − Σ π l and KL(μ‖π) = Σ μ log μ − Σ μ l + log s."""
        logmu, mu, vmu, cache = self._behaviour(snapshot)
        if "mu_logmu" not in cache:
            cache["mu_logmu"] = (mu * logmu).sum(-1)
        l = logits
        z = exp_clamped(l, torch.empty_like(l))
        s = z.sum(-1)
        log_s = s.log()
        pi = z.div_(s[..., None])
        avg = lambda x: (x * self.p_ctx).sum(-1)
        J = avg((pi * self.means).sum(-1))
        ent = avg(log_s - (pi * l).sum(-1))
        support = avg((pi >= self.cfg.support_eps).sum(-1).to(self.dtype))
        kl = avg(cache["mu_logmu"] - (mu * l).sum(-1) + log_s)
        pbest = avg(pi.gather(-1, self.best.expand(pi.shape[0], -1)[..., None])[..., 0])
        min_logit = l.amin(-1).amin(-1)
        return torch.stack([J, avg(vmu), ent, support, kl, pbest, min_logit, loss], -1)

    # ------------------------------------------------------------------------------------------ loop
    def run(self, state: SimState, until: int | None = None, on_step: Callable[[SimState], bool] | None = None
            ) -> SimState:
        """Advance `state` to step `until` (default cfg.steps). `on_step(state)` runs after every step and may
        return True to stop early at that step boundary (used for checkpoints and Ctrl-C)."""
        cfg, beh = self.cfg, self.behavior
        until = cfg.steps if until is None else until
        g = torch.Generator(device=self.device)
        g.set_state(state.rng)
        self._g = g  # `checkpoint` reads the live generator state, which `state.rng` holds only at logged steps
        if state.step == 0 and not state.log_steps:
            self._log(state, torch.full((self.runs,), float("nan"), dtype=self.dtype, device=self.device))
        self._floor = None  # the lowest logit at the last centring (see _fast_step), unknown until one
        self._drift = float("inf")  # and how far a logit has moved since (`_sampled_linear_step`)
        any_bad = bool(state.diverged.any())
        fast = cfg.grad == "analytic" and cfg.mode == "exact" and self.objective.linear_in_logp
        fast_sampled = cfg.grad == "analytic" and cfg.mode == "sampled" and self.objective.linear_in_logp
        R, C, K = state.logits.shape
        # steps drawn together: per-pull arrays of at most 2^19 values (4 MB in float64; blocks of 2^19 to 2^22 values
        # took the same time, measured), or one step where a step alone has more
        ahead = max(1, min(64, (1 << 19) // (R * C * max(K, cfg.batch))))
        self._queue = []
        while state.step < until:
            t = state.step
            if beh.lag is not None:  # copies, because the fast path updates state.logits in place
                if beh.delay:
                    state.history.append(state.logits.clone())
                    state.history = state.history[-(beh.delay + 1):]
                if t % beh.lag == 0:
                    state.snapshot = state.history[0] if (beh.delay and t >= beh.delay) else (
                        self.logits0 if beh.delay else state.logits.clone())
            logged = (t + 1) % cfg.log_every == 0 or t + 1 == cfg.steps
            if fast_sampled and not any_bad:
                self._sampled_linear_step(state, g, logged, min(ahead, until - t))
            elif not (fast and not any_bad and self._fast_step(state, logged)):
                if self._queue:  # a run diverged: drop the steps drawn ahead and draw from this step on
                    g.set_state(self._queue[0][0])
                    self._queue = []
                grad, loss = self.logit_grad(state.logits, state.snapshot, g, need_loss=logged)
                step = state.logits - self.lr * grad
                state.logits = torch.where(state.diverged[:, None, None], state.logits, step) if any_bad else step
                self._fast_loss = loss
            state.step = t + 1
            if logged:
                state.rng = self._rng_now(g)
                self._log(state, self._fast_loss.detach())
                any_bad = bool(state.diverged.any())
            if on_step is not None and on_step(state):
                break
        state.rng = self._rng_now(g)
        self._queue = []
        self._g = None  # between runs the state's own generator state is the truth (steps drawn ahead are dropped)
        return state

    def checkpoint(self, state: SimState) -> dict:
        """Everything needed to resume `state` bit for bit at a step boundary, including the generator's
        current state (call from `on_step`)."""
        d = state.to_dict()
        if getattr(self, "_g", None) is not None:
            d["rng"] = self._rng_now(self._g)
        return d

    def _fast_step(self, state: SimState, logged: bool) -> bool:
        """The cached exact step for objectives linear in log π, in place: with z = exp(l) and s = Σ z,
        l ← l − η G + z · (η S / s), i.e. l − η(G − π S), without a max-subtraction pass. The step keeps Σ_k l_k
        fixed and moves any logit by at most η(max|G| + max|S|); logits are re-centred (max 0) at every logged
        step, so when log_every · η(max|G| + max|S|) < 600 neither exp(l) nor Σ z can leave float range before
        the next centring (`safe`); otherwise each step checks Σ z and falls back to the general step. When also
        the lowest logit at the last centring minus that bound stays above −700, exp needs no clamp.
        Returns False to fall back."""
        cache = self._behaviour(state.snapshot)[3]
        if "fast" not in cache:
            G, S = self._linear_coeffs(state.logits, state.snapshot)
            lrG, lrS = self.lr * G, self.lr * S
            bound = float(lrG.abs().max() + lrS.abs().max()) * self.cfg.log_every
            cache["fast"] = (lrG, lrS, bound < 600 and self.dtype == torch.float64, bound)
        lrG, lrS, safe, bound = cache["fast"]
        l = state.logits
        if self._z is None or self._z.shape != l.shape:
            self._z = torch.empty_like(l)
        z = exp_clamped(l, self._z, clamp=not (safe and self._above_clamp(bound)))
        s = z.sum(-1, keepdim=True)
        if not safe and not bool(((s > 0) & torch.isfinite(s)).all()):
            return False
        if logged:  # the loss before the update, as the general step reports it; linear in log π = l − log s:
            G, S = cache["G"]  # L = Σ G (l − log s) + L(0)
            if "L0" not in cache:
                cache["L0"] = self.objective(self.exact_batch(torch.zeros_like(l), state.snapshot), **self.params)
            self._fast_loss = (G * l).sum((-1, -2)) - (S * torch.log(s)).sum((-1, -2)) + cache["L0"]
        l.sub_(lrG).addcmul_(z, lrS / s)
        return True

    def _above_clamp(self, reach: float) -> bool:
        """Whether every logit is above exp's clamp at −700 when none has moved more than `reach` since the last
        centring, whose lowest logit was `_floor` (unknown before the first centring of a `run`)."""
        return self._floor is not None and self._floor - reach > -700

    def _sampled_linear_step(self, state: SimState, g: torch.Generator, logged: bool, ahead: int) -> None:
        """The sampled step for objectives linear in log π, in place. Their G = ∂ℓ/∂log π does not depend on
        log π, so the registry objective is differentiated on a zero leaf over the pulls only (no softmax of
        every logit), G is scattered onto the arms, and l ← l − η G + z · (η S / s) with z = exp(l), s = Σ z,
        S = Σ_k G_k, as in `_fast_step`; where s leaves float range the step uses softmax(l) instead. With
        per-sample gradients a step moves a logit by at most 2Bη max|g| (`_cell_bound`), so the drift since the
        last centring bounds the logits: the range check and exp's clamp are left out where it shows them
        unneeded. The loss at a logged step is L(0) + Σ_i G_i log π(a_i). With a fixed behaviour the pulls do
        not depend on π, so up to `ahead` steps are drawn (in the same order as one at a time) and
        differentiated together."""
        if not self._queue:
            self._queue = self._pull_steps(state, g, ahead)
        _, lrG, lrS, pulls = self._queue.pop(0)
        l = state.logits
        if self._z is None or self._z.shape != l.shape:
            self._z = torch.empty_like(l)
        # the logits lie in [floor − drift, drift] (max 0 at the last centring): with drift < 600 in float64,
        # e^l and Σ e^l stay in range (no check), and with floor − drift > −700 exp needs no clamp
        safe = self._step_bound is not None and self._drift < 600 and self.dtype == torch.float64
        z = exp_clamped(l, self._z, clamp=not (safe and self._above_clamp(self._drift)))
        s = z.sum(-1, keepdim=True)
        if logged:
            loss0, flat, coef = pulls()
            logp = (l - s.log()).reshape(l.shape[0], -1).gather(-1, flat)
            self._fast_loss = loss0 + (coef * logp).sum(-1)
        if not safe and not bool(((s > 0) & torch.isfinite(s)).all()):
            z, s = torch.softmax(l, -1), torch.ones_like(s)
        l.sub_(lrG).addcmul_(z, lrS / s)
        self._drift += self._step_bound if self._step_bound is not None else float("inf")

    def _pull_steps(self, state: SimState, g: torch.Generator, n: int) -> list:
        """[(generator state before the step, ηG, ηS, pulls)] for the next n steps (one step unless the behaviour
        is fixed and the objective draws no random numbers of its own); pulls() gives the step's (L(0), flat
        indices, ∂ℓ/∂log π(a_i)), which a logged step's loss needs. For objectives whose every pull's gradient
        depends on that pull alone (`Objective.per_sample`), G sums a table of each cell's gradient
        (`_cell_coeffs`) over the pulls' cells, and pulls() is computed for logged steps only."""
        R, C, K = state.logits.shape
        logmu, mu, vmu, cache = self._behaviour(state.snapshot)
        if not (self._shared_table() and not self.objective.params.get("red_drop")):
            n = 1
        self._step_bound = None
        rngs, ctxs = [], []
        D = self._n_draws  # the draw's rows: the grid's runs or its streams
        u = self._ws.get("u", (n, D, C, self.cfg.batch), self.dtype, self.device) if self._shared_table() else None
        for k in range(n):
            rngs.append(g.get_state())
            ctxs.append(self._contexts(g, R, raw=True))
            if u is not None:
                self._draw(torch.rand, (R, C, self.cfg.batch), g, out=u[k], raw=True)
        if u is not None and self.objective.per_sample:
            ctx, tables = torch.stack(ctxs), self._alias_tables(cache)
            cells = self._cells(tables, ctx.reshape(n * D, C), u.view(n * D, C, -1)).view(n, D, -1)
            coef = self._cell_coeffs(tables, vmu, cache)
            self._step_bound = self._cell_bound(coef, cache)
            pulls = [lambda k=k: self._cell_pulls(self._rows(cells[k]), self._rows(ctx[k]), coef, tables, vmu)
                     for k in range(n)]
            if self._counting():  # η is folded into the counted sums
                G = self._cell_sums(cells, tables, vmu, cache).view(n, R, C, K)
                S = G.sum(-1, keepdim=True)
                return [(rngs[k], G[k], S[k], pulls[k]) for k in range(n)]
            pc = self._rows(cells, 1)
            kernels = {"torch": _accumulate_torch, "numpy": _accumulate_numpy}
            name = "torch" if self.device.type != "cpu" else fastest(
                "accumulate", kernels, pc[:1, : max(1, (1 << 14) // pc.shape[-1])], coef, tables["flat_arm"],
                C * K, Workspace())
            G = kernels[name](pc, coef, tables["flat_arm"], C * K, self._ws).view(n, R, C, K)
        else:
            if u is not None:  # drawn for the draw's rows, then taken by the runs
                ctx = torch.stack(ctxs)
                pulls = self._alias_draw(cache, ctx.reshape(n * D, C), u.view(n * D, C, -1))
                arms, reward, logp_old = (self._rows(x.view(n, D, C, -1), 1) for x in pulls)
                flat, _, batch = self._pulls_batch(self._rows(ctx, 1), arms, reward, logp_old, vmu, g)
            else:
                g.set_state(rngs[0])
                flat, _, batch = self.sampled_pulls(state.snapshot, g, R)
                flat, batch.logp_old, batch.reward, batch.v_mu = (x[None] for x in (flat, batch.logp_old, batch.reward,
                                                                                     batch.v_mu))
            batch.logp = torch.zeros(flat.shape, dtype=self.dtype, device=self.device, requires_grad=True)
            loss0 = self.objective(batch, **self.params)
            (coef,) = torch.autograd.grad(loss0.sum(), batch.logp)
            G = torch.zeros(n, R, C * K, dtype=self.dtype, device=self.device).scatter_add_(2, flat, coef)
            G = G.view(n, R, C, K)
            loss0 = loss0.detach()
            pulls = [lambda k=k: (loss0[k], flat[k], coef[k]) for k in range(n)]
        S = G.sum(-1, keepdim=True)
        G, S = G.mul_(self.lr), S.mul_(self.lr)
        return [(rngs[k], G[k], S[k], pulls[k]) for k in range(n)]

    def _cell_coeffs(self, tables: dict, vmu: torch.Tensor, cache: dict) -> torch.Tensor:
        """[R, C·M] ∂ℓ/∂log π of one pull of each cell (context, arm, outcome) in a step's batch of C·B pulls,
        for an objective whose pulls' gradients depend on the pull alone (`Objective.per_sample`): one registry
        call on probe batches that hold every cell, once per behaviour. Each pull's gradient is computed by the
        same operations as in a batch of drawn pulls, so the sums of `_accumulate_*` are the same numbers."""
        if "cell_coef" in cache:
            return cache["cell_coef"]
        M, R, N = tables["M"], vmu.shape[0], self.sample_group.numel()
        CM = tables["arm"].numel()
        P = -(-CM // N)
        cell = torch.arange(P * N, device=self.device).clamp_max_(CM - 1)  # the last probe repeats the last cell
        probe = lambda x: x.view(R, P, N).transpose(0, 1)
        v = probe(vmu.gather(-1, (cell // M).expand(R, -1)))
        leaf = torch.zeros(P, R, N, dtype=self.dtype, device=self.device, requires_grad=True)
        batch = Batch(leaf, tables["logmu"].take(cell).view(P, 1, N).expand(P, R, N),
                      tables["reward"].take(cell).view(P, 1, N).expand(P, R, N), group=self.sample_group, v_mu=v)
        (c,) = torch.autograd.grad(self.objective(batch, **self.params).sum(), leaf)
        coef = torch.empty(R, CM, dtype=self.dtype, device=self.device)
        coef[:, cell] = c.transpose(0, 1).reshape(R, -1)
        cache["cell_coef"] = coef
        return coef

    def _cell_bound(self, coef: torch.Tensor, cache: dict) -> float:
        """How far one step may move a logit with per-sample gradients: η(max|G| + max|S|) ≤ 2 B η max|g|, as a
        context's G_k and S = Σ_k G_k each sum at most B of the cells' gradients g (`_cell_coeffs`)."""
        if "cell_bound" not in cache:
            lr = self.lr.reshape(-1, 1) if torch.is_tensor(self.lr) else self.lr
            cache["cell_bound"] = 2.0 * self.cfg.batch * float((coef.abs() * abs(lr)).max())
        return cache["cell_bound"]

    def _counting(self) -> bool:
        """Whether ηG is summed from each stream's cell counts (`_cell_sums`) rather than pull by pull
        (`_accumulate_*`): when the grid's runs share streams and a context's O·K cells are at most 6 times its
        B pulls (decided on the whole grid, so that a shard sums as the unsharded run does).
        Counting costs about one operation per cell and run, the per-pull sums about 7 per pull (measured on
        the CPU); on a grid without shared streams the per-pull sums are cheaper and sum in the per-pull
        registry path's order, bit for bit."""
        cells, pulls = self.out_vals.shape[-1] * self.means.shape[1], self.cfg.batch
        return self._n_draws < self.total_runs and cells <= 6 * pulls

    def _cell_sums(self, cells: torch.Tensor, tables: dict, vmu: torch.Tensor, cache: dict) -> torch.Tensor:
        """ηG [n, R, C·K] of n steps' pulls given as cells [n, D, C·B] of the draw's D rows or streams:
        G[r, x, a] = Σ_o N[d(r), x, a, o] g[r, x, a, o], the count N of each cell (context x, arm a, outcome o)
        among the pulls of run r's row or stream d(r) times that cell's ∂ℓ/∂log π (`_cell_coeffs`)."""
        n, D, _ = cells.shape
        R, CK, O = vmu.shape[0], self.means.numel(), self.out_vals.shape[-1]
        if "cell_coef_lr" not in cache:  # [O, R, C·K], η folded in
            coef = self._cell_coeffs(tables, vmu, cache).view(R, CK, O) * (
                self.lr.reshape(R, 1, 1) if torch.is_tensor(self.lr) else self.lr)
            cache["cell_coef_lr"] = coef.permute(2, 0, 1).contiguous()
        coef = cache["cell_coef_lr"]
        width = O * CK
        slot = tables["outcome_major"].take(cells) + (torch.arange(n * D, device=cells.device) * width).view(n, D, 1)
        N = torch.bincount(slot.view(-1), minlength=n * D * width).to(self.dtype).view(n, D, O, CK)
        G = self._ws.get("G", (n, R, CK), self.dtype, self.device)
        if self._tiled:  # the runs repeat the streams 0..D−1 in order: broadcast
            Gv, coef = G.view(n, R // D, D, CK), coef.view(O, R // D, D, CK)
            N = N.unsqueeze(1)
        else:
            Gv, N = G, self._rows(N, 1)
        torch.mul(N[..., 0, :], coef[0], out=Gv)
        for o in range(1, O):
            Gv.addcmul_(N[..., o, :], coef[o])
        return G

    def _cell_pulls(self, cells: torch.Tensor, ctx: torch.Tensor, coef: torch.Tensor, tables: dict, vmu: torch.Tensor):
        """(L(0) [R], flat indices c·K + a [R, C·B], ∂ℓ/∂log π [R, C·B]) of one step's pulls given as cells."""
        R, C = ctx.shape
        pick = lambda name: tables[name].take(cells).view(R, C, -1)
        flat, _, batch = self._pulls_batch(ctx, pick("arm"), pick("reward"), pick("logmu"), vmu, None)
        batch.logp = torch.zeros(flat.shape, dtype=self.dtype, device=self.device)
        return self.objective(batch, **self.params), flat, coef.gather(-1, cells)

    def _rng_now(self, g: torch.Generator) -> torch.Tensor:
        """The generator state at the current step boundary (before any steps drawn ahead)."""
        return self._queue[0][0] if self._queue else g.get_state()

    def _linear_coeffs(self, logits: torch.Tensor, snapshot: torch.Tensor):
        """(G, Σ_k G) for an objective linear in log π: G = ∂L/∂log π from the registry, computed once per snapshot."""
        cache = self._behaviour(snapshot)[3]
        if "G" not in cache:
            leaf = torch.log_softmax(logits, -1).detach().requires_grad_(True)
            (G,) = torch.autograd.grad(self.objective(self.exact_batch(leaf, snapshot), **self.params).sum(), leaf)
            cache["G"] = (G, G.sum(-1, keepdim=True))
        return cache["G"]

    def logit_grad(self, logits: torch.Tensor, snapshot: torch.Tensor, g: torch.Generator, need_loss: bool = True):
        """(∂L/∂logits [R, C, K], the per-run loss or None) for one step.

        The registry objective gives G = ∂L/∂log π (autograd over the objective alone, on a log π leaf); the
        softmax chain rule is applied by hand: ∂L/∂l_k = G_k − π_k Σ_j G_j. When the objective is linear in
        log π (`Objective.linear_in_logp`) and the update is exact, G depends only on the behaviour, so it is
        computed once per behaviour snapshot and a step costs one softmax and two elementwise ops.
        cfg.grad = "autograd" differentiates the whole step instead (the reference the tests compare with)."""
        cfg = self.cfg
        if cfg.grad == "autograd":
            leaf = logits.detach().requires_grad_(True)
            logp = torch.log_softmax(leaf, -1)
            loss = self.objective(self._batch(logp, snapshot, g), **self.params)
            (grad,) = torch.autograd.grad(loss.sum(), leaf)
            return grad, loss
        if cfg.mode == "exact" and self.objective.linear_in_logp:
            G, S = self._linear_coeffs(logits, snapshot)
            pi = torch.softmax(logits, -1)
            loss = (self.objective(self.exact_batch(torch.log_softmax(logits, -1), snapshot), **self.params)
                    if need_loss else None)
            return torch.addcmul(G, pi, S, value=-1), loss
        leaf = torch.log_softmax(logits, -1).detach().requires_grad_(True)
        loss = self.objective(self._batch(leaf, snapshot, g), **self.params)
        (G,) = torch.autograd.grad(loss.sum(), leaf)
        logp = leaf.detach()
        pi = exp_clamped(logp, torch.empty_like(logp))
        return torch.addcmul(G, pi, G.sum(-1, keepdim=True), value=-1), loss

    def _batch(self, logp: torch.Tensor, snapshot: torch.Tensor, g: torch.Generator) -> Batch:
        return self.exact_batch(logp, snapshot) if self.cfg.mode == "exact" else self.sampled_batch(logp, snapshot, g)

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
        self._floor = float(values[:, METRICS.index("min_logit")].min())
        self._drift = 0.0


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
