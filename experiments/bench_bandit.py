"""Benchmark: policy updates per second of the vectorised simulator against the strongest numpy peers, side by
side in one run.

    python experiments/bench_bandit.py [--steps 2000] [--baselines 21] [--seeds 32 | --runs N] [--arms 100]
        [--modes exact,sampled] [--device cpu|cuda|auto] [--threads 1] [--repeat 3] [--json FILE]

Grid: baselines × seeds runs (or --runs N, baselines cycled) of AsymRE with b = V^μ + δV on the paper bandit,
float64, Bernoulli rewards, fixed behaviour μ = π₀ unless named. Variants:
  floor          one torch.log_softmax over the [runs, arms] array per step: the least any step can cost
  exact-peer     the strong numpy expected update (`exact_peer`): clamped exponent, in place, no max pass
  exact-naive    the textbook numpy expected update: max-subtracted softmax, new arrays every step
  exact          Simulator, exact mode (registry ∂L/∂log π cached while μ is fixed, softmax chain rule)
  exact-ag       the same, differentiated by autograd through the whole step (`grad="autograd"`)
  exact-ratio    exact mode with TOPR (the gradient depends on π/μ: one registry call and backward per step)
  sampled-peer   the strong numpy sampled update (`SampledPeer`): alias-table draws of each pull's
                 (arm, outcome), one bincount, preallocated buffers; 64 pulls per step
  shared-peer    sampled-peer with the sweep's shared pulls: the runs of one seed learn from the same pulls at
                 every baseline, drawn and counted once per seed (`SharedPeer`; grids of baselines × seeds only)
  sampled        Simulator, sampled mode, 64 pulls per step, the runs of one seed sharing their pulls (what
                 `banditlab sweep` runs: `--pulls shared`)
  sampled-indep  the same with every run's pulls drawn independently (`--pulls independent`), as sampled-peer
  sampled-pulls  sampled with the per-pull registry call and backward that objectives with group statistics use
                 (`per_pull`): what sampled mode's table of each cell's gradient saves
  sampled-lag    sampled with behaviour lag:10 (μ ← π every 10 steps: per-run tables)
  sampled-mix    sampled with lag:10,mix:0.2:uniform
  group-peer     sampled-peer with the group baseline: V = the mean reward of the run's B pulls + δV
  sampled-group  sampled mode with AsymRE's group baseline (registry baseline="group"), against group-peer
  rng-torch      the uniforms alone that independent pulls draw (torch.rand, one call per step): its
                 torch.Generator fixes every sampled number, so this is a floor under sampled-indep's time
  rng-numpy      the same count from numpy's Generator.random, what sampled-peer draws
  loop           a plain per-run Python loop over the exact update (one run at a time, extrapolated)
Reports seconds, policy updates per second (runs × steps / s) and the ratio to the mode's strong peer (> 1:
faster). Timing is the process's CPU time on the CPU (robust to other processes on a shared machine; equal to
wall time for one thread on an idle one) and wall time on CUDA (--clock), best of --repeat; compare ratios
within one run. On CUDA the numpy peers and the loop are left out (they run on the CPU); `floor` runs on the
device.
Before timing, the peers are checked against banditlab: exact-peer and exact mode give the same final π.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import platform
import time

import numpy as np
import torch

from banditlab.science import bandits
from banditlab.registry.objectives import get_objective
from banditlab.science.simulator import SimConfig, Simulator


def exact_peer(logits0, means, mu, offsets, lr, steps, center_every=50):
    """The strong hand-written expected AsymRE update on a [runs, arms] array, Δl = η(μ(r̄ − V) − π(V^μ − V)),
    in place, with z = exp(max(l, −700)): no exp takes the slow underflow path, and no max pass is needed
    except a re-centring every `center_every` steps (a step moves a logit by at most 2η max|r̄ − V|, so e^l
    stays finite in between)."""
    l = np.repeat(logits0[None, :], len(offsets), 0)
    vmu = float(mu @ means)
    V = (vmu + offsets)[:, None]
    drive = lr * mu[None, :] * (means[None, :] - V)  # ημ(r̄ − V), constant for a fixed behaviour
    push = lr * (vmu - V)                            # η(V^μ − V)
    z, s, ones = np.empty_like(l), np.empty((len(offsets), 1)), np.ones((l.shape[1], 1))
    for t in range(steps):
        if t % center_every == 0:
            l -= l.max(-1, keepdims=True)
        np.maximum(l, -700.0, out=z)
        np.exp(z, out=z)
        np.matmul(z, ones, out=s)  # row sums by BLAS: faster than np.sum over a short last axis
        np.divide(push, s, out=s)
        z *= s
        l += drive
        l -= z
    return l


def naive_peer(logits0, means, mu, offsets, lr, steps):
    """The textbook numpy expected update: the same formula with a max-subtracted softmax and new arrays."""
    l = np.repeat(logits0[None, :], len(offsets), 0)
    vmu = float(mu @ means)
    V = (vmu + offsets)[:, None]
    drive, push = mu[None, :] * (means[None, :] - V), vmu - V
    for _ in range(steps):
        z = np.exp(l - l.max(-1, keepdims=True))
        l += lr * (drive - z / z.sum(-1, keepdims=True) * push)
    return l


def alias_table(p):
    """Walker's alias table of a distribution p [M] (Vose's construction): cell i keeps itself with probability
    prob[i], else gives alias[i]; one uniform u picks i = ⌊uM⌋ and uses uM − i as the coin."""
    M = len(p)
    scaled = np.asarray(p, float) * M / np.sum(p)
    prob, alias = np.ones(M), np.arange(M)
    small = [i for i in range(M) if scaled[i] < 1.0]
    large = [i for i in range(M) if scaled[i] >= 1.0]
    while small and large:
        s, g = small.pop(), large.pop()
        prob[s], alias[s] = scaled[s], g
        scaled[g] -= 1.0 - scaled[s]
        (small if scaled[g] < 1.0 else large).append(g)
    return prob, alias


class SampledPeer:
    """The strong hand-written sampled AsymRE update (fixed behaviour μ, Bernoulli rewards in {0, 1}). Each step
    draws B pulls per run as cells (arm, outcome) from one alias table over μ(a)P(r|a), counts them with one
    bincount into n [runs, arms, 2] and applies the gradient step of ℓ = −(1/B) Σ_i (r_i − V) log π(a_i):
        Δl = (η/B)(D − π Σ_k D_k),   D_k = n_k1 (1 − V) − n_k0 V,
    in preallocated buffers, re-centring the logits every `center_every` steps. V = V^μ + δV, or with
    baseline="group" the mean reward of the run's B pulls + δV, Σ_k n_k1 / B + δV, recomputed every step."""

    def __init__(self, logits0, means, mu, offsets, lr, batch, seed=0, center_every=50, baseline="vmu"):
        R, K = len(offsets), len(means)
        self.center_every, self.t, self.group = center_every, 0, baseline == "group"
        self.l = np.repeat(logits0[None, :], R, 0)
        self.offsets = np.asarray(offsets, float)[:, None]
        self.V = (float(mu @ means) + offsets)[:, None]
        self.prob, self.alias = alias_table(np.stack([mu * (1 - means), mu * means], -1).reshape(-1))
        self.R, self.K, self.B, self.lr = R, K, batch, lr
        self.rng = np.random.default_rng(seed)
        self.u, self.cell = np.empty(R * batch), np.empty(R * batch, np.intp)
        self.keep = np.empty(R * batch, bool)
        self.offset = np.repeat(np.arange(R) * 2 * K, batch)
        self.z, self.s, self.D, self.sD = np.empty((R, K)), np.empty((R, 1)), np.empty((R, K)), np.empty((R, 1))
        self.tmp, self.ones, self.one_minus_V = np.empty((R, K)), np.ones((K, 1)), 1.0 - self.V
        # the arrays that `signed_counts` writes and reads, shaped to broadcast against the counts n
        self.counted = (self.D, self.tmp, self.V, self.one_minus_V)

    def draw(self):
        """The counts n [runs, arms, 2] of one step's B pulls per run."""
        return self._count(self.R)

    def _count(self, rows):
        """Alias-table draws of B pulls for each of `rows` rows, counted into n [rows, arms, 2]."""
        u, cell, keep = self.u, self.cell, self.keep
        self.rng.random(out=u)
        u *= 2 * self.K
        cell[:] = u   # ⌊uM⌋
        u -= cell     # the coin
        np.less(u, self.prob[cell], out=keep)
        np.logical_not(keep, out=keep)
        np.copyto(cell, self.alias[cell], where=keep)
        cell += self.offset
        return np.bincount(cell, minlength=rows * 2 * self.K).reshape(rows, self.K, 2)

    def signed_counts(self, n):
        """D = n₁(1 − V) − n₀V [runs, arms] from the counts n (into the step's buffer)."""
        D, tmp, V, one_minus_V = self.counted
        np.multiply(n[..., 1], one_minus_V, out=D)
        np.multiply(n[..., 0], V, out=tmp)
        D -= tmp
        return self.D

    def step(self, n):
        """One SGD step from the counts n; returns the logits [runs, arms] (updated in place)."""
        l, z, s, D, sD = self.l, self.z, self.s, self.D, self.sD
        if self.t % self.center_every == 0:  # a step moves a logit by at most 2η max|r − V|
            l -= l.max(-1, keepdims=True)
        self.t += 1
        if self.group:  # V = the group's mean reward + δV
            np.sum(n[..., 1], -1, keepdims=True, out=self.V, dtype=float)
            self.V *= 1.0 / self.B
            self.V += self.offsets
            np.subtract(1.0, self.V, out=self.one_minus_V)
        self.signed_counts(n)
        np.matmul(D, self.ones, out=sD)   # row sums by BLAS
        np.maximum(l, -700.0, out=z)
        np.exp(z, out=z)
        np.matmul(z, self.ones, out=s)
        np.divide(sD, s, out=s)
        z *= s
        D -= z
        D *= self.lr / self.B
        l += D
        return l

    def run(self, steps):
        for _ in range(steps):
            self.step(self.draw())
        return self.l


