"""AsymRE Fig. 1a and 1b: the limit policy's reward and support across the baseline V.

Run + plot of `banditlab reproduce asymre-limit | asymre-support`, with its config beside it (asymre-limit.toml); discovered by
banditlab.reproduce. `run` writes tidy files to figures/data/asymre-limit/; the plots read only those files.
"""

from pathlib import Path

import numpy as np

from banditlab.science import bandits as B
from banditlab.science import theory
from banditlab.methods import method
from banditlab.plumbing.folder import write_csv
from banditlab.science.simulator import run_grid


def check(cfg):
    """The config's V grid: distinct values (`sweep.parse_range`), checked before any folder is made."""
    from banditlab.sweep import parse_range

    return parse_range(cfg["V"], "V")


def run_asymre_limit(cfg, data: Path, tick):
    V = check(cfg)
    b = B.paper(noise="none")
    exact, _ = run_grid(b, method(["asymre", "baseline=absolute"]), V, steps=cfg["exact_steps"], lr=cfg["lr"],
                        progress=tick)
    exact["mode"] = "exact"
    sampled, _ = run_grid(B.paper(), method(["asymre", "baseline=absolute"]), V, seeds=cfg["sampled_seeds"],
                          mode="sampled", steps=cfg["sampled_steps"], lr=cfg["lr"], batch=cfg["batch"],
                          progress=tick)
    sampled["mode"] = "sampled"
    import pandas as pd

    final = pd.concat([d[d.step == d.step.max()] for d in (exact, sampled)])
    write_csv(data / "final.csv", final.drop(columns="baseline_offset").rename(columns={"baseline": "V"}))
    mu, r = b.mu[0], b.means[0]
    grid = np.linspace(0.0, b.v_mu_total, 400)
    rows = [{"V": v, **theory.limit_summary(mu, r, v)} for v in grid]  # the sims' support rule, π ≥ SUPPORT_EPS
    write_csv(data / "theory.csv", pd.DataFrame(rows))


def plot_asymre_limit(cfg, data: Path, out: Path, plt, panel: str = "reward"):
    """Fig. 1a (panel="reward") or Fig. 1b (panel="support") from the same runs."""
    import pandas as pd

    from banditlab.stats import summarise

    final, th = pd.read_csv(data / "final.csv"), pd.read_csv(data / "theory.csv")
    b = B.paper()
    vmu, best = b.v_mu_total, b.means.max()
    fig, ax = plt.subplots(figsize=(8, 5))
    panels = {"reward": ("expected_reward", "theory_expected_reward", r"$J(\pi)$"),
              "support": ("support_size", "theory_support_size", "support size")}
    for col, thcol, label in [panels[panel]]:
        ax.plot(th.V, th[thcol], color="k", lw=2, label="Theorem 4.2 limit", zorder=4)
        ex = final[final["mode"] == "exact"]
        ax.plot(ex.V, ex[col], "o", color="C0", ms=6, mfc="none", mew=1.5, label="exact update, 20k steps",
                zorder=5)
        sm = summarise(final[final["mode"] == "sampled"], ["V"], col)
        ax.errorbar(sm.V, sm["mean"], yerr=np.nan_to_num([sm["mean"] - sm.ci_low, sm.ci_high - sm["mean"]]),
                    fmt="s", color="C1", ms=4, capsize=2, label="sampled, 64 pulls/step: mean, 95% CI (8 seeds)")
        ax.axvline(vmu, color="C3", ls="--", lw=1.2, label=rf"$V = V^\mu$ = {vmu:.3f}")
        ax.set_xlabel(r"baseline $V$")
        ax.set_ylabel(label)
    if panel == "reward":
        ax.axhline(vmu, color="C3", ls=":", lw=1.2, label=r"$J = V^\mu$ (behaviour)")
        ax.axhline(best, color="C2", ls=":", lw=1.2, label=f"best arm = {best:.3f}")
        ax.set_title("AsymRE Fig. 1a: expected reward of the limit policy\n"
                     r"improvement for $V < V^\mu$, one arm for $V \geq V^\mu$", fontsize=12)
        ax.legend(fontsize=8, loc="lower right", bbox_to_anchor=(1.0, 0.07))
    else:
        ax.set_yscale("log")
        ax.set_ylabel(r"support size $|\{a: \pi(a) \geq 10^{-3}\}|$")
        ax.set_title("AsymRE Fig. 1b: support of the limit policy\n"
                     r"(theory counted with the same $10^{-3}$ threshold)", fontsize=12)
        ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return fig

CONFIG, SIMS, run = "asymre-limit", 25000, run_asymre_limit
FIGURES = {"asymre-limit": ("AsymRE Fig. 1a", plot_asymre_limit),
           "asymre-support": ("AsymRE Fig. 1b", lambda cfg, data, out, plt: plot_asymre_limit(cfg, data, out, plt,
                                                                                            panel="support"))}
