"""Figures drawn from a run folder's files (config.json, summary.csv, steps.parquet): never from live objects,
so any figure can be redrawn without rerunning (`banditlab plot RUN_DIR`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def style(seaborn: bool = False):
    """Slide-readable defaults. seaborn's theme when asked (the reproduce figures); the sweep figure uses
    matplotlib's copy of the same whitegrid look, because importing seaborn costs ~2 s of the sweep's budget."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matplotlib.rcdefaults()  # each figure from matplotlib's own defaults, whatever was drawn before it
    if seaborn:
        import seaborn as sns

        sns.set_theme(context="talk", style="whitegrid", font_scale=0.8)
    else:
        plt.style.use("seaborn-v0_8-whitegrid")
        plt.rcParams.update({"font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11})
    return plt


def save(fig, path: Path) -> list[Path]:
    """Write PNG (for the README and the file viewer) and PDF (for papers and slides) at `path` plus the
    extension (`path` ending in .png or .pdf loses it first; any other dot, as in "v1.0", stays)."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".png", ".pdf") else path
    png, pdf = stem.with_name(stem.name + ".png"), stem.with_name(stem.name + ".pdf")
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=130, bbox_inches="tight")
    fig.savefig(pdf, bbox_inches="tight", metadata={"CreationDate": None, "ModDate": None})
    return [png, pdf]


def offset_colors(offsets):
    """A diverging colour per δV, centred on the transition δV = 0 (blue below V^μ, red above)."""
    import matplotlib as mpl

    lim = max(1e-9, float(np.max(np.abs(offsets))))
    norm = mpl.colors.TwoSlopeNorm(vcenter=0.0, vmin=-lim, vmax=lim)
    cmap = mpl.colormaps["coolwarm"]
    return {o: cmap(norm(o)) for o in offsets}, mpl.cm.ScalarMappable(norm=norm, cmap=cmap)


def theory_curve(rec: dict, offsets, num: int = 400):
    """Dense (δV, J*) of the closed form for a run's bandit and config (its config.json as a dict),
    over the run's offsets below 0, or None where the theorem does not apply."""
    from .bandits import Bandit
    from .objectives import get_objective
    from .theory import limit_for_run

    cfg = rec["sweep"]
    bandit = Bandit(**rec["bandit"])
    keep = {k: v for k, v in rec["objective"]["params"].items() if k in ("std_norm", "red_drop")}
    obj = get_objective(rec["objective"]["name"]).with_params(**keep)
    lo, hi = float(np.min(offsets)), min(float(np.max(offsets)), 0.0)
    if lo >= hi:
        return None
    xs = np.linspace(lo, hi - 1e-9, num)
    vmu = bandit.v_mu_total
    ys = np.array([limit_for_run(bandit, cfg, obj, (x + vmu) if cfg["absolute"] else x)["theory_expected_reward"]
                   for x in xs])
    return (xs, ys) if np.isfinite(ys).any() else None


def plot_sweep(run: str | Path) -> list[Path]:
    """Final J(π_T) and support size versus δV with the V^μ line and the closed form, next to J(π_t) curves."""
    import pandas as pd

    from .stats import summarise

    run = Path(run)
    plt = style()
    rec = json.loads((run / "config.json").read_text())
    summary = pd.read_csv(run / "summary.csv")
    steps = pd.read_parquet(run / "steps.parquet")
    vmu = float(summary["v_mu"].iloc[0])
    best = float(np.dot(rec["bandit"]["context_probs"], np.max(rec["bandit"]["means"], -1)))
    table = summarise(summary, ["baseline_offset"], "final_expected_reward")
    offsets = table["baseline_offset"].to_numpy()
    colors, mappable = offset_colors(offsets)

    fig, (ax, axs, ax2) = plt.subplots(1, 3, figsize=(17, 4.8), gridspec_kw={"width_ratios": [1.15, 0.8, 1]})
    ax.scatter(summary["baseline_offset"], summary["final_expected_reward"], s=8, color="0.6", alpha=0.5,
               label="one seed", zorder=2)
    err = np.vstack([table["mean"] - table["ci_low"], table["ci_high"] - table["mean"]])
    ax.errorbar(offsets, table["mean"], yerr=np.nan_to_num(err), fmt="o", color="C0", ms=5, capsize=3,
                label=(f"simulation: mean, 95% CI ({int(table['n'].iloc[0])} seeds)" if table['n'].iloc[0] > 1
                       else "simulation (exact, deterministic)"), zorder=3)
    curve = theory_curve(rec, offsets)
    if curve is not None:
        ax.plot(*curve, color="k", lw=1.8, label=r"Theorem 4.2: $J(\pi^*)$", zorder=4)
    ax.axhline(vmu, color="C3", ls="--", lw=1.2, label=rf"$V^\mu$ = {vmu:.3f} (behaviour)")
    ax.axhline(best, color="C2", ls=":", lw=1.2, label=f"best arm = {best:.3f}")
    for a in (ax, axs):
        a.axvline(0.0, color="0.3", ls=":", lw=1)
        a.set_xlabel(r"baseline offset $\delta V = V - V^\mu$")
    ax.set_ylabel(r"final expected reward $J(\pi_T)$")
    asym = curve is not None  # the AsymRE reading (theorem curve) applies
    ax.set_title(r"Improvement below $V^\mu$, collapse above" if asym else r"Final reward versus the baseline")
    ax.legend(fontsize=8, loc="best", frameon=True, framealpha=0.85)  # placed where it hides fewest points

    sup = summarise(summary, ["baseline_offset"], "support_size")
    axs.errorbar(sup["baseline_offset"], sup["mean"], fmt="o", color="C0", ms=5, label="simulation")
    th = summary.groupby("baseline_offset")["theory_support_size"].first()
    if th.notna().any():
        axs.plot(th.index, th.to_numpy(), "k_", ms=14, mew=2, label=r"theory, $\pi^*$")
    axs.set_yscale("log")
    top = max(sup["mean"].max(), th.max() if th.notna().any() else 1.0)  # th: NaN where no theorem applies
    axs.set_ylim(0.8, 1.3 * top)  # every point inside the axes, the top one included
    from matplotlib.ticker import FormatStrFormatter, LogLocator

    axs.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axs.yaxis.set_major_formatter(FormatStrFormatter("%g"))  # 1, 2, 5, 10 rather than 10⁰, 2×10⁰, ...
    axs.yaxis.set_minor_formatter(plt.NullFormatter())
    axs.set_ylabel(rf"support size $|\{{a: \pi(a) \geq {rec['sweep']['support_eps']:g}\}}|$")
    axs.set_title("Support shrinks to one arm" if asym else "Support size")
    axs.legend(fontsize=8)

    mean = steps.groupby(["baseline_offset", "step"])["expected_reward"].mean().reset_index()
    for off, g in mean.groupby("baseline_offset"):
        ax2.plot(g["step"], g["expected_reward"], color=colors[off], lw=1.2)
    ax2.axhline(vmu, color="C3", ls="--", lw=1.2)
    ax2.annotate(r"$V^\mu$ (behaviour)", (1.0, vmu), xycoords=("axes fraction", "data"), xytext=(-4, 3),
                 textcoords="offset points", ha="right", va="bottom", fontsize=8, color="C3")  # label on its line
    ax2.set_xlabel("step $t$")
    ax2.set_ylabel(r"$J(\pi_t)$, mean over seeds")
    ax2.set_title(r"Learning curves, coloured by $\delta V$")
    fig.colorbar(mappable, ax=ax2, label=r"$\delta V$")
    s = rec["sweep"]
    fig.suptitle(f"{rec['objective']['name']} on the {rec['bandit']['name']} bandit: "
                 f"{s['mode']} mode, behaviour {s['behavior']}, η = {s['lr']:g}, {s['steps']} steps", fontsize=13)
    # fixed margins for this fixed layout: tight_layout would cost 0.5 s of the sweep's 6 s
    fig.subplots_adjust(left=0.045, right=0.985, bottom=0.12, top=0.84, wspace=0.22)
    fig.savefig(run / "sweep.png", dpi=120)
    plt.close(fig)
    return [run / "sweep.png"]


# (title, y label, metrics.jsonl keys drawn in that panel) of an LLM run's curves; panels without data are left out
LLM_PANELS = (
    ("Reward of the sampled batch", "mean reward", ("reward_mean",)),
    ("Accuracy (greedy pass@1: markers)", "accuracy", ("accuracy", "test_accuracy", "train_accuracy")),
    ("Entropy of π", "nats per token", ("entropy",)),
    ("Ratio π/μ over the batch's tokens", "ratio (min, mean, max)", ("ratio_mean", "ratio_min", "ratio_max")),
    ("KL from μ to π (k1 estimate: can dip below 0)", r"mean of $\log\mu - \log\pi$ per token", ("kl_behaviour",)),
    ("Throughput", "tokens / s", ("tokens_per_s", "gen_tokens_per_s", "train_tokens_per_s")),
)
_LINE = {"test_accuracy": dict(marker="o", ls="--"), "train_accuracy": dict(marker="s", ls=":"),
         "ratio_min": dict(lw=0.8, ls=":"), "ratio_max": dict(lw=0.8, ls="--"),
         "gen_tokens_per_s": dict(ls="--", lw=1), "train_tokens_per_s": dict(ls=":", lw=1)}


def read_metrics(run: Path) -> list[dict]:
    """The rows of a run's metrics.jsonl (a partial last line, from a run still writing, is skipped)."""
    rows = []
    for line in (Path(run) / "metrics.jsonl").read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def plot_llm_runs(runs: list, out: Path) -> list[Path]:
    """An LLM run's curves against the step (several runs overlaid, one colour each), from metrics.jsonl alone."""
    plt = style()
    data = {Path(r).name: read_metrics(Path(r)) for r in runs}
    panels = [p for p in LLM_PANELS if any(k in row for rows in data.values() for row in rows for k in p[2])]
    cols = min(3, len(panels))
    nrows = -(-len(panels) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(5.2 * cols, 3.8 * nrows + 0.6), squeeze=False)
    for ax, (title, ylabel, keys) in zip(axes.flat, panels):
        for i, (name, rows) in enumerate(data.items()):
            for k in keys:
                pts = [(r["step"], r[k]) for r in rows if isinstance(r.get(k), (int, float)) and r[k] == r[k]]
                if pts:
                    x, y = zip(*pts)
                    ax.plot(x, y, color=f"C{i % 10}", label=(k if len(data) == 1 else None), **_LINE.get(k, {}))
        if keys[0] == "ratio_mean":
            ax.set_yscale("log")
        ax.set(title=title, xlabel="step", ylabel=ylabel)
        if len(data) == 1:
            ax.legend(fontsize=8)
        elif len(keys) > 1:  # colours name the runs (figure legend); line styles name the metrics, in grey
            present = [k for k in keys if any(k in r for rows in data.values() for r in rows)]
            ax.legend([plt.Line2D([], [], color="0.4", **_LINE.get(k, {})) for k in present], present, fontsize=8)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    if len(data) > 1:
        handles = [plt.Line2D([], [], color=f"C{i % 10}") for i in range(len(data))]
        fig.legend(handles, list(data), loc="lower center", ncol=min(len(data), 5), fontsize=9, frameon=False)
    fig.suptitle(f"LLM training curves: {', '.join(data) if len(data) <= 3 else f'{len(data)} runs'}",
                 fontsize=13)
    fig.tight_layout(rect=(0, 0.06 if len(data) > 1 else 0, 1, 1))
    files = save(fig, out)
    plt.close(fig)
    return files