class SharedPeer(SampledPeer):
    """SampledPeer for a grid of baselines × seeds laid out baseline-major (run i·S + s: baseline i, seed s)
    whose runs of one seed learn from the same pulls (common random numbers, `banditlab sweep --pulls shared`):
    each step draws and counts B pulls per seed, n [seeds, arms, 2], and every baseline's run of seed s takes
    seed s's counts, D = n₁(1 − V) − n₀V broadcast over the baselines; the step is SampledPeer's."""

    def __init__(self, logits0, means, mu, offsets, lr, batch, seeds, seed=0, center_every=50):
        super().__init__(logits0, means, mu, offsets, lr, batch, seed, center_every)
        R, K, self.S = self.R, self.K, seeds
        if R % seeds:
            raise ValueError(f"SharedPeer: {R} runs are not whole baselines of {seeds} seeds")
        self.u, self.cell, self.keep = np.empty(seeds * batch), np.empty(seeds * batch, np.intp), np.empty(
            seeds * batch, bool)
        self.offset = np.repeat(np.arange(seeds) * 2 * K, batch)
        # [baselines, seeds, ·] views: each seed's counts broadcast over the baselines
        self.counted = (self.D.reshape(-1, seeds, K), self.tmp.reshape(-1, seeds, K), self.V.reshape(-1, seeds, 1),
                        self.one_minus_V.reshape(-1, seeds, 1))

    def draw(self):
        """The counts n [seeds, arms, 2] of one step's B pulls per seed."""
        return self._count(self.S)


