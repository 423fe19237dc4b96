"""AsymRE's δV sweep on SmolLM2-135M-Instruct (LoRA, CPU; 30 runs of 4–15 minutes): the LLM experiment.

Run + plot of `banditlab reproduce llm-asymre-small`, with its config beside it (llm-asymre-small.toml); discovered by
banditlab.reproduce. `run` writes tidy files to figures/data/llm-asymre-small/; the plots read only those files.
"""

from pathlib import Path

from banditlab.plumbing.folder import atomic_write


def _slug(label: str) -> str:
    text = label.replace("−", "m").replace("+", "p").replace("δV", "dV")
    return "-".join("".join(ch if ch.isascii() and ch.isalnum() else " " for ch in text).split())


def planned_runs(cfg) -> list[dict]:
    """The experiment's runs, seed-major (an interrupted reproduce still has whole seeds): method, seed, folder."""
    return [{"method": label, "seed": seed, "folder": f"{_slug(label)}-s{seed}"}
            for seed in cfg["seeds"] for label in cfg["methods"]]


def run_llm_asymre_small(cfg, data: Path, tick):
    """runs.json lists every planned run first; each (seed, method) then trains into its own folder, which is
    finished when it holds DONE. The trainer resumes an interrupted run and returns at once from a complete one."""
    import json

    from banditlab_llm.train import config_from, train

    runs = planned_runs(cfg)
    atomic_write(data / "runs.json", json.dumps(runs, indent=1))
    for run in runs:
        out = data / run["folder"]
        spec = cfg["methods"][run["method"]]
        opts = dict(cfg["train"], seed=run["seed"], algo=spec[0], algo_args=list(spec[1:]), out=str(out),
                    offline_data=str(data / f"offline-s{run['seed']}.pt"))
        train(config_from(opts, None), resume=(out / "checkpoint.pt").exists(), echo=lambda *_: None)
        if tick:
            tick()


def llm_metrics(data: Path):
    """The finished runs' metrics (a DONE marker in their folder) as one tidy frame (method, seed, step, metrics),
    read through the tool's readers (`safeio.read_json`, `folder.read_metrics`)."""
    import pandas as pd

    from banditlab.plumbing.folder import is_complete, read_metrics
    from banditlab.plumbing.safeio import read_json

    rows = []
    for run in read_json(data / "runs.json", "--figures"):
        folder = data / run["folder"]
        if is_complete(folder):
            rows += [{**row, "method": run["method"], "seed": run["seed"]}
                     for row in read_metrics(folder / "metrics.jsonl", "--figures")]
    return pd.DataFrame(rows)


def final_scores(df, col: str = "test_accuracy"):
    """Per (method, seed): the value of `col` at step 0 and at the run's last evaluated step (finished runs
    only: a run whose last evaluation is not at the longest run's last step is left out)."""
    g = df[df[col].notna()]
    last = g.step.max()
    ends = g[g.step == last][["method", "seed", col]].rename(columns={col: "final"})
    starts = g[g.step == 0][["method", "seed", col]].rename(columns={col: "start"})
    return ends.merge(starts, on=["method", "seed"])


def paired_to(scores, reference: str):
    """Per method: the per-seed differences final − final(reference) over the seeds both finished, and
    final − start (the same π₀ and test problems within a seed, so each difference is paired)."""
    ref = scores[scores.method == reference].set_index("seed")["final"]
    out = {}
    for m, g in scores.groupby("method", sort=False):
        g = g.set_index("seed")
        both = g.index.intersection(ref.index)
        out[m] = {"vs_ref": (g.loc[both, "final"] - ref.loc[both]).to_numpy(),
                  "vs_start": (g["final"] - g["start"]).to_numpy()}
    return out  # a reference with no finished run: every vs_ref is empty


