"""Benchmark: policy updates per second of the vectorised simulator, side by side in one run.

    python experiments/bench_bandit.py [--steps 300] [--baselines 21] [--seeds 32] [--arms 100]

Compares, on the same grid (baselines × seeds × arms) and the same number of steps:
  exact       Simulator in exact mode (expected update, noise none, the default bandit's means)
  exact-bern  exact mode enumerating both Bernoulli outcomes (the default noise)
  sampled     Simulator in sampled mode (64 pulls per step, Bernoulli rewards)
  loop        a plain per-run Python loop over the same exact update (one run at a time, same objective)
  floor       one torch.log_softmax over the [runs, arms] array per step: the least any step can cost
Reports policy updates per second (runs × steps / s) and the ratio to the floor. Timing is wall clock on a
noisy shared machine: compare the ratios within one run, not absolute numbers across machines.
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


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--baselines", type=int, default=21)
    ap.add_argument("--seeds", type=int, default=32)
    ap.add_argument("--arms", type=int, default=100)
    ap.add_argument("--loop-runs", type=int, default=21, help="runs timed in the per-run loop (extrapolated)")
    a = ap.parse_args()
    runs = a.baselines * a.seeds
    offsets = np.repeat(np.linspace(-0.5, 0.5, a.baselines), a.seeds)
    obj = get_objective("asymre", baseline="vmu")
    cfg = lambda mode: SimConfig(mode=mode, steps=a.steps, log_every=max(1, a.steps // 10))

    def sim(mode, noise):
        b = bandits.paper(arms=a.arms, noise=noise)
        s = Simulator(b, obj, {"offset": offsets}, cfg(mode))
        return lambda: s.run(s.initial_state())

    def loop():
        b = bandits.paper(arms=a.arms, noise="none")
        for o in offsets[: a.loop_runs]:
            s = Simulator(b, obj, {"offset": np.array([o])}, cfg("exact"))
            s.run(s.initial_state())

    x = torch.randn(runs, 1, a.arms, dtype=torch.float64)

    def floor():
        for _ in range(a.steps):
            torch.log_softmax(x, -1)

    results = {"floor": timed(floor), "exact": timed(sim("exact", "none")),
               "exact-bern": timed(sim("exact", "bernoulli")), "sampled": timed(sim("sampled", "bernoulli")),
               "loop": timed(loop, repeat=1) * runs / a.loop_runs}
    print(f"grid: {a.baselines} baselines × {a.seeds} seeds × {a.arms} arms = {runs} runs, {a.steps} steps, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'variant':<11} {'seconds':>8} {'updates/s':>12} {'× floor':>8}")
    for k, t in results.items():
        print(f"{k:<11} {t:>8.3f} {runs * a.steps / t:>12,.0f} {t / results['floor']:>8.1f}")


if __name__ == "__main__":
    main()