def timed(fn, repeat=3, sync=lambda: None, clock=time.perf_counter):
    best = float("inf")
    for _ in range(repeat):
        t = clock()
        fn()
        sync()
        best = min(best, clock() - t)
    return best


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--baselines", type=int, default=21)
    ap.add_argument("--seeds", type=int, default=32)
    ap.add_argument("--runs", type=int, default=None, help="total runs (overrides --seeds; baselines cycled)")
    ap.add_argument("--arms", type=int, default=100)
    ap.add_argument("--batch", type=int, default=64, help="pulls per step in sampled mode")
    ap.add_argument("--modes", default="exact,sampled", help="comma-separated: exact, sampled")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads for every variant")
    ap.add_argument("--repeat", type=int, default=3, help="timings per variant (the best is kept)")
    ap.add_argument("--loop-runs", type=int, default=21, help="runs timed in the per-run loop (0: leave it out)")
    ap.add_argument("--clock", default="auto", choices=("auto", "process", "wall"),
                    help="process: this process's CPU time (robust on a shared machine, = wall time for 1 thread "
                         "on an idle one); wall: elapsed time; auto: process on the CPU, wall on CUDA")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    a = ap.parse_args(argv)
    a.modes = [m for m in a.modes.split(",") if m]
    if not set(a.modes) <= {"exact", "sampled"}:
        ap.error(f"--modes: expected exact and/or sampled, got {','.join(a.modes)}")
    if a.device == "auto":
        a.device = "cuda" if torch.cuda.is_available() else "cpu"
    if a.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: torch sees no CUDA device")
    if a.clock == "auto":
        a.clock = "wall" if a.device == "cuda" else "process"
    return a


