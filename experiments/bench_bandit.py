"""Benchmark: policy updates per second of the vectorised simulator, side by side in one run.

    python experiments/bench_bandit.py [--steps 2000] [--baselines 21] [--seeds 32] [--arms 100] [--threads 1]

Compares, on the same grid (baselines × seeds × arms, float64) and the same number of steps:
  floor        one torch.log_softmax over the [runs, arms] array per step: the least any step can cost
  numpy-peer   a hand-vectorised numpy loop of the expected AsymRE update, l += η(μ(r − V) − π(V^μ − V)),
               with μ(r − V) precomputed: what a researcher would write by hand for this one objective
  exact        Simulator, exact mode, Bernoulli noise (both outcomes enumerated): registry ∂L/∂log π, cached
               while the behaviour is fixed, plus the softmax chain rule (the default `grad="analytic"`)
  exact-ag     the same run differentiated by autograd through the whole step (`grad="autograd"`)
  exact-ratio  exact mode with TOPR (its gradient depends on π/μ, so it cannot be cached: one registry call
               and one small backward per step)
  sampled      Simulator in sampled mode (64 pulls per step, Bernoulli rewards)
  loop         a plain per-run Python loop over the exact update (one run at a time, extrapolated)
Reports seconds, policy updates per second (runs × steps / s) and the ratio to the numpy peer (> 1: faster).
Every variant runs with the same thread count (default 1: torch's intra-op threads thrash on a loaded 2-core
machine). Timing is wall clock, best of 3 (1 for the slow variants past 3,000 steps), on a noisy shared machine: compare the ratios within one run.
`banditlab sweep --mode exact` runs one replica per baseline (exact mode is deterministic): the line
"sweep, deduplicated" times that, the cost a user of the README's command actually pays for this grid.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from banditlab import bandits
from banditlab.objectives import get_objective
from banditlab.simulate import SimConfig, Simulator


def timed(fn, repeat=3):
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def numpy_peer(logits0, means, mu, offsets, lr, steps):
    """The hand-written expected AsymRE update on a [runs, arms] array."""
    l = np.repeat(logits0[None, :], len(offsets), 0).copy()
    vmu = float(mu @ means)
    V = (vmu + offsets)[:, None]
    drive = mu[None, :] * (means[None, :] - V)  # μ(r − V), constant for a fixed behaviour
    push = vmu - V                              # V^μ − V
    for _ in range(steps):
        z = np.exp(l - l.max(-1, keepdims=True))
        pi = z / z.sum(-1, keepdims=True)
        l += lr * (drive - pi * push)
    return l


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--baselines", type=int, default=21)
    ap.add_argument("--seeds", type=int, default=32)
    ap.add_argument("--arms", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads for every variant")
    ap.add_argument("--loop-runs", type=int, default=21, help="runs timed in the per-run loop (extrapolated)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    runs = a.baselines * a.seeds
    offsets = np.repeat(np.linspace(-0.5, 0.5, a.baselines), a.seeds)
    asymre = get_objective("asymre", baseline="vmu")
    topr = get_objective("topr", baseline="vmu")
    cfg = lambda mode, **kw: SimConfig(mode=mode, steps=a.steps, log_every=max(1, a.steps // 200), **kw)

    def sim(mode, noise, obj=asymre, offs=offsets, **kw):
        b = bandits.paper(arms=a.arms, noise=noise)
        params = {"offset": offs} if obj is asymre else {}
        s = Simulator(b, obj, params, cfg(mode, **kw), runs=len(offs))
        return lambda: s.run(s.initial_state())

    def loop():
        b = bandits.paper(arms=a.arms, noise="none")
        for o in offsets[: a.loop_runs]:
            s = Simulator(b, asymre, {"offset": np.array([o])}, cfg("exact"))
            s.run(s.initial_state())

    b = bandits.paper(arms=a.arms, noise="none")
    peer = lambda: numpy_peer(b.logits[0], b.means[0], b.mu[0], offsets, 1.0, a.steps)
    x = torch.randn(runs, 1, a.arms, dtype=torch.float64)

    def floor():
        for _ in range(a.steps):
            torch.log_softmax(x, -1)

    # the same update: our exact mode and the peer agree on the final policy
    s = Simulator(b, asymre, {"offset": offsets[:: a.seeds]}, cfg("exact"))
    ours = torch.softmax(s.run(s.initial_state()).logits, -1)[:, 0].numpy()
    theirs = numpy_peer(b.logits[0], b.means[0], b.mu[0], offsets[:: a.seeds], 1.0, a.steps)
    theirs = np.exp(theirs - theirs.max(-1, keepdims=True))
    agree = np.abs(ours - theirs / theirs.sum(-1, keepdims=True)).max()

    slow = 1 if a.steps > 3000 else 3  # repeats of the slow variants
    results = {"floor": timed(floor), "numpy-peer": timed(peer), "exact": timed(sim("exact", "bernoulli")),
               "exact-ag": timed(sim("exact", "bernoulli", grad="autograd"), slow),
               "exact-ratio": timed(sim("exact", "bernoulli", obj=topr), slow),
               "sampled": timed(sim("sampled", "bernoulli"), slow),
               "loop": timed(loop, repeat=1) * runs / a.loop_runs}
    dedup = timed(sim("exact", "bernoulli", offs=offsets[:: a.seeds]))
    print(f"grid: {a.baselines} baselines × {a.seeds} seeds × {a.arms} arms = {runs} runs, {a.steps} steps, float64, "
          f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); exact vs numpy final π: max |Δ| = "
          f"{agree:.1e}")
    print(f"{'variant':<12} {'seconds':>8} {'updates/s':>12} {'× numpy peer':>13}")
    peer_t = results["numpy-peer"]
    for k, t in results.items():
        print(f"{k:<12} {t:>8.3f} {runs * a.steps / t:>12,.0f} {peer_t / t:>13.2f}")
    print(f"sweep, deduplicated ({a.baselines} runs for the same {runs}-run table): {dedup:.3f} s, "
          f"{peer_t / dedup:.1f}× the numpy peer's time for the grid")


if __name__ == "__main__":
    main()
