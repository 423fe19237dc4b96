"""Every registry objective with its defaults on the paper bandit, fixed behaviour.

Run + plot of `banditlab reproduce algorithm-zoo`, with its config beside it (algorithm-zoo.toml); discovered by
banditlab.reproduce. `run` writes tidy files to figures/data/algorithm-zoo/; the plots read only those files.
"""

from pathlib import Path

import numpy as np

from banditlab.science import bandits as B
from banditlab.methods import methods_run


def run_algorithm_zoo(cfg, data: Path, tick):
    from banditlab.registry.objectives import OBJECTIVES

    zoo = dict(cfg, methods={name: [name] for name in OBJECTIVES})
    methods_run(zoo, B.paper(low=-1.0), data, tick, mode="sampled", seeds=cfg["seeds"], batch=cfg["batch"])


def plot_algorithm_zoo(cfg, data: Path, out: Path, plt):
    import pandas as pd

    from banditlab.stats import mean_ci

    df = pd.read_parquet(data / "steps.parquet")
    fig = plt.figure(figsize=(17, 11.5), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[1, 1.05])
    ax, ax2 = top.subplots(1, 2, gridspec_kw={"width_ratios": [1.4, 1]})
    names = list(df.method.unique())
    colors = [*plt.get_cmap("tab20").colors, *plt.get_cmap("tab20b").colors[::2]]
    cmap = lambda i: colors[i % len(colors)]
    finals = []
    for i, name in enumerate(names):
        g = df[df.method == name]
        stats = np.array([mean_ci(x.expected_reward.to_numpy()) for _, x in g.groupby("step")])
        steps = np.sort(g.step.unique())
        ax.plot(steps, stats[:, 0], color=cmap(i), lw=1.8, label=name)
        ax.fill_between(steps, stats[:, 1], stats[:, 2], color=cmap(i), alpha=0.2, lw=0)
        finals.append((name, *stats[-1], i))
    vmu = B.paper(low=-1.0).v_mu_total
    ax.axhline(vmu, color="C3", ls="--", lw=1.2, label=r"$V^\mu$")
    ax.set_xlabel("step $t$")
    ax.set_ylabel(r"$J(\pi_t)$ (R = ±1): mean, 95% CI")
    ax.set_title("learning curves")
    ax.legend(fontsize=7, ncol=1, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    finals.sort(key=lambda f: f[1])
    y = np.arange(len(finals))
    ax2.barh(y, [f[1] for f in finals], color=[cmap(f[4]) for f in finals],
             xerr=np.nan_to_num([[f[1] - f[2] for f in finals], [f[3] - f[1] for f in finals]]), capsize=2)
    ax2.set_yticks(y, [f[0] for f in finals])
    ax2.axvline(vmu, color="C3", ls="--", lw=1.2)
    ax2.set_xlim(min(vmu, min(f[2] for f in finals)) - 0.05, 1.0)
    ax2.set_xlabel(r"final $J(\pi_T)$")
    ax2.set_title("final expected reward")
    last = df[df.step == df.step.max()]
    scores = {name: last[last.method == name].expected_reward.to_numpy() for name in names}
    from banditlab.plots import method_comparison

    method_comparison(bottom.subplots(1, 3), scores, "reinforce", {n: cmap(i) for i, n in enumerate(names)},
                    f"{cfg['seeds']} seeds")
    fig.suptitle(f"Every registry objective with its defaults: paper bandit, ±1 rewards, fixed behaviour μ = π₀, "
                 f"{cfg['seeds']} seeds", fontsize=12)
    return fig


CONFIG, SIMS, run = "algorithm-zoo", 69000, run_algorithm_zoo
FIGURES = {"algorithm-zoo": ("every objective", plot_algorithm_zoo)}
