"""`banditlab reproduce ID`: the papers' bandit figures, each from a config in experiments/reproduce/ID.toml.

Every experiment has two halves. `run` simulates and writes tidy files to figures/data/ID/. `plot` reads only those
files and draws figures/ID.png and .pdf, so `--plot-only` redraws any figure without rerunning. An experiment
whose data already exist is not rerun (use --force). `reproduce --all` therefore survives interruption one
experiment at a time.

Deliberately left out: the papers' exact random draws (unpublished), and LLM experiments (see llm/).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np

from . import bandits as B
from . import theory
from .errors import UsageError

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "experiments" / "reproduce"


# ------------------------------------------------------------------------------------------ simulation
def method(spec: list[str]):
    """["algo", "key=value", ...] → an Objective (the registry's CLI parser, so configs read like the CLI)."""
    from .objectives import parse_algo_args

    return parse_algo_args(spec[0], list(spec[1:]))


def simulate(bandit, objective, offsets, *, seeds=1, mode="exact", steps=1000, lr=1.0, batch=64,
             behavior="fixed", log_every=None, seed=0, record_every=0, init_logits=None, progress=None):
    """Run len(offsets) × seeds runs of one objective; return (tidy frame, trajectory of π or None).

    The trajectory, if `record_every`, is an array [S, R, C, K] of π_t every `record_every` steps (with t = 0).
    """
    import torch

    from .simulate import SimConfig, Simulator, tidy_frame

    offsets = np.asarray(offsets, float)
    grid_off, grid_seed = np.repeat(offsets, seeds), np.tile(np.arange(seeds), len(offsets))
    cfg = SimConfig(mode=mode, steps=steps, batch=batch, lr=lr, behavior=behavior,
                    log_every=log_every or max(1, steps // 200))
    params = {"offset": grid_off} if "offset" in objective.params else {}  # sft has no baseline
    sim = Simulator(bandit, objective, params, cfg, seed=seed, runs=len(grid_off))
    state = sim.initial_state(init_logits)
    traj = []

    def on_step(st):
        if record_every and st.step % record_every == 0:
            traj.append(torch.softmax(st.logits, -1).numpy().copy())
        if progress is not None:
            progress()
        return False

    if record_every:
        traj.append(torch.softmax(state.logits, -1).numpy().copy())
    state = sim.run(state, on_step=on_step)
    df = tidy_frame(state, {"offset": grid_off, "seed": grid_seed})
    df["diverged"] = np.tile(state.diverged.numpy(), len(df) // sim.runs)
    return df, (np.stack(traj) if record_every else None)


def paper_bandit(noise="bernoulli", low=0.0, high=1.0) -> B.Bandit:
    b = B.paper(noise=noise)
    b.low, b.high = low, high
    b.means = low + (high - low) * b.means
    b.validate()
    return b


# ------------------------------------------------------------------------------------------ experiments
def run_asymre_limit(cfg, data: Path, tick):
    from .sweep import parse_range

    V = parse_range(cfg["V"], "V")
    b = paper_bandit(noise="none")
    exact, _ = simulate(b, method(["asymre", "baseline=absolute"]), V, steps=cfg["exact_steps"], lr=cfg["lr"],
                        progress=tick)
    exact["mode"] = "exact"
    sampled, _ = simulate(paper_bandit(), method(["asymre", "baseline=absolute"]), V, seeds=cfg["sampled_seeds"],
                          mode="sampled", steps=cfg["sampled_steps"], lr=cfg["lr"], batch=cfg["batch"],
                          progress=tick)
    sampled["mode"] = "sampled"
    import pandas as pd

    final = pd.concat([d[d.step == d.step.max()] for d in (exact, sampled)])
    final.rename(columns={"offset": "V"}).to_csv(data / "final.csv", index=False)
    mu, r = b.mu[0], b.means[0]
    grid = np.linspace(0.0, b.v_mu_total, 400)
    rows = [{"V": v, **theory.limit_summary(mu, r, v, eps=1e-3)} for v in grid]  # same support rule as the sims
    pd.DataFrame(rows).to_csv(data / "theory.csv", index=False)


def plot_asymre_limit(cfg, data: Path, out: Path, plt, panel: str = "reward"):
    """Fig. 1a (panel="reward") or Fig. 1b (panel="support") from the same runs."""
    import pandas as pd

    from .stats import summarise

    final, th = pd.read_csv(data / "final.csv"), pd.read_csv(data / "theory.csv")
    b = paper_bandit()
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


def run_policy_iteration(cfg, data: Path, tick):
    import pandas as pd

    b = paper_bandit(noise="none")
    V = b.v_mu_total - np.asarray(cfg["V_below_vmu"])
    steps = cfg["iterations"] * cfg["steps_per_iteration"]
    beh = f"lag:{cfg['steps_per_iteration']}"
    obj = method(["asymre", "baseline=absolute"])
    exact, _ = simulate(b, obj, V, steps=steps, lr=cfg["lr"], behavior=beh, log_every=cfg["log_every"],
                        progress=tick)
    exact["mode"] = "exact"
    sampled, _ = simulate(paper_bandit(), obj, V, seeds=cfg["sampled_seeds"], mode="sampled", steps=steps,
                          lr=cfg["lr"], batch=cfg["batch"], behavior=beh, log_every=cfg["log_every"], progress=tick)
    sampled["mode"] = "sampled"
    df = pd.concat([exact, sampled]).rename(columns={"offset": "V"})
    df.drop(columns=["min_logit", "loss"]).to_parquet(data / "steps.parquet", index=False)
    rows = []
    for v in V:  # Theorem 4.3's prediction: each iteration run to its limit
        for k, p in enumerate(theory.policy_iteration(b.mu[0], b.means[0], v, cfg["iterations"])):
            rows.append({"V": v, "iteration": k, "expected_reward": theory.expected_reward(p, b.means[0]),
                         "entropy": theory.entropy(p)})
    pd.DataFrame(rows).to_csv(data / "theory.csv", index=False)


def _v_colors(values):
    import matplotlib as mpl

    cmap = mpl.colormaps["viridis"]
    return {v: cmap(i / max(1, len(values) - 1)) for i, v in enumerate(sorted(values))}


def plot_policy_iteration(cfg, data: Path, out: Path, plt):
    import pandas as pd

    df, th = pd.read_parquet(data / "steps.parquet"), pd.read_csv(data / "theory.csv")
    per = cfg["steps_per_iteration"]
    vmu0 = paper_bandit().v_mu_total
    it = df[df.step % per == 0].assign(iteration=lambda d: d.step // per)
    colors = _v_colors(df.V.unique())
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
    fig.suptitle("AsymRE Fig. 2: policy iteration with a fixed V; V just below V^μ₀ ends worse", fontsize=12)
    fig.tight_layout()
    return fig


def plot_entropy(cfg, data: Path, out: Path, plt):
    import pandas as pd

    df = pd.read_parquet(data / "steps.parquet")
    colors = _v_colors(df.V.unique())
    vmu0 = paper_bandit().v_mu_total
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


def _methods_run(cfg, bandit, data, tick, record_every=0, mode="exact", seeds=1, behaviors=("fixed",), **kw):
    import pandas as pd

    frames, trajs = [], {}
    for label, spec in cfg["methods"].items():
        obj = method(spec)
        for beh in behaviors:
            off = [obj.params.get("offset", 0.0)]
            df, tr = simulate(bandit, obj, off, seeds=seeds, mode=mode, steps=cfg["steps"], lr=cfg["lr"],
                              behavior=beh, record_every=record_every, progress=tick, **kw)
            frames.append(df.assign(method=label, behavior=beh))
            if tr is not None:
                trajs[label] = tr[:, 0, 0]
    df = pd.concat(frames)
    df.drop(columns=["offset"]).to_parquet(data / "steps.parquet", index=False)
    if trajs:
        np.savez(data / "policies.npz", **{k: v for k, v in trajs.items()}, every=record_every)
    return df


def run_rec_counterexample(cfg, data: Path, tick):
    b = B.from_lists(cfg["rewards"], cfg["mu"])
    _methods_run(cfg, b, data, tick, record_every=10)


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


def run_topr_naive_collapse(cfg, data: Path, tick):
    b = B.paper(arms=cfg["arms"], seed=cfg["bandit_seed"], noise="bernoulli")
    b.low, b.means = -1.0, 2 * b.means - 1
    b.validate()
    np.savez(data / "bandit.npz", means=b.means[0], mu=b.mu[0])
    _methods_run(cfg, b, data, tick, record_every=20)


def plot_topr_naive_collapse(cfg, data: Path, out: Path, plt):
    import pandas as pd
    import torch

    from .objectives import taper

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


def run_topr_composition(cfg, data: Path, tick):
    import pandas as pd

    from .sweep import parse_range

    shares = parse_range(cfg["shares"], "shares")
    frames = []
    for p in cfg["p"]:
        b = B.paper(noise="bernoulli")
        q = b.means * (p / b.v_mu_total)  # success probabilities with E_μ[q] = p
        b.low, b.means = -1.0, 2 * q - 1
        b.validate()
        cs = np.array([theory.baseline_for_share(p, s) for s in shares])
        df, _ = simulate(b, method(["topr", "baseline=absolute"]), cs, steps=cfg["steps"], lr=cfg["lr"],
                         progress=tick)
        last = df[df.step == df.step.max()].copy()
        last["p"], last["share"], last["c"] = p, np.repeat(shares, 1), last["offset"]
        last["success_rate"] = (last.expected_reward + 1) / 2
        last["best_success"] = (b.means.max() + 1) / 2
        frames.append(last.drop(columns=["offset"]))
    pd.concat(frames).to_csv(data / "final.csv", index=False)


def plot_topr_composition(cfg, data: Path, out: Path, plt):
    import pandas as pd

    df = pd.read_csv(data / "final.csv")
    fig, ax = plt.subplots(figsize=(8, 5))
    for i, (p, g) in enumerate(df.groupby("p")):
        ax.plot(g.share, g.success_rate, "o-", color=f"C{i}", lw=2, label=f"p = {p:.0%} positives in the data")
        ax.axvline(p, color=f"C{i}", ls=":", lw=1.2)
        ax.axhline(p, color=f"C{i}", ls="--", lw=1, alpha=0.6)
        k = g.success_rate.idxmax()
        ax.plot(g.share[k], g.success_rate[k], "*", color=f"C{i}", ms=16)
    ax.axvspan(0.10, 0.20, color="0.85", zorder=0, label="paper's best p̃ (10–20 %)")
    ax.set_xlabel(r"effective positive share $\tilde p = p(1-c)/(1+c(1-2p))$")
    ax.set_ylabel(r"final success rate $P_{\pi_T}(R = +1)$")
    ax.set_title("TOPR §4: dataset composition set by the baseline c\n(dotted: c = 0; dashed: behaviour's rate; "
                 "star: best)", fontsize=11)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def run_staleness(cfg, data: Path, tick):
    _methods_run(cfg, paper_bandit(low=-1.0), data, tick, mode="sampled", seeds=cfg["seeds"],
                 behaviors=cfg["behaviors"], batch=cfg["batch"])


def plot_staleness(cfg, data: Path, out: Path, plt):
    import pandas as pd

    from .stats import summarise

    df = pd.read_parquet(data / "steps.parquet")
    last = df[df.step == df.step.max()]
    s = summarise(last, ["method", "behavior"], "expected_reward")
    behs, labels = cfg["behaviors"], list(cfg["methods"])
    fig, ax = plt.subplots(figsize=(13, 5), layout="constrained")
    w = 0.8 / len(labels)
    for i, lab in enumerate(labels):
        g = s[s.method == lab].set_index("behavior").loc[behs]
        x = np.arange(len(behs)) + i * w - 0.4 + w / 2
        ax.bar(x, g["mean"], w, color=f"C{i}", label=lab)
        ax.errorbar(x, g["mean"], yerr=np.nan_to_num([g["mean"] - g.ci_low, g.ci_high - g["mean"]]), fmt="none",
                    color="k", capsize=2, lw=1)
    b = paper_bandit(low=-1.0)
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


def run_algorithm_zoo(cfg, data: Path, tick):
    from .objectives import OBJECTIVES

    zoo = dict(cfg, methods={name: [name] for name in OBJECTIVES})
    _methods_run(zoo, paper_bandit(low=-1.0), data, tick, mode="sampled", seeds=cfg["seeds"], batch=cfg["batch"])


def plot_algorithm_zoo(cfg, data: Path, out: Path, plt):
    import pandas as pd

    from .stats import bootstrap_ci

    df = pd.read_parquet(data / "steps.parquet")
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(17, 5.5), gridspec_kw={"width_ratios": [1.4, 1]}, layout="constrained")
    names = list(df.method.unique())
    cmap = plt.get_cmap("tab20")
    finals = []
    for i, name in enumerate(names):
        g = df[df.method == name]
        stats = np.array([bootstrap_ci(x.expected_reward.to_numpy()) for _, x in g.groupby("step")])
        steps = np.sort(g.step.unique())
        ax.plot(steps, stats[:, 0], color=cmap(i), lw=1.8, label=name)
        ax.fill_between(steps, stats[:, 1], stats[:, 2], color=cmap(i), alpha=0.2, lw=0)
        finals.append((name, *stats[-1], i))
    vmu = paper_bandit(low=-1.0).v_mu_total
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
    fig.suptitle(f"Every registry objective with its defaults: paper bandit, ±1 rewards, fixed behaviour μ = π₀, "
                 f"{cfg['seeds']} seeds", fontsize=12)
    return fig


def _slug(label: str) -> str:
    text = label.replace("−", "m").replace("+", "p").replace("δV", "dV")
    return "-".join("".join(ch if ch.isascii() and ch.isalnum() else " " for ch in text).split())


def run_llm_asymre_small(cfg, data: Path, tick):
    """Each (seed, method) trains into its own folder; finished runs are skipped, interrupted ones resumed."""
    import json

    from llm.train import Trainer, config_from

    index = []
    for seed in cfg["seeds"]:
        for label, spec in cfg["methods"].items():
            out = data / f"{_slug(label)}-s{seed}"
            index.append({"method": label, "seed": seed, "folder": out.name})
            if (out / "DONE").exists():
                continue
            opts = dict(cfg["train"], seed=seed, algo=spec[0], algo_args=list(spec[1:]), out=str(out),
                        offline_data=str(data / f"offline-s{seed}.pt"))
            tc = config_from(opts, None)
            Trainer(tc, echo=lambda *_: None).run(resume=(out / "checkpoint.pt").exists())
            (out / "DONE").write_text("complete\n")
            if tick:
                tick()
            (data / "runs.json").write_text(json.dumps(index, indent=1))
    (data / "runs.json").write_text(json.dumps(index, indent=1))


def llm_metrics(data: Path):
    """All finished or partial runs' metrics as one tidy frame (method, seed, step, metric columns)."""
    import json

    import pandas as pd

    rows = []
    for run in json.loads((data / "runs.json").read_text()):
        f = data / run["folder"] / "metrics.jsonl"
        if f.exists():
            rows += [{**json.loads(line), "method": run["method"], "seed": run["seed"]}
                     for line in f.read_text().splitlines()]
    return pd.DataFrame(rows)


def plot_llm_asymre_small(cfg, data: Path, out: Path, plt):
    df = llm_metrics(data)
    labels = [m for m in cfg["methods"] if m in set(df.method)]
    colors = {m: c for m, c in zip(labels, ["#08519c", "#4292c6", "#000000", "#ef3b2c", "#99000d", "#41ab5d",
                                            "#ff7f00"])}
    fig, axes = plt.subplots(1, 4, figsize=(22, 5), layout="constrained")
    panels = [("test_accuracy", "test pass@1 (greedy, held-out)"), ("train_accuracy", "train pass@1 (greedy)"),
              ("entropy", "token entropy of π (nats)"),
              ("ratio_max", r"token ratio $\pi/\mu$: max (solid), min (dotted)")]
    for ax, (col, title) in zip(axes, panels):
        if col not in df:
            continue
        for m in labels:
            g = df[(df.method == m) & df[col].notna()]
            if g.empty:
                continue
            s = g.groupby("step")[col].agg(["mean", "min", "max"])
            ax.plot(s.index, s["mean"], "o-" if "accuracy" in col else "-", color=colors[m], lw=2, ms=4,
                    label=f"{m} ({g.seed.nunique()} seed{'s' * (g.seed.nunique() > 1)})")
            if col == "ratio_max":
                ax.plot(s.index, g.groupby("step")["ratio_min"].mean(), ":", color=colors[m], lw=1.5)
                ax.set_yscale("log")
            elif g.seed.nunique() > 1:
                ax.fill_between(s.index, s["min"], s["max"], color=colors[m], alpha=0.15)
        ax.set_title(title)
        ax.set_xlabel("step (8 steps = 1 epoch of the offline data)")
    axes[0].legend(fontsize=8, loc="best")
    t = cfg["train"]
    fig.suptitle(f"AsymRE on SmolLM2-135M-Instruct + LoRA, offline data from π₀ ({t['n_train']} addition problems × "
                 f"G = {t['group_size']}, {t['epochs']} epochs, ±1 rewards); mean over seeds, band = min–max",
                 fontsize=12)
    return fig


@dataclass(frozen=True)
class Experiment:
    config: str                     # experiments/reproduce/<config>.toml
    run: Callable | None            # None: reads another experiment's data (the same config's)
    plot: Callable
    title: str
    sims: int                       # progress-bar steps, roughly


EXPERIMENTS = {
    "asymre-limit": Experiment("asymre-limit", run_asymre_limit, plot_asymre_limit, "AsymRE Fig. 1a", 25000),
    "asymre-support": Experiment("asymre-limit", None, partial(plot_asymre_limit, panel="support"),
                                 "AsymRE Fig. 1b", 0),
    "asymre-policy-iteration": Experiment("asymre-policy-iteration", run_policy_iteration, plot_policy_iteration,
                                          "AsymRE Fig. 2", 40000),
    "asymre-entropy": Experiment("asymre-policy-iteration", None, plot_entropy, "AsymRE Fig. 7", 0),
    "rec-counterexample": Experiment("rec-counterexample", run_rec_counterexample, plot_rec_counterexample,
                                     "REC §3 counterexample", 16000),
    "topr-naive-collapse": Experiment("topr-naive-collapse", run_topr_naive_collapse, plot_topr_naive_collapse,
                                      "TOPR §3", 12000),
    "topr-composition": Experiment("topr-composition", run_topr_composition, plot_topr_composition, "TOPR §4", 6000),
    "staleness": Experiment("staleness", run_staleness, plot_staleness, "stale behaviour", 75000),
    "algorithm-zoo": Experiment("algorithm-zoo", run_algorithm_zoo, plot_algorithm_zoo, "every objective", 42000),
    "llm-asymre-small": Experiment("llm-asymre-small", run_llm_asymre_small, plot_llm_asymre_small,
                                   "AsymRE δV sweep on SmolLM2 (CPU, ~1 h)", 14),
}
BANDIT_EXPERIMENTS = [k for k in EXPERIMENTS if not k.startswith("llm-")]


def load_config(name: str, configs: Path = CONFIGS) -> dict:
    """An experiment's TOML config; keys the shipped config does not have are refused (a typo would be ignored)."""
    path = Path(configs) / f"{name}.toml"
    try:
        cfg = tomllib.loads(path.read_text())
        shipped = CONFIGS / f"{name}.toml"
        if Path(configs) != CONFIGS and shipped.exists():
            unknown = sorted(set(cfg) - set(tomllib.loads(shipped.read_text())))
            if unknown:
                raise UsageError(f"--configs: {path}: unknown key {unknown[0]!r}")
        return cfg
    except FileNotFoundError:
        raise UsageError(f"ID: config {path} not found (reproduce runs from a source checkout)") from None
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"ID: {path} is not valid TOML: {err}") from None


def reproduce(ids: list[str], figures: Path, force: bool = False, plot_only: bool = False,
              progress: bool = True, echo=print, configs: Path = CONFIGS) -> list[Path]:
    """Run (unless its data exist) and plot each experiment; return the figure paths."""
    from .plots import save, style

    unknown = [i for i in ids if i not in EXPERIMENTS]
    if unknown:
        raise UsageError(f"ID: unknown experiment {unknown[0]!r} (choose from: {', '.join(EXPERIMENTS)}, or --all)")
    for parent in [Path(figures), *Path(figures).parents]:
        if parent.exists() and not parent.is_dir():
            raise UsageError(f"--figures: {parent} is a file, not a folder")
    plt = style(seaborn=True)
    made, ran = [], set()
    for name in ids:
        exp = EXPERIMENTS[name]
        cfg = load_config(exp.config, configs)
        data = figures / "data" / exp.config
        done = data / "DONE"
        owner = EXPERIMENTS[exp.config]
        if not done.exists() or (force and exp.run is not None):
            if plot_only:
                raise UsageError(f"--plot-only: no data for {name} in {data}; run without --plot-only first")
            data.mkdir(parents=True, exist_ok=True)
            done.unlink(missing_ok=True)
            bar = None
            if progress:
                from rich.progress import Progress

                bar = Progress(transient=True)
                bar.start()
                task = bar.add_task(f"{exp.config}", total=owner.sims)
            try:
                tick = (lambda: bar.advance(task)) if bar else None
                owner.run(cfg, data, tick)
            except (KeyError, TypeError) as err:
                raise UsageError(f"{exp.config}.toml: a value has the wrong type or is missing ({err})") from None
            finally:
                if bar:
                    bar.stop()
            done.write_text("complete\n")
            ran.add(exp.config)
        elif exp.config not in ran:
            echo(f"{name}: data exist in {data}: redrawing only (--force reruns)")
        try:
            fig = exp.plot(cfg, data, figures / name, plt)
        except (OSError, KeyError, ValueError, TypeError, IndexError) as err:
            raise UsageError(f"{name}: cannot draw from {data}: its files are missing or damaged "
                             f"({type(err).__name__}); rerun with --force") from None
        made += save(fig, figures / name)
        plt.close(fig)
        echo(f"{name}: {figures / name}.png")
    return made
