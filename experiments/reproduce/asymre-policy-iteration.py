"""AsymRE Fig. 2 and 7: policy iteration with a fixed V (reward and entropy).

Run + plot of `banditlab reproduce asymre-policy-iteration | asymre-entropy`, with its config beside it (asymre-policy-iteration.toml); discovered by
banditlab.reproduce. `run` writes tidy files to figures/data/asymre-policy-iteration/; the plots read only those files.
"""

from pathlib import Path

import numpy as np

from banditlab.science import bandits as B
from banditlab.science import theory
from banditlab.methods import method
from banditlab.plots import v_colors
from banditlab.plumbing.folder import write_csv, write_table
from banditlab.science.simulator import run_grid


def run_policy_iteration(cfg, data: Path, tick):
    import pandas as pd

    b = B.paper(noise="none")
    V = b.v_mu_total - np.asarray(cfg["V_below_vmu"])
    steps = cfg["iterations"] * cfg["steps_per_iteration"]
    beh = f"lag:{cfg['steps_per_iteration']}"
    obj = method(["asymre", "baseline=absolute"])
    exact, _ = run_grid(b, obj, V, steps=steps, lr=cfg["lr"], behavior=beh, log_every=cfg["log_every"],
                        progress=tick)
    exact["mode"] = "exact"
    sampled, _ = run_grid(B.paper(), obj, V, seeds=cfg["sampled_seeds"], mode="sampled", steps=steps,
                          lr=cfg["lr"], batch=cfg["batch"], behavior=beh, log_every=cfg["log_every"], progress=tick)
    sampled["mode"] = "sampled"
    df = pd.concat([exact, sampled]).drop(columns="baseline_offset").rename(columns={"baseline": "V"})
    write_table(data / "steps.parquet", df.drop(columns=["min_logit", "loss"]))
    rows = []
    for v in V:  # Theorem 4.3's prediction: each iteration run to its limit
        for k, p in enumerate(theory.policy_iteration(b.mu[0], b.means[0], v, cfg["iterations"])):
            rows.append({"V": v, "iteration": k, "expected_reward": theory.expected_reward(p, b.means[0]),
                         "entropy": theory.entropy(p)})
    write_csv(data / "theory.csv", pd.DataFrame(rows))


def plot_policy_iteration(cfg, data: Path, out: Path, plt):
    import pandas as pd

    df, th = pd.read_parquet(data / "steps.parquet"), pd.read_csv(data / "theory.csv")
    per = cfg["steps_per_iteration"]
    vmu0 = B.paper().v_mu_total
    it = df[df.step % per == 0].assign(iteration=lambda d: d.step // per)
    colors = v_colors(df.V.unique())
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), sharey=True)
    for ax, mode in zip(axes, ["exact", "sampled"]):
        d = it[it["mode"] == mode]
        for v, g in d.groupby("V"):
            m = g.groupby("iteration")["expected_reward"].agg(["mean", "min", "max"])
            lab = rf"$V$ = {v:.3f} ($V^\mu_0 - ${vmu0 - v:.4f})"
            ax.plot(m.index, m["mean"], color=colors[v], lw=2, label=lab)
            if mode == "sampled":
                ax.fill_between(m.index, m["min"], m["max"], color=colors[v], alpha=0.2, lw=0)
        ax.axhline(vmu0, color="C3", ls="--", lw=1.2, label=r"$V^\mu_0$ (first behaviour)")
        ax.set_xlabel(f"iteration $k$ (μ ← π every {per} steps)")
        ax.set_title(("exact update" if mode == "exact" else "sampled, 64 pulls/step; band: min–max of 8 seeds"))
    for v, g in th.groupby("V"):
        axes[0].plot(g.iteration, g.expected_reward, color=colors[v], ls=":", lw=1.2)
    axes[0].plot([], [], "k:", label="Theorem 4.3 (each iteration to its limit)")
    axes[0].set_ylabel(r"expected reward $J(\pi_k)$")
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle(r"AsymRE Fig. 2: policy iteration with a fixed $V$; $V$ just below $V^\mu_0$ ends worse", fontsize=12)
    fig.tight_layout()
    return fig


def plot_entropy(cfg, data: Path, out: Path, plt):
    import pandas as pd

    df = pd.read_parquet(data / "steps.parquet")
    colors = v_colors(df.V.unique())
    vmu0 = B.paper().v_mu_total
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), sharey=True)
    for ax, mode in zip(axes, ["exact", "sampled"]):
        d = df[df["mode"] == mode].groupby(["V", "step"])["entropy"].mean().reset_index()
        for v, g in d.groupby("V"):
            ax.plot(g.step, g.entropy, color=colors[v], lw=1.8, label=rf"$V$ = {v:.3f} ($V^\mu_0 - ${vmu0 - v:.4f})")
        ax.set_xlabel("step $t$")
        ax.set_title("exact update" if mode == "exact" else "sampled (mean of 8 seeds)")
    axes[0].set_ylabel(r"entropy $H(\pi_t)$ (nats)")
    axes[0].legend(fontsize=7)
    fig.suptitle("AsymRE Fig. 7: entropy falls faster for larger V (policy iteration, μ ← π every "
                 f"{cfg['steps_per_iteration']} steps)", fontsize=12)
    fig.tight_layout()
    return fig

CONFIG, SIMS, run = "asymre-policy-iteration", 40000, run_policy_iteration
FIGURES = {"asymre-policy-iteration": ("AsymRE Fig. 2", plot_policy_iteration),
           "asymre-entropy": ("AsymRE Fig. 7", plot_entropy)}
