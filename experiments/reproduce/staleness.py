"""Across the papers: every method as the behaviour policy grows stale.

Run + plot of `banditlab reproduce staleness`, with its config beside it (staleness.toml); discovered by
banditlab.reproduce. `run` writes tidy files to figures/data/staleness/; the plots read only those files.
"""

from pathlib import Path

import numpy as np

from banditlab import bandits as B
from banditlab.reproduce import methods_run


def run_staleness(cfg, data: Path, tick):
    methods_run(cfg, B.paper(low=-1.0), data, tick, mode="sampled", seeds=cfg["seeds"],
                behaviors=cfg["behaviors"], batch=cfg["batch"])


def plot_staleness(cfg, data: Path, out: Path, plt):
    import pandas as pd

    from banditlab.stats import summarise

    df = pd.read_parquet(data / "steps.parquet")
    last = df[df.step == df.step.max()]
    s = summarise(last, ["method", "behavior"], "expected_reward")
    behs, labels = cfg["behaviors"], list(cfg["methods"])
    fig, ax = plt.subplots(figsize=(16, 5.5), layout="constrained")
    w = 0.8 / len(labels)
    for i, lab in enumerate(labels):
        g = s[s.method == lab].set_index("behavior").loc[behs]
        x = np.arange(len(behs)) + i * w - 0.4 + w / 2
        ax.bar(x, g["mean"], w, color=plt.get_cmap("tab20")(i % 20), label=lab)
        ax.errorbar(x, g["mean"], yerr=np.nan_to_num([g["mean"] - g.ci_low, g.ci_high - g["mean"]]), fmt="none",
                    color="k", capsize=2, lw=1)
    b = B.paper(low=-1.0)
    ax.axhline(b.v_mu_total, color="C3", ls="--", lw=1.2, label=r"$V^\mu$ of π₀")
    ax.set_xticks(range(len(behs)), [{"on-policy": "on-policy\n(lag 1)", "fixed": "fixed μ = π₀\n(offline)"}.get(
        x, x.replace(":", " ")) for x in behs])
    lo = min(s.ci_low.min(), b.v_mu_total) - 0.05
    ax.set_ylim(lo, 1.0)
    ax.set_ylabel(r"final expected reward $J(\pi_T)$ (R = ±1)")
    ax.set_xlabel("behaviour policy: refreshed from π every N steps")
    ax.set_title(f"Stale behaviour, paper bandit, ±1 rewards, {cfg['steps']} steps; mean and 95% CI of "
                 f"{cfg['seeds']} seeds", fontsize=11)
    ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig

CONFIG, SIMS, run = "staleness", 210000, run_staleness
FIGURES = {"staleness": ("stale behaviour", plot_staleness)}
