"""REC §3: the counterexample bandit where REINFORCE's drift favours a sub-optimal arm.

Run + plot of `banditlab reproduce rec-counterexample`, with its config beside it (rec-counterexample.toml); discovered by
banditlab.reproduce. `run` writes tidy files to figures/data/rec-counterexample/; the plots read only those files.
"""

from pathlib import Path

import numpy as np

from banditlab.science import bandits as B
from banditlab.methods import methods_run


def run_rec_counterexample(cfg, data: Path, tick):
    b = B.from_lists(cfg["rewards"], cfg["mu"])
    methods_run(cfg, b, data, tick, record_every=10)


def plot_rec_counterexample(cfg, data: Path, out: Path, plt):
    """π_t(a) of each method in a 2-column grid on the left, the final policies as bars on the right."""
    pol = np.load(data / "policies.npz")
    every = int(pol["every"])
    r, mu = np.array(cfg["rewards"]), np.array(cfg["mu"])
    labels = list(cfg["methods"])
    rows = -(-len(labels) // 2)
    fig = plt.figure(figsize=(13, 3.3 * rows + 1.6))
    grid = fig.add_gridspec(rows, 3, width_ratios=[1, 1, 1.1])
    arms = [f"arm {a + 1}: r = {r[a]:g}, μ = {mu[a]:g}" for a in range(3)]
    for k, lab in enumerate(labels):
        ax = fig.add_subplot(grid[k // 2, k % 2])
        p = pol[lab]
        t = np.arange(len(p)) * every
        for a in range(3):
            ax.plot(t, p[:, a], lw=2, color=f"C{a}")
        ax.set_title(lab, fontsize=12)
        ax.set_xscale("symlog", linthresh=10)
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel("step $t$" if k // 2 == rows - 1 else "")
        ax.set_ylabel(r"$\pi_t(a)$" if k % 2 == 0 else "")
    ax = fig.add_subplot(grid[:, 2])
    w = 0.8 / len(labels)
    for i, lab in enumerate(labels):
        ax.bar(np.arange(3) + i * w - 0.4 + w / 2, pol[lab][-1], w, label=lab, color=f"C{i + 3}")
    ax.set_xticks(range(3), [f"arm {a + 1}\nr = {r[a]:g}" for a in range(3)])
    ax.set_ylabel(r"final $\pi_T(a)$")
    ax.set_title(f"Final policy after {cfg['steps']} steps", fontsize=12)
    ax.set_ylim(0, 1.5)  # room for the legend above the bars
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.legend(fontsize=10, loc="upper right")
    fig.legend([plt.Line2D([], [], color=f"C{a}", lw=2) for a in range(3)], arms, loc="lower center", ncol=3,
               fontsize=11, frameon=False, bbox_to_anchor=(0.36, 0.0))
    drift = np.round(mu * (r - mu @ r), 3).tolist()
    fig.suptitle(f"REC counterexample: fixed $\\mu$ = {mu.tolist()}, $V^\\mu$ = {mu @ r:.2f}\n"
                 f"expected logit drift $\\mu(r - V^\\mu)$ = {drift} favours the sub-optimal arm 2", fontsize=13)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig

CONFIG, SIMS, run = "rec-counterexample", 16000, run_rec_counterexample
FIGURES = {"rec-counterexample": ("REC §3 counterexample", plot_rec_counterexample)}
