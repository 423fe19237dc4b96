"""TOPR §3: naive off-policy REINFORCE's objective is unbounded; the taper bounds it.

Run + plot of `banditlab reproduce topr-naive-collapse`, with its config beside it (topr-naive-collapse.toml); discovered by
banditlab.reproduce. `run` writes tidy files to figures/data/topr-naive-collapse/; the plots read only those files.
"""

from pathlib import Path

import numpy as np

from banditlab.science import bandits as B
from banditlab.methods import method, methods_run
from banditlab.plumbing.folder import write_arrays


def run_topr_naive_collapse(cfg, data: Path, tick):
    b = B.paper(arms=cfg["arms"], seed=cfg["bandit_seed"], noise="bernoulli")
    b.low, b.means = -1.0, 2 * b.means - 1
    b.validate()
    write_arrays(data / "bandit.npz", means=b.means[0], mu=b.mu[0])
    methods_run(cfg, b, data, tick, record_every=20)


def plot_topr_naive_collapse(cfg, data: Path, out: Path, plt):
    import pandas as pd
    import torch

    from banditlab.registry.objectives import taper

    pol, band = np.load(data / "policies.npz"), np.load(data / "bandit.npz")
    df = pd.read_parquet(data / "steps.parquet")
    every = int(pol["every"])
    means, mu = band["means"], band["mu"]
    p_pos = (means + 1) / 2
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
    for i, (lab, spec) in enumerate(cfg["methods"].items()):
        params = method(spec).params
        pi = pol[lab]
        rho = torch.as_tensor(pi / mu)
        # the method's own objective E_μ[T(ρ, a±, b±) R] over both reward outcomes of each arm
        pos = taper(rho, params["a_pos"], params["b_pos"]).numpy()
        neg = taper(rho, params["a_neg"], params["b_neg"]).numpy()
        J_obj = (mu * (p_pos * pos - (1 - p_pos) * neg)).sum(-1)
        t = np.arange(len(pi)) * every
        axes[0].plot(t, J_obj, lw=2, color=f"C{i}", label=lab)
        axes[1].plot(t, np.log(pi.min(-1)), lw=2, color=f"C{i}", label=lab)
        g = df[df.method == lab]
        axes[2].plot(g.step, g.expected_reward, lw=2, color=f"C{i}", label=lab)
    axes[0].set_ylabel(r"surrogate objective $E_\mu[T(\rho)\,R]$")
    axes[0].set_title("(a) the method's own objective")
    axes[1].set_ylabel(r"$\min_a \log \pi_t(a)$")
    axes[1].set_title("(b) log-probability of the least likely arm")
    axes[2].set_ylabel(r"expected reward $J(\pi_t)$ (R = ±1)")
    axes[2].axhline(float(mu @ means), color="C3", ls="--", lw=1.2, label=r"$V^\mu$")
    axes[2].set_title("(c) expected reward")
    for ax in axes:
        ax.set_xlabel("step $t$")
    axes[0].legend(fontsize=8)
    axes[2].legend(fontsize=8)
    fig.suptitle(f"TOPR §3: naive off-policy REINFORCE on ±1 rewards ({cfg['arms']} arms, fixed μ, exact update) "
                 "pushes negatives to −∞; the taper bounds the objective", fontsize=12)
    fig.tight_layout()
    return fig

CONFIG, SIMS, run = "topr-naive-collapse", 12000, run_topr_naive_collapse
FIGURES = {"topr-naive-collapse": ("TOPR §3", plot_topr_naive_collapse)}
