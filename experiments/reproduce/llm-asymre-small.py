"""AsymRE's δV sweep on SmolLM2-135M-Instruct (LoRA, CPU, about an hour): the LLM experiment.

Run + plot of `banditlab reproduce llm-asymre-small`, with its config beside it (llm-asymre-small.toml); discovered by
banditlab.reproduce. `run` writes tidy files to figures/data/llm-asymre-small/; the plots read only those files.
"""

from pathlib import Path

from banditlab.plumbing.folder import atomic_write


def _slug(label: str) -> str:
    text = label.replace("−", "m").replace("+", "p").replace("δV", "dV")
    return "-".join("".join(ch if ch.isascii() and ch.isalnum() else " " for ch in text).split())


def run_llm_asymre_small(cfg, data: Path, tick):
    """Each (seed, method) trains into its own folder; the trainer resumes an interrupted run and returns at once
    from a complete one."""
    import json

    from banditlab_llm.train import config_from, train

    index = []
    for seed in cfg["seeds"]:
        for label, spec in cfg["methods"].items():
            out = data / f"{_slug(label)}-s{seed}"
            index.append({"method": label, "seed": seed, "folder": out.name})
            opts = dict(cfg["train"], seed=seed, algo=spec[0], algo_args=list(spec[1:]), out=str(out),
                        offline_data=str(data / f"offline-s{seed}.pt"))
            tc = config_from(opts, None)
            train(tc, resume=(out / "checkpoint.pt").exists(), echo=lambda *_: None)
            if tick:
                tick()
            atomic_write(data / "runs.json", json.dumps(index, indent=1))
    atomic_write(data / "runs.json", json.dumps(index, indent=1))


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
    from matplotlib.ticker import MaxNLocator

    from banditlab.plots import ratio_scale

    df = llm_metrics(data)
    labels = [m for m in cfg["methods"] if m in set(df.method)]
    colors = {m: c for m, c in zip(labels, ["#08519c", "#4292c6", "#000000", "#ef3b2c", "#99000d", "#41ab5d",
                                            "#ff7f00"])}
    fig, axes = plt.subplots(2, 2, figsize=(13, 9.5), layout="constrained")  # 2 × 2: readable at README width
    axes = axes.flat
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
            elif g.seed.nunique() > 1:
                ax.fill_between(s.index, s["min"], s["max"], color=colors[m], alpha=0.15)
        if col == "ratio_max":
            ratio_scale(ax, [y for line in ax.get_lines() for y in line.get_ydata()])
        ax.set_title(title)
        ax.set_xlabel("step (8 steps = 1 epoch of the offline data)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))  # steps are whole numbers
    handles, names = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncol=4, fontsize=11, frameon=False)
    t = cfg["train"]
    fig.suptitle(f"AsymRE on SmolLM2-135M-Instruct + LoRA, offline data from π₀\n({t['n_train']} addition problems "
                 f"× G = {t['group_size']}, {t['epochs']} epochs, ±1 rewards); mean over seeds, band = min–max",
                 fontsize=14)
    return fig

CONFIG, SIMS, run = "llm-asymre-small", 14, run_llm_asymre_small
FIGURES = {"llm-asymre-small": ("AsymRE δV sweep on SmolLM2 (CPU, ~1 h)", plot_llm_asymre_small)}
