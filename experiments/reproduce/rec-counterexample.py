"""REC §3: the counterexample bandit where REINFORCE's drift favours a sub-optimal arm.

Run + plot of `banditlab reproduce rec-counterexample`, with its config beside it (rec-counterexample.toml); discovered by
banditlab.reproduce. `run` writes tidy files to figures/data/rec-counterexample/; the plots read only those files.
"""

from pathlib import Path

import numpy as np

from banditlab import bandits as B
from banditlab.reproduce import methods_run


def run_rec_counterexample(cfg, data: Path, tick):
    b = B.from_lists(cfg["rewards"], cfg["mu"])
    methods_run(cfg, b, data, tick, record_every=10)


def plot_rec_counterexample(cfg, data: Path, out: Path, plt):
    pol = np.load(data / "policies.npz")
    every = int(pol["every"])
    r, mu = np.array(cfg["rewards"]), np.array(cfg["mu"])
    labels = list(cfg["methods"])
    fig, axes = plt.subplots(1, len(labels) + 1, figsize=(4.2 * (len(labels) + 1), 4.2), sharey=True)
    for ax, lab in zip(axes, labels):
        p = pol[lab]
        t = np.arange(len(p)) * every
        for a in range(3):
            ax.plot(t, p[:, a], lw=2, label=f"arm {a + 1}: r = {r[a]:g}, μ = {mu[a]:g}")
        ax.set_title(lab, fontsize=11)
        ax.set_xlabel("step $t$")
        ax.set_xscale("symlog", linthresh=10)
    axes[0].set_ylabel(r"$\pi_t(a)$")
    axes[0].legend(fontsize=8)
    ax = axes[-1]
    w = 0.8 / len(labels)
    for i, lab in enumerate(labels):
        ax.bar(np.arange(3) + i * w - 0.4 + w / 2, pol[lab][-1], w, label=lab)
    ax.set_xticks(range(3), [f"arm {a + 1}\nr = {r[a]:g}" for a in range(3)])
    ax.set_title("final policy")
    ax.legend(fontsize=7)
    fig.suptitle(f"REC counterexample: fixed μ = {mu.tolist()}, V^μ = {mu @ r:.2f}; expected logit drift "
                 f"μ(r − V^μ) = {np.round(mu * (r - mu @ r), 3).tolist()} favours the sub-optimal arm 2", fontsize=12)
    fig.tight_layout()
    return fig

CONFIG, SIMS, run = "rec-counterexample", 16000, run_rec_counterexample
FIGURES = {"rec-counterexample": ("REC §3 counterexample", plot_rec_counterexample)}
