"""Figures drawn from a run folder's files (config.json, summary.csv, steps.parquet): never from live objects,
so any figure can be redrawn without rerunning (`banditlab plot RUN_DIR`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


# Text and math in matplotlib's own copy of DejaVu Sans, so that a figure has the same glyphs (and bytes) on every
# machine: both whitegrid themes list Arial before DejaVu Sans, and matplotlib's lists Liberation Sans before it too,
# so they would draw in whichever of those a machine has installed.
FONT = {"font.family": "sans-serif", "font.sans-serif": ["DejaVu Sans"], "mathtext.fontset": "dejavusans"}


def style(seaborn: bool = False, backend: str | None = "Agg"):
    """Slide-readable defaults for every figure the project draws. seaborn's theme when asked (the reproduce
    figures, the demo); the sweep figure and the LLM curves use matplotlib's copy of the same whitegrid look,
    because importing seaborn costs ~2 s of the sweep's budget. Both in FONT, and tick labels that are the values
    themselves (no "+4.579" offset above the axis). `backend`: Agg for files; a window's (TkAgg), or None to keep
    the present one (a notebook's inline backend)."""
    import matplotlib

    if backend:
        matplotlib.use(backend)
    import matplotlib.pyplot as plt

    matplotlib.rcdefaults()  # each figure from matplotlib's own defaults, whatever was drawn before it
    if seaborn:
        import seaborn as sns

        sns.set_theme(context="talk", style="whitegrid", font_scale=0.8)
    else:
        plt.style.use("seaborn-v0_8-whitegrid")
        plt.rcParams.update({"font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11})
    plt.rcParams.update({**FONT, "axes.formatter.useoffset": False})
    return plt


def ratio_scale(ax, values) -> None:
    """A log y axis where the positive `values` spread over more than a factor of 100 (matplotlib's decade ticks,
    10⁻⁶, 10⁰, ...); a linear one, with plain ticks, where they spread less: a log axis over less than a decade
    ticks between decades, labelled like 1.05×10⁰, and over one or two decades labels one or two ticks."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v) & (v > 0)]
    if v.size and v.max() > 100 * v.min():
        ax.set_yscale("log")


def figure_paths(path: Path) -> list[Path]:
    """The PNG (for the README and the file viewer) and the PDF (for papers and slides) of a figure at `path` plus
    the extension (`path` ending in .png or .pdf loses it first; any other dot, as in "v1.0", stays)."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".png", ".pdf") else path
    return [stem.with_name(stem.name + ".png"), stem.with_name(stem.name + ".pdf")]


def check_figure(path: Path, option: str) -> None:
    """Before the work: both files of the figure at `path` can be written (`safeio.writable_target`)."""
    from banditlab.plumbing.safeio import writable_target

    for f in figure_paths(path):
        writable_target(f, option)


def save(fig, path: Path) -> list[Path]:
    """Write the figure's PNG and PDF (`figure_paths`), each through the one writer."""
    png, pdf = figure_paths(path)
    from banditlab.plumbing.folder import atomic_output

    png.parent.mkdir(parents=True, exist_ok=True)
    atomic_output(png, lambda tmp: fig.savefig(tmp, format="png", dpi=130, bbox_inches="tight"))
    atomic_output(pdf, lambda tmp: fig.savefig(tmp, format="pdf", bbox_inches="tight",
                                               metadata={"CreationDate": None, "ModDate": None}))
    return [png, pdf]


def offset_colors(offsets):
    """A diverging colour per δV, centred on the transition δV = 0 (blue below V^μ, red above)."""
    import matplotlib as mpl

    lim = max(1e-9, float(np.max(np.abs(offsets))))
    norm = mpl.colors.TwoSlopeNorm(vcenter=0.0, vmin=-lim, vmax=lim)
    cmap = mpl.colormaps["coolwarm"]
    return {o: cmap(norm(o)) for o in offsets}, mpl.cm.ScalarMappable(norm=norm, cmap=cmap)


def v_colors(values):
    """A viridis colour per baseline value V, in increasing order."""
    import matplotlib as mpl

    cmap = mpl.colormaps["viridis"]
    return {v: cmap(i / max(1, len(values) - 1)) for i, v in enumerate(sorted(values))}


def theory_curve(rec: dict, offsets, num: int = 400):
    """Dense (δV, J*) of the closed form for a run's bandit and config (its config.json as a dict),
    over the run's offsets below 0, or None where the theorem does not apply."""
    from banditlab.science.bandits import Bandit
    from banditlab.registry.objectives import get_objective
    from banditlab.science.theory import limit_for_run

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


def reference_line(behavior: str, absolute: bool) -> tuple[str, str, str]:
    """(symbol, words, x label) of a sweep figure's horizontal line, drawn at J(π₀) (summary.csv's v_mu), and of its
    δV axis, for a `--behavior`: V^μ, the behaviour's value, where μ = π₀ throughout; V^{μ₀}, the first
    behaviour's, where μ is refreshed from π, and δV then counts from the current behaviour's V^{μ_t} (from the
    line, with an absolute baseline); J(π₀) where μ mixes in the uniform policy, so no behaviour has that value."""
    from banditlab.science.behaviour import Behavior

    b = Behavior.parse(behavior)
    if b.mix and b.mix_ref == "uniform":
        symbol, words = r"$J(\pi_0)$", "initial policy"
    elif b.lag is None:
        symbol, words = r"$V^\mu$", "behaviour"
    else:
        symbol, words = r"$V^{\mu_0}$", "initial behaviour"
    if absolute:  # a fixed V, its offset counted from the line
        xlabel = rf"baseline offset $\delta V = V - {symbol[1:]}"
    elif b.lag is None:
        xlabel = r"baseline offset $\delta V = V - V^\mu$"
    else:
        xlabel = r"baseline offset $\delta V = V - V^{\mu_t}$ ($\mu_t$: the behaviour at step $t$)"
    return symbol, words, xlabel


def plot_sweep(run: str | Path) -> list[Path]:
    """Final J(π_T) and support size versus δV with the V^μ line, next to J(π_t) curves. Beside a sampled sweep's
    mean and Student-t CI over seeds, two references, each labelled: the expected update's J after the same steps
    (summary.csv's exact_expected_reward, where it applies) and Theorem 4.2's t → ∞ limit (the closed form).
    Exact mode (one deterministic run per baseline) and one-seed sweeps draw the runs themselves, with no
    per-seed points and no mean."""
    import pandas as pd

    from banditlab.stats import summarise

    run = Path(run)
    plt = style()
    from banditlab.plumbing.folder import read_record

    rec = read_record(run, "RUN_DIR")
    summary = pd.read_csv(run / "summary.csv")
    steps = pd.read_parquet(run / "steps.parquet")
    vmu = float(summary["v_mu"].iloc[0])
    best = float(np.dot(rec["bandit"]["context_probs"], np.max(rec["bandit"]["means"], -1)))
    table = summarise(summary, ["baseline_offset"], "final_expected_reward")
    offsets = table["baseline_offset"].to_numpy()
    colors, mappable = offset_colors(offsets)
    s = rec["sweep"]
    seeds = int(table["n"].max())
    symbol, words, xlabel = reference_line(s["behavior"], s["absolute"])

    fig, (ax, axs, ax2) = plt.subplots(1, 3, figsize=(17, 4.8), gridspec_kw={"width_ratios": [1.15, 0.8, 1]})
    if seeds > 1:
        ax.scatter(summary["baseline_offset"], summary["final_expected_reward"], s=8, color="0.6", alpha=0.5,
                   label="one seed", zorder=2)
        err = np.vstack([table["mean"] - table["ci_low"], table["ci_high"] - table["mean"]])
        ax.errorbar(offsets, table["mean"], yerr=np.nan_to_num(err), fmt="o", color="C0", ms=5, capsize=3,
                    label=f"{s['mode']} updates: mean, 95% CI ({seeds} seeds)", zorder=3)
    else:
        ax.plot(offsets, table["mean"], "o", color="C0", ms=5, zorder=3,
                label="simulation (exact, deterministic)" if s["mode"] == "exact" else "simulation (1 seed)")
    if "exact_expected_reward" in summary and summary["exact_expected_reward"].notna().any():
        exact = summary.groupby("baseline_offset")["exact_expected_reward"].first()
        ax.plot(exact.index, exact.to_numpy(), "D", color="C1", ms=4, mfc="none", mew=1.2, zorder=5,
                label=f"expected update, same {s['steps']} steps")
    curve = theory_curve(rec, offsets)
    if curve is not None:
        ax.plot(*curve, color="k", lw=1.8, label=r"Theorem 4.2: $J(\pi^*)$, $t \to \infty$", zorder=4)
    ax.axhline(vmu, color="C3", ls="--", lw=1.2, label=f"{symbol} = {vmu:.3f} ({words})")
    ax.axhline(best, color="C2", ls=":", lw=1.2, label=f"best arm = {best:.3f}")
    for a in (ax, axs):
        a.axvline(0.0, color="0.3", ls=":", lw=1)
        a.set_xlabel(xlabel)
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
    axs.legend(fontsize=8, frameon=True, framealpha=0.85)  # framed: its marker is not read as a data point

    mean = steps.groupby(["baseline_offset", "step"])["expected_reward"].mean().reset_index()
    for off, g in mean.groupby("baseline_offset"):
        ax2.plot(g["step"], g["expected_reward"], color=colors[off], lw=1.2)
    ax2.axhline(vmu, color="C3", ls="--", lw=1.2)
    ax2.annotate(f"{symbol} ({words})", (1.0, vmu), xycoords=("axes fraction", "data"), xytext=(-4, 3),
                 textcoords="offset points", ha="right", va="bottom", fontsize=8, color="C3")  # label on its line
    ax2.set_xlabel("step $t$")
    ax2.set_ylabel(r"$J(\pi_t)$, mean over seeds" if seeds > 1 else r"$J(\pi_t)$")
    ax2.set_title(r"Learning curves, coloured by $\delta V$")
    fig.colorbar(mappable, ax=ax2, label=r"$\delta V$")
    fig.suptitle(f"{rec['objective']['name']} on the {rec['bandit']['name']} bandit: "
                 f"{s['mode']} mode, behaviour {s['behavior']}, η = {s['lr']:g}, {s['steps']} steps", fontsize=13)
    # fixed margins for this fixed layout: tight_layout would cost 0.5 s of the sweep's 6 s
    fig.subplots_adjust(left=0.045, right=0.985, bottom=0.12, top=0.84, wspace=0.22)
    from banditlab.plumbing.folder import atomic_output

    atomic_output(run / "sweep.png", lambda tmp: fig.savefig(tmp, format="png", dpi=120))
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


def method_comparison(axes, scores: dict, reference: str, colors: dict, runs: str):
    """rliable's three views of every method's final J (runs × tasks), each with its 95 % stratified-bootstrap
    interval (`stats.compare_methods`): the IQM, P(method > reference) and the performance profile, on three axes.
    `scores`: method → [runs, tasks] final J; `runs` names what the IQM is over (for its title)."""
    from banditlab.stats import compare_methods

    every = np.concatenate([np.ravel(x) for x in scores.values()])
    table, profile = compare_methods(scores, reference, np.linspace(every.min() - 0.01, every.max() + 0.01, 121))
    table = table.sort_values(["iqm", "p_improve"]).reset_index(drop=True)
    y, c = np.arange(len(table)), [colors[m] for m in table.method]
    ax_iqm, ax_poi, ax_prof = axes
    ax_iqm.barh(y, table.iqm, color=c, xerr=[table.iqm - table.iqm_low, table.iqm_high - table.iqm], capsize=2)
    ax_iqm.set_xlabel(r"IQM of final $J(\pi_T)$")
    ax_iqm.set_title(f"interquartile mean over {runs}")
    ax_poi.errorbar(table.p_improve, y, xerr=[table.p_improve - table.p_low, table.p_high - table.p_improve],
                    fmt="none", ecolor="0.3", capsize=2, lw=1)
    ax_poi.scatter(table.p_improve, y, c=c, s=40, zorder=3, edgecolors="k", linewidths=0.5)
    ax_poi.axvline(0.5, color="0.4", ls=":", lw=1.2)
    ax_poi.set_xlim(-0.03, 1.03)
    ax_poi.set_xlabel(f"P(method > {reference})")
    ax_poi.set_title(f"probability of improvement on {reference}")
    for ax_ in (ax_iqm, ax_poi):
        ax_.set_yticks(y, table.method, fontsize=8)
    for name, g in profile.groupby("method", sort=False):
        ax_prof.plot(g.tau, g.share, color=colors[name], lw=1.6, label=name)
        ax_prof.fill_between(g.tau, g.low, g.high, color=colors[name], alpha=0.12, lw=0)
    ax_prof.set_xlabel(r"threshold $\tau$ on final $J(\pi_T)$")
    ax_prof.set_ylabel(r"share of runs with $J(\pi_T) > \tau$")
    ax_prof.set_title("performance profile (95% CI bands)")


def read_metrics(run: Path) -> list[dict]:
    """The rows of a run's metrics.jsonl, through the trainer's reader (a partial last line, from a run still
    writing, is dropped)."""
    from banditlab.plumbing.folder import read_metrics as read

    return read(Path(run) / "metrics.jsonl", "RUN_DIR")


def plot_llm_runs(runs: list, out: Path) -> list[Path]:
    """An LLM run's curves against the step (several runs overlaid, one colour each), from metrics.jsonl alone.
    A panel with several metrics names their line styles in a legend under its axes, where it hides no data."""
    from matplotlib.ticker import MaxNLocator

    plt = style()
    data = {Path(r).name: read_metrics(Path(r)) for r in runs}
    panels = [p for p in LLM_PANELS if any(k in row for rows in data.values() for row in rows for k in p[2])]
    cols = min(3, len(panels))
    nrows = -(-len(panels) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(5.2 * cols, 3.9 * nrows + 0.6), squeeze=False,
                             layout="constrained")
    for ax, (title, ylabel, keys) in zip(axes.flat, panels):
        drawn = {}  # metric: its values, over every run
        for i, (name, rows) in enumerate(data.items()):
            for k in keys:
                pts = [(r["step"], r[k]) for r in rows if isinstance(r.get(k), (int, float)) and r[k] == r[k]]
                if pts:
                    x, y = zip(*pts)
                    ax.plot(x, y, color=f"C{i % 10}", **_LINE.get(k, {}))
                    drawn.setdefault(k, []).extend(y)
        if keys[0] == "ratio_mean":
            ratio_scale(ax, [v for vs in drawn.values() for v in vs])
        ax.set(title=title, xlabel="step", ylabel=ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))  # steps are whole numbers
        if len(drawn) > 1:  # line styles name the metrics (in grey when colours name the runs)
            grey = "C0" if len(data) == 1 else "0.4"
            ax.legend([plt.Line2D([], [], color=grey, **_LINE.get(k, {})) for k in drawn], list(drawn), fontsize=8,
                      loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=len(drawn), frameon=False,
                      handlelength=2.5, columnspacing=1.2)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    if len(data) > 1:
        handles = [plt.Line2D([], [], color=f"C{i % 10}") for i in range(len(data))]
        fig.legend(handles, list(data), loc="outside lower center", ncol=min(len(data), 5), fontsize=9,
                   frameon=False)
    fig.suptitle(f"LLM training curves: {', '.join(data) if len(data) <= 3 else f'{len(data)} runs'}",
                 fontsize=13)
    files = save(fig, out)
    plt.close(fig)
    return files
