"""TOPR §4: the dataset's effective positive share set by the baseline c.

Run + plot of `banditlab reproduce topr-composition`, with its config beside it (topr-composition.toml); discovered by
banditlab.reproduce. `run` writes tidy files to figures/data/topr-composition/; the plots read only those files.
"""

from pathlib import Path

import numpy as np

from banditlab.science import bandits as B
from banditlab.science import theory
from banditlab.methods import method
from banditlab.plumbing.folder import write_csv
from banditlab.science.simulator import run_grid


def check(cfg):
    """The config's grid of positive shares: distinct values (`sweep.parse_range`), before any folder is made."""
    from banditlab.sweep import parse_range

    return parse_range(cfg["shares"], "shares")


def run_topr_composition(cfg, data: Path, tick):
    import pandas as pd

    shares = check(cfg)
    frames = []
    for p in cfg["p"]:
        b = B.paper(noise="bernoulli")
        q = b.means * (p / b.v_mu_total)  # success probabilities with E_μ[q] = p
        b.low, b.means = -1.0, 2 * q - 1
        b.validate()
        cs = np.array([theory.baseline_for_share(p, s) for s in shares])
        for mode, seeds in (("exact", 1), ("sampled", cfg["seeds"])):
            df, _ = run_grid(b, method(["topr", "baseline=absolute"]), cs, seeds=seeds, mode=mode,
                             steps=cfg["steps"], lr=cfg["lr"], batch=cfg["batch"], progress=tick)
            last = df[df.step == df.step.max()].copy()
            last["mode"], last["p"], last["share"], last["c"] = mode, p, np.repeat(shares, seeds), last["baseline"]
            last["success_rate"] = (last.expected_reward + 1) / 2
            last["best_success"] = (b.means.max() + 1) / 2
            frames.append(last.drop(columns=["baseline_offset", "baseline"]))
    write_csv(data / "final.csv", pd.concat(frames))


def plot_topr_composition(cfg, data: Path, out: Path, plt):
    import pandas as pd

    from banditlab.stats import summarise

    df = pd.read_csv(data / "final.csv")
    fig, ax = plt.subplots(figsize=(8, 5))
    for i, (p, g) in enumerate(df.groupby("p")):
        ex = g[g["mode"] == "exact"]
        sm = summarise(g[g["mode"] == "sampled"], ["share"], "success_rate")
        ax.fill_between(sm.share, sm.ci_low, sm.ci_high, color=f"C{i}", alpha=0.25, lw=0)
        ax.plot(sm.share, sm["mean"], "-", color=f"C{i}", lw=2,
                label=f"p = {p:.0%}: sampled, mean and 95% CI of {cfg['seeds']} seeds")
        ax.plot(ex.share, ex.success_rate, "o", color=f"C{i}", ms=3.5, mfc="none", label=f"p = {p:.0%}: exact update")
        ax.axvline(p, color=f"C{i}", ls=":", lw=1.2)
        ax.axhline(p, color=f"C{i}", ls="--", lw=1, alpha=0.6)
        k = sm["mean"].idxmax()
        ax.plot(sm.share[k], sm["mean"][k], "*", color=f"C{i}", ms=16, mec="k", mew=0.6)
    ax.axvspan(0.10, 0.20, color="0.85", zorder=0, label="paper's best p̃ (10–20 %)")
    ax.set_xlabel(r"effective positive share $\tilde p = p(1-c)/(1+c(1-2p))$")
    ax.set_ylabel(r"final success rate $P_{\pi_T}(R = +1)$")
    ax.set_title(f"TOPR §4: dataset composition set by the baseline c, {cfg['steps']} steps\n(dotted: c = 0; "
                 "dashed: behaviour's rate; star: best sampled mean)", fontsize=11)
    ax.legend(fontsize=7.5, loc="center right")
    fig.tight_layout()
    return fig

CONFIG, SIMS, run = "topr-composition", 12000, run_topr_composition
FIGURES = {"topr-composition": ("TOPR §4", plot_topr_composition)}
