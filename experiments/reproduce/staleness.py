"""Across the papers: every method as the behaviour policy grows stale, at each learning rate of the config, with
rliable's aggregates (IQM, probability of improvement, performance profile) over the settings as tasks.

Run + plot of `banditlab reproduce staleness`, with its config beside it (staleness.toml); discovered by
banditlab.reproduce. `run` writes tidy files to figures/data/staleness/; the plots read only those files.
"""

from pathlib import Path

import numpy as np

from banditlab.science import bandits as B
from banditlab.methods import method
from banditlab.plumbing.folder import write_table
from banditlab.science.simulator import run_grid


def run_staleness(cfg, data: Path, tick):
    """steps.parquet: one row per (lr, method, behaviour, seed, logged step)."""
    import pandas as pd

    bandit, frames = B.paper(low=-1.0), []
    for lr in cfg["lrs"]:
        for label, spec in cfg["methods"].items():
            obj = method(spec)
            for beh in cfg["behaviors"]:
                df, _ = run_grid(bandit, obj, [obj.params.get("offset", 0.0)], seeds=cfg["seeds"], mode="sampled",
                                 steps=cfg["steps"], lr=lr, batch=cfg["batch"], behavior=beh,
                                 log_every=cfg["log_every"], progress=tick)
                frames.append(df.assign(method=label, behavior=beh, lr=lr))
    write_table(data / "steps.parquet", pd.concat(frames).drop(columns=["baseline_offset", "baseline"]))


def plot_staleness(cfg, data: Path, out: Path, plt):
    import pandas as pd

    from banditlab.stats import summarise

    df = pd.read_parquet(data / "steps.parquet")
    last = df[df.step == df.step.max()]
    s = summarise(last, ["lr", "method", "behavior"], "expected_reward")
    behs, labels, lrs = cfg["behaviors"], list(cfg["methods"]), cfg["lrs"]
    colors = {lab: plt.get_cmap("tab20")(i % 20) for i, lab in enumerate(labels)}
    b = B.paper(low=-1.0)
    fig = plt.figure(figsize=(17, 6 * len(lrs) + 6), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.1 * len(lrs), 1.15])
    w = 0.8 / len(labels)
    for ax, lr in zip(np.atleast_1d(top.subplots(len(lrs), 1, sharey=True)), lrs):
        for i, lab in enumerate(labels):
            g = s[(s.lr == lr) & (s.method == lab)].set_index("behavior").loc[behs]
            x = np.arange(len(behs)) + i * w - 0.4 + w / 2
            ax.bar(x, g["mean"], w, color=colors[lab], label=lab)
            ax.errorbar(x, g["mean"], yerr=np.nan_to_num([g["mean"] - g.ci_low, g.ci_high - g["mean"]]),
                        fmt="none", color="k", capsize=2, lw=1)
        ax.axhline(b.v_mu_total, color="C3", ls="--", lw=1.2, label=r"$V^\mu$ of π₀")
        ax.set_xticks(range(len(behs)), [{"on-policy": "on-policy\n(lag 1)", "fixed": "fixed μ = π₀\n(offline)"}.get(
            x, x.replace(":", " ")) for x in behs])
        ax.set_ylim(min(s.ci_low.min(), b.v_mu_total) - 0.05, 1.0)
        ax.set_ylabel(r"final $J(\pi_T)$ (R = ±1)")
        ax.set_title(f"learning rate {lr:g}: mean and 95% CI of {cfg['seeds']} seeds", fontsize=11)
    ax.set_xlabel("behaviour policy: refreshed from π every N steps")
    top.legend(*ax.get_legend_handles_labels(), fontsize=9, loc="outside right upper", frameon=False)
    wide = last.pivot_table(index="seed", columns=["lr", "behavior", "method"], values="expected_reward")
    scores = {lab: wide.xs(lab, axis=1, level="method").to_numpy() for lab in labels}
    tasks = f"{cfg['seeds']} seeds × {len(behs) * len(lrs)} settings"
    from banditlab.plots import method_comparison

    method_comparison(bottom.subplots(1, 3), scores, "REINFORCE", colors, tasks)
    bottom.suptitle(f"aggregates over the {len(behs) * len(lrs)} settings (behaviour × learning rate) as tasks",
                    fontsize=11)
    fig.suptitle(f"Stale behaviour: paper bandit, ±1 rewards, {cfg['steps']} steps, sampled (64 pulls per step)",
                 fontsize=12)
    return fig


CONFIG, SIMS, run = "staleness", 420000, run_staleness
FIGURES = {"staleness": ("stale behaviour", plot_staleness)}
