"""Throughput of the bandit simulator's exact mode through its public API (`banditlab.science.simulator.Simulator`).

    python experiments/gpu/bandit_throughput.py --device cuda --json out.json                  # the GPU kit's sizes
    python experiments/gpu/bandit_throughput.py --device cpu --baselines 3 --seeds 2 --arms 10 --steps 20

Grid: `--baselines` offsets δV in [−0.5, 0.5] × `--seeds` replicas × `--arms` arms (the paper bandit, Bernoulli
rewards, AsymRE with the V^μ baseline, fixed behaviour: the cached analytic step), `--steps` steps, in float32 and
float64; then the same with `--wide-arms` arms and `--wide-seeds` replicas. Each size runs once for 10 steps (CUDA
start-up, kernels, caches) and is then timed, with the device synchronised before and after. Reported per size:
seconds, arm-updates/s (runs × arms × steps / s) and policy updates/s (runs × steps / s). Exact mode is
deterministic: the replicas are there to fill the device, as in a seed sweep's table.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from banditlab.science import bandits
from banditlab.registry.objectives import get_objective
from banditlab.science.simulator import SimConfig, Simulator


def timed_grid(baselines: int, seeds: int, arms: int, steps: int, dtype: str, device: str) -> dict:
    offsets = np.repeat(np.linspace(-0.5, 0.5, baselines), seeds)
    obj = get_objective("asymre", baseline="vmu")
    bandit = bandits.paper(arms=arms, noise="bernoulli")
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def once(n):
        cfg = SimConfig(mode="exact", steps=n, log_every=max(1, n // 20), dtype=dtype, device=device)
        sim = Simulator(bandit, obj, {"offset": offsets}, cfg, runs=len(offsets))
        state = sim.initial_state()
        sync()
        t = time.perf_counter()
        state = sim.run(state)
        sync()
        return time.perf_counter() - t, state

    once(10)
    secs, state = once(steps)
    runs = len(offsets)
    finite = bool(torch.isfinite(state.logits).all())
    return {"baselines": baselines, "seeds": seeds, "runs": runs, "arms": arms, "steps": steps, "dtype": dtype,
            "device": device, "seconds": secs, "arm_updates_per_s": runs * arms * steps / secs,
            "policy_updates_per_s": runs * steps / secs, "finite": finite}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--baselines", type=int, default=101)
    ap.add_argument("--seeds", type=int, default=1000)
    ap.add_argument("--arms", type=int, default=100)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--wide-arms", type=int, default=10_000)
    ap.add_argument("--wide-seeds", type=int, default=10)
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    out = []

    def save():
        if a.json:
            with open(a.json, "w") as f:
                json.dump(out, f, indent=1)

    sizes = [(a.seeds, a.arms, "float32"), (a.seeds, a.arms, "float64"), (a.wide_seeds, a.wide_arms, "float32"),
             (a.wide_seeds, a.wide_arms, "float64")]
    for seeds, arms, dtype in sizes:
        r = timed_grid(a.baselines, seeds, arms, a.steps, dtype, a.device)
        out.append(r)
        save()  # a run cut off keeps the sizes it finished
        print(f"{r['runs']} runs × {arms} arms × {a.steps} steps, {dtype} on {a.device}: {r['seconds']:.2f} s, "
              f"{r['arm_updates_per_s']:.3g} arm-updates/s, {r['policy_updates_per_s']:.3g} policy updates/s",
              flush=True)


if __name__ == "__main__":
    main()