def check_peers(b, offsets, steps, batch):
    """(max |Δπ| between exact-peer and exact mode after `steps`, max |Δ| between one SampledPeer step and the
    registry objective's gradient step on the same pulls, with the V^μ and the group baseline, and between one
    SharedPeer step and SampledPeer's on the same counts)."""
    asymre = get_objective("asymre", baseline="vmu")
    s = Simulator(b, asymre, {"offset": offsets}, SimConfig(mode="exact", steps=steps, log_every=max(1, steps // 10)))
    ours = torch.softmax(s.run(s.initial_state()).logits, -1)[:, 0].numpy()
    theirs = exact_peer(b.logits[0], b.means[0], b.mu[0], offsets, 1.0, steps)
    theirs = np.exp(theirs - theirs.max(-1, keepdims=True))
    exact_gap = np.abs(ours - theirs / theirs.sum(-1, keepdims=True)).max()
    return exact_gap, max([sampled_step_gap(b, offsets, batch, baseline=x) for x in ("vmu", "group")]
                          + [shared_step_gap(b, offsets, 3, batch)])


def shared_step_gap(b, offsets, seeds, batch, seed=0):
    """Max |Δ| between one SharedPeer step on a grid of offsets × seeds and one SampledPeer step on the same
    counts, each seed's counts given to every baseline's run of that seed (SampledPeer's step is checked against
    the registry by `sampled_step_gap`)."""
    grid = np.repeat(np.asarray(offsets, float), seeds)
    shared = SharedPeer(b.logits[0], b.means[0], b.mu[0], grid, 1.0, batch, seeds, seed)
    every = SampledPeer(b.logits[0], b.means[0], b.mu[0], grid, 1.0, batch, seed)
    n = shared.draw()
    return float(np.abs(shared.step(n) - every.step(np.tile(n, (len(offsets), 1, 1)))).max())


def sampled_step_gap(b, offsets, batch, seed=0, baseline="vmu"):
    """Draw one step of pulls with SampledPeer, rebuild them as a banditlab Batch (each run's pulls one group)
    and compare the peer's logits after one step with l − η(G − π ΣG), G = ∂ℓ/∂log π of the registry's AsymRE
    with the same baseline on that Batch."""
    from banditlab.registry.objectives import Batch

    peer = SampledPeer(b.logits[0], b.means[0], b.mu[0], offsets, 1.0, batch, seed, baseline=baseline)
    peer.t = 1  # no re-centring in this step
    l0 = peer.l.copy()
    n = peer.draw()
    l1 = peer.step(n).copy()
    R, K = n.shape[:2]
    cells = np.arange(2 * K)  # (arm, outcome) order
    arm_of, reward_of = cells // 2, (cells % 2).astype(float)
    rows = [np.repeat(cells, n[r].reshape(-1)) for r in range(R)]
    logp = torch.log_softmax(torch.as_tensor(l0), -1)
    leaf = torch.stack([logp[r, arm_of[c]] for r, c in enumerate(rows)]).detach().requires_grad_(True)
    logmu = torch.as_tensor(np.log(b.mu[0]))
    batch_ = Batch(leaf, torch.stack([logmu[arm_of[c]] for c in rows]),
                   torch.as_tensor(np.stack([reward_of[c] for c in rows])),
                   v_mu=torch.full((R, batch), float(b.mu[0] @ b.means[0]), dtype=torch.float64))
    obj = get_objective("asymre", baseline=baseline)
    (g,) = torch.autograd.grad(obj(batch_, offset=torch.as_tensor(offsets)[:, None]).sum(), leaf)
    G = torch.zeros(R, K, dtype=torch.float64)
    G.scatter_add_(1, torch.as_tensor(np.stack([arm_of[c] for c in rows])), g)
    pi = logp.exp()
    ours = torch.as_tensor(l0) - (G - pi * G.sum(-1, keepdim=True))
    return float((ours - torch.as_tensor(l1)).abs().max())


def per_pull(objective):
    """`objective` declared not per-sample, so that sampled mode differentiates the registry objective over every
    pull of a block instead of summing its table of each cell's gradient (the same numbers, bit for bit)."""
    fn = functools.wraps(objective.fn)(lambda *args, **kw: objective.fn(*args, **kw))  # copies the declarations
    fn.per_sample = lambda p: False
    return dataclasses.replace(objective, fn=fn)


def variants(a, offsets, streams, device):
    """{name: callable} of every variant for the modes asked; `streams`: each run's seed, whose pulls the
    sampled variants share across baselines (as `banditlab sweep` does)."""
    asymre, topr = get_objective("asymre", baseline="vmu"), get_objective("topr", baseline="vmu")
    asymre_group = get_objective("asymre", baseline="group")
    b = bandits.paper(arms=a.arms, noise="bernoulli")
    cfg = lambda mode, **kw: SimConfig(mode=mode, steps=a.steps, log_every=max(1, a.steps // 200), batch=a.batch,
                                       device=device, **kw)

    def sim(mode, obj=asymre, pulls="shared", **kw):
        s = Simulator(b, obj, {"offset": offsets} if obj is not topr else {}, cfg(mode, **kw), runs=len(offsets),
                      streams=streams if mode == "sampled" and pulls == "shared" else None)
        return lambda: s.run(s.initial_state())

    def loop():
        for o in offsets[: a.loop_runs]:
            s = Simulator(b, asymre, {"offset": np.array([o])}, cfg("exact"))
            s.run(s.initial_state())

    x = torch.randn(len(offsets), 1, a.arms, dtype=torch.float64, device=device)

    def floor():
        for _ in range(a.steps):
            torch.log_softmax(x, -1)

    cpu = device == "cpu"
    out = {"floor": floor}
    if "exact" in a.modes:
        if cpu:
            out["exact-peer"] = lambda: exact_peer(b.logits[0], b.means[0], b.mu[0], offsets, 1.0, a.steps)
            out["exact-naive"] = lambda: naive_peer(b.logits[0], b.means[0], b.mu[0], offsets, 1.0, a.steps)
        out.update({"exact": sim("exact"), "exact-ag": sim("exact", grad="autograd"),
                    "exact-ratio": sim("exact", obj=topr)})
        if cpu and a.loop_runs:
            out["loop"] = loop
    if "sampled" in a.modes:
        peer = lambda base: lambda: SampledPeer(b.logits[0], b.means[0], b.mu[0], offsets, 1.0, a.batch,
                                                baseline=base).run(a.steps)
        if cpu:
            out["sampled-peer"] = peer("vmu")
            if a.runs is None:
                out["shared-peer"] = lambda: SharedPeer(b.logits[0], b.means[0], b.mu[0], offsets, 1.0, a.batch,
                                                        a.seeds).run(a.steps)
        out.update({"sampled": sim("sampled"), "sampled-indep": sim("sampled", pulls="independent"),
                    "sampled-pulls": sim("sampled", obj=per_pull(asymre)),
                    "sampled-lag": sim("sampled", behavior="lag:10"),
                    "sampled-mix": sim("sampled", behavior="lag:10,mix:0.2:uniform")})
        if cpu:
            out["group-peer"] = peer("group")
        out["sampled-group"] = sim("sampled", obj=asymre_group)
        out["rng-torch"] = lambda: draws_torch(len(offsets), a.batch, a.steps, device)
        if cpu:
            out["rng-numpy"] = lambda: draws_numpy(len(offsets), a.batch, a.steps)
    return out


def draws_torch(runs, batch, steps, device):
    """sampled mode's uniforms alone: one [runs, 1, batch] float64 torch.rand per step from a torch.Generator."""
    g = torch.Generator(device=device).manual_seed(0)
    for _ in range(steps):
        torch.rand((runs, 1, batch), generator=g, device=device, dtype=torch.float64)


def draws_numpy(runs, batch, steps):
    """sampled-peer's uniforms alone: numpy's Generator.random into one preallocated buffer per step."""
    rng, u = np.random.default_rng(0), np.empty(runs * batch)
    for _ in range(steps):
        rng.random(out=u)


def peer_of(variant: str) -> str | None:
    """The strong peer a variant's "× peer" ratio is taken against (None for the floor)."""
    if variant == "floor":
        return None
    if variant in ("group-peer", "sampled-group"):
        return "group-peer"
    return "sampled-peer" if variant.startswith(("sampled", "rng", "shared")) else "exact-peer"


def main(argv=None):
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    lin = np.linspace(-0.5, 0.5, a.baselines)
    offsets = np.repeat(lin, a.seeds) if a.runs is None else lin[np.arange(a.runs) % a.baselines]
    runs = len(offsets)
    streams = np.tile(np.arange(a.seeds), a.baselines) if a.runs is None else np.arange(runs) // a.baselines
    sync = torch.cuda.synchronize if a.device == "cuda" else (lambda: None)
    clock = time.process_time if a.clock == "process" else time.perf_counter
    b = bandits.paper(arms=a.arms, noise="bernoulli")
    exact_gap, sampled_gap = check_peers(b, lin, min(a.steps, 500), a.batch)
    slow = 1 if a.steps > 3000 else a.repeat
    results = {}
    for name, fn in variants(a, offsets, streams, a.device).items():
        t = timed(fn, a.repeat if name in ("floor", "exact", "exact-peer", "sampled", "sampled-peer", "shared-peer")
                  else slow, sync, clock)
        results[name] = t * (runs / a.loop_runs if name == "loop" else 1)
    print(f"grid: {runs} runs × {a.arms} arms, {a.steps} steps, float64, device {a.device}, CPU {cpu_name()}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {a.clock} time")
    print(f"peer checks: exact-peer vs exact mode final π max |Δ| = {exact_gap:.1e}; sampled-peer step vs "
          f"registry gradient on the same pulls (and shared-peer vs sampled-peer on the same counts) max |Δ| = "
          f"{sampled_gap:.1e}")
    print(f"{'variant':<13} {'seconds':>8} {'updates/s':>13} {'× peer':>7} {'× floor':>8}")
    table = {}
    for k, t in results.items():
        peer = results.get(peer_of(k))
        table[k] = {"seconds": t, "updates_per_s": runs * a.steps / t, "vs_peer": peer / t if peer else None,
                    "vs_floor": results["floor"] / t}
        vs = f"{peer / t:>7.2f}" if peer else f"{'-':>7}"
        print(f"{k:<13} {t:>8.3f} {runs * a.steps / t:>13,.0f} {vs} {results['floor'] / t:>8.2f}")
    shared = results["shared-peer"] / results["sampled"] if {"shared-peer", "sampled"} <= set(results) else None
    if shared is not None:
        print(f"sampled against shared-peer (the same shared pulls, in numpy): {shared:.2f}×")
    if a.json:
        meta = {"runs": runs, "arms": a.arms, "steps": a.steps, "batch": a.batch, "device": a.device,
                "cpu": cpu_name(), "gpu": torch.cuda.get_device_name() if a.device == "cuda" else None,
                "torch": torch.__version__, "threads": torch.get_num_threads(), "clock": a.clock,
                "exact_peer_gap": exact_gap,
                "sampled_peer_gap": sampled_gap, "sampled_vs_shared_peer": shared}
        with open(a.json, "w") as f:
            json.dump({"config": meta, "results": table}, f, indent=1)
    return table


if __name__ == "__main__":
    main()