def plot_llm_asymre_small(cfg, data: Path, out: Path, plt):
    """Six panels: test and train pass@1, entropy and the ratio's range against the step (mean over seeds with
    its Student-t 95 % interval, `stats.mean_ci`, cut to the values the quantity can take), then the final test
    pass@1 against π₀'s and against GRPO's, paired per seed, each with its t interval (over 5 seeds the percentile
    bootstrap is too short: see stats)."""
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    from banditlab.plots import ratio_scale
    from banditlab.stats import mean_ci

    df = llm_metrics(data)
    labels = [m for m in cfg["methods"] if m in set(df.method)]
    colors = {m: c for m, c in zip(labels, ["#08519c", "#4292c6", "#000000", "#ef3b2c", "#41ab5d", "#ff7f00"])}
    fig, axes = plt.subplots(2, 3, figsize=(18, 10), layout="constrained")
    panels = [("test_accuracy", "test pass@1 (greedy, held-out)", (0, 1)),
              ("train_accuracy", "train pass@1 (greedy)", (0, 1)), ("entropy", "token entropy of π (nats)", (0, None)),
              ("ratio_max", r"token ratio $\pi/\mu$: max (solid), min (dotted)", None)]
    for ax, (col, title, bounds) in zip([*axes[0], axes[1, 0]], panels):
        if col not in df:
            continue
        for m in labels:
            g = df[(df.method == m) & df[col].notna()]
            if g.empty:
                continue
            n = g.seed.nunique()
            s = np.array([(step, *mean_ci(x[col].to_numpy())) for step, x in g.groupby("step")])
            ax.plot(s[:, 0], s[:, 1], "o-" if "accuracy" in col else "-", color=colors[m], lw=2, ms=4,
                    label=f"{m} ({n} seed{'s' * (n > 1)})")
            if col == "ratio_max":
                ax.plot(s[:, 0], g.groupby("step")["ratio_min"].mean(), ":", color=colors[m], lw=1.5)
            elif n > 1:
                ax.fill_between(s[:, 0], *np.clip(s[:, 2:4].T, *bounds), color=colors[m], alpha=0.12, lw=0)
        if col == "ratio_max":
            ratio_scale(ax, [y for line in ax.get_lines() for y in line.get_ydata()])
        ax.set_title(title)
        ax.set_xlabel("step (8 steps = 1 epoch of the offline data)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))
    scores = final_scores(df)
    reference = "GRPO"
    diffs = paired_to(scores, reference)
    for ax, key, title in [(axes[1, 1], "vs_start", "final test pass@1 − π₀'s (paired per seed)"),
                           (axes[1, 2], "vs_ref", f"final test pass@1 − {reference}'s (paired per seed)")]:
        shown = [m for m in labels if m in diffs and len(diffs[m][key]) and not (key == "vs_ref" and m == reference)]
        for y, m in enumerate(shown):
            d = diffs[m][key]
            mean, lo, hi = mean_ci(d)
            jitter = np.linspace(-0.15, 0.15, len(d)) if len(d) > 1 else np.zeros(len(d))
            ax.scatter(d, y + jitter, s=14, color=colors[m], alpha=0.6, zorder=3)
            if len(d) > 1 and np.isfinite(lo):
                ax.errorbar(mean, y, xerr=[[mean - lo], [hi - mean]], fmt="o", color="k", capsize=4, ms=6)
            else:
                ax.plot(mean, y, "o", color="k", ms=6)
        ax.axvline(0, color="0.4", ls=":", lw=1.2)
        ax.set_yticks(range(len(shown)), shown)
        ax.invert_yaxis()
        ax.set_title(title)
        ax.set_xlabel("difference in pass@1 (dots: seeds; black: mean, t 95 % CI)")
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncol=6, fontsize=11, frameon=False)
    t = cfg["train"]
    fig.suptitle(f"AsymRE on SmolLM2-135M-Instruct + LoRA, offline data from π₀ ({t['n_train']} addition problems "
                 f"× G = {t['group_size']}, {t['epochs']} epochs, ±1 rewards; {t['eval_n']} held-out problems)\n"
                 "mean over seeds, band = Student-t 95 % interval of the mean (cut to [0, 1] for pass@1, ≥ 0 for "
                 "entropy)", fontsize=14)
    return fig

CONFIG, SIMS, run = "llm-asymre-small", 30, run_llm_asymre_small
PARTIAL = True  # hours of runs: --plot-only draws the finished ones while the rest are still to train
FIGURES = {"llm-asymre-small": ("AsymRE δV sweep on SmolLM2 (CPU, 30 runs)", plot_llm_asymre_small)}
