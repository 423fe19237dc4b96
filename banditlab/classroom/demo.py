"""`banditlab demo`: the phase transition at V = V^μ on a 3-armed bandit, for a lecture.

A 3-armed policy is a point of the probability simplex (a triangle), so the whole dynamics is visible. The
expected off-policy REINFORCE update with baseline V on a fixed behaviour μ, started from several π₀:
  * V < V^μ: every start converges to the same interior-or-face point π* of Theorem 4.2, and J(π*) > V^μ;
  * V > V^μ: each start runs to a vertex (one arm), and which vertex depends on π₀; it can be a bad one.
The default bandit is REC's counterexample (μ = [0.3, 0.6, 0.1], r = [0, 0.8, 1], V^μ = 0.58).

Deliberately simple: exact (infinite-batch) updates only; sampling noise is the subject of `banditlab sweep`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from banditlab.science import bandits as B
from banditlab.science import theory
from banditlab.classroom.page import write_page
from banditlab.classroom.simplex import paths, to_xy
from banditlab.errors import UsageError


def explain(bandit: B.Bandit, below: float, above: float) -> str:
    mu, r = bandit.mu[0], bandit.means[0]
    vmu = theory.v_mu(mu, r)
    pi = theory.limit_policy(mu, r, below)
    a = mu * (r - vmu)
    fmt = lambda x: "[" + ", ".join(f"{v:.3f}" for v in x) + "]"
    return "\n".join([
        f"Three arms with mean rewards r = {fmt(r)}; the data come from a fixed behaviour μ = {fmt(mu)}.",
        f"Its expected reward is V^μ = Σ μ r = {vmu:.3f}. We train π with the expected update of",
        "off-policy REINFORCE with baseline V (no importance ratio): Δl(y) = η μ(y)(r(y) − V) − η b π(y), b = V^μ − V.",
        f"  V = {below:.3f} < V^μ: every start converges to π* = {fmt(pi)} (Theorem 4.2),",
        f"      J(π*) = {theory.expected_reward(pi, r):.3f} > V^μ = {vmu:.3f}: off-policy training improves on μ.",
        f"  V = V^μ = {vmu:.3f}: π concentrates on argmax μ(r − V^μ) = arm {int(a.argmax()) + 1} "
        f"(r = {r[a.argmax()]:.3f}); the best arm is arm {int(r.argmax()) + 1} (r = {r.max():.3f}).",
        f"  V = {above:.3f} > V^μ: rich-get-richer dynamics; each start ends on one arm, which one depends on π₀.",
        f"The support is one arm from V = {theory.single_arm_from(mu, r)[0]:.3f} on (when V^μ − V is at most the lead "
        "of the largest μ(y)(r(y) − V) over the next), at the latest at V = V^μ, the transition.",
    ])


def draw(bandit: B.Bandit, below: float, above: float, steps: int, lr: float, plt, fig=None):
    mu, r = bandit.mu[0], bandit.means[0]
    vmu = theory.v_mu(mu, r)
    if fig is None:
        fig = plt.figure(figsize=(16, 5.2))
    fig.clf()
    axes = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1, 1.15]})
    for ax, V, title in [(axes[0], below, "below"), (axes[1], above, "above")]:
        tr = paths(bandit, V, steps, lr)[:, 0]
        ax.plot(*to_xy(np.eye(3)[[0, 1, 2, 0]]), color="0.3", lw=1)
        for k, name in enumerate(["arm 1", "arm 2", "arm 3"]):
            x, y = to_xy(np.eye(3)[k])
            ax.annotate(f"{name}\nr = {r[k]:g}", (x, y), ha="center", va="top" if k < 2 else "bottom",
                        xytext=(0, -6 if k < 2 else 6), textcoords="offset points", fontsize=10)
        for j in range(tr.shape[1]):
            x, y = to_xy(tr[:, j])
            ax.plot(x, y, color=f"C{j}", lw=1.6)
            ax.plot(x[0], y[0], "o", color=f"C{j}", ms=5)
            ax.plot(x[-1], y[-1], "X", color=f"C{j}", ms=9, mec="k")
        ax.plot(*to_xy(mu), "*", color="k", ms=15, label=r"$\mu$ (behaviour) $= \pi_0$ of path 1")
        if V < vmu:
            ax.plot(*to_xy(theory.limit_policy(mu, r, V)), "s", mfc="none", mec="k", ms=14, mew=2,
                    label=r"Theorem 4.2 $\pi^*$")
        ax.set_title(rf"$V$ = {V:.2f} {title} $V^\mu$ = {vmu:.2f}: " +
                     ("all starts meet at π*" if V < vmu else "starts split between arms"), fontsize=11)
        ax.set_aspect("equal")
        ax.set_xlim(-0.12, 1.12)
        ax.set_ylim(-0.14, 1.0)
        ax.axis("off")
        ax.legend(loc="upper center", fontsize=9, frameon=False, bbox_to_anchor=(0.5, -0.01), ncol=2)
    ax = axes[2]
    Vs = np.linspace(min(below, vmu) - 0.3, vmu, 300)
    ax.plot(Vs, [theory.expected_reward(theory.limit_policy(mu, r, v), r) for v in Vs], "k", lw=2,
            label=r"$J(\pi^*)$, Theorem 4.2 ($V \leq V^\mu$)")
    Va = np.linspace(vmu + 1e-3, max(above, vmu) + 0.2, 12)
    ends = paths(bandit, Va, steps, lr)[-1] @ r  # [len(Va), starts]
    others = [ax.plot(Va, ends[:, j], "o", color=f"C{j}", ms=4, alpha=0.7)[0] for j in range(1, ends.shape[1])]
    ax.plot(Va, ends[:, 0], "o", color="C0", ms=8, label=r"simulated from $\pi_0 = \mu$ ($V > V^\mu$)")
    ax.axvline(vmu, color="C3", ls="--", lw=1.2, label=rf"$V = V^\mu$ = {vmu:.2f}")
    ax.axhline(vmu, color="0.5", ls=":", lw=1.2, label=r"$J = V^\mu$ (behaviour)")
    ax.set_xlabel(r"baseline $V$")
    ax.set_ylabel(r"expected reward of the limit $J(\pi_\infty)$")
    ax.set_title(r"Improvement below $V^\mu$, one arm above (which one depends on $\pi_0$)", fontsize=11)
    from matplotlib.legend_handler import HandlerTuple

    handles, labels = ax.get_legend_handles_labels()
    handles.insert(2, tuple(others))  # the other starts' own colours, as on the simplices
    labels.insert(2, r"simulated from the other starts $\pi_0$ (colour = path)")
    ax.legend(handles, labels, fontsize=8, loc="lower left", handler_map={tuple: HandlerTuple(ndivide=None)})
    fig.suptitle("Off-policy REINFORCE with baseline V on a fixed behaviour μ: paths on the simplex "
                 "(o start, X end)", fontsize=13)
    fig.tight_layout()
    return fig


def has_display() -> bool:
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def run_demo(rewards: str, mu: str, below: float | None, above: float | None, steps: int, lr: float, out: str,
             interactive: bool, echo=print, html: str | None = None) -> Path:
    from banditlab.plots import style
    from banditlab.sweep import option_error, parse_floats

    try:
        bandit = B.from_lists(parse_floats(rewards, "--rewards"), parse_floats(mu, "--mu"))
    except B.BanditError as err:
        raise option_error(err) from None
    if bandit.arms != 3:
        raise UsageError(f"--rewards: the simplex picture needs exactly 3 arms, got {bandit.arms}")
    if not 1 <= steps <= 10**6 or not 0 < lr <= 10:  # larger steps jump past π*, against the text
        raise UsageError(f"--steps must be in [1, 1e6] and --lr in (0, 10], got {steps} and {lr}")
    vmu = bandit.v_mu_total
    below = vmu - 0.28 if below is None else below
    above = vmu + 0.12 if above is None else above
    r, span = bandit.means[0], float(bandit.means.max() - bandit.means.min())
    lo, hi = float(r.min()) - span, float(r.max()) + span  # past the rewards by their span: nothing new to show
    if not lo <= below < vmu:
        raise UsageError(f"--below: must be in [{lo:.3f}, V^μ = {vmu:.3f}), got {below}")
    if not vmu < above <= hi:
        raise UsageError(f"--above: must be in (V^μ = {vmu:.3f}, {hi:.3f}], got {above}")
    from banditlab.plumbing.safeio import writable_target

    if html is not None:
        writable_target(html, "--html")
    else:  # --interactive without a display writes the figure too
        from banditlab.plots import check_figure

        check_figure(out, "--out")
    echo(explain(bandit, below, above))
    if html is not None:
        try:
            echo(f"page: {write_page(bandit, steps, lr, below, above, Path(html))}")
        except OSError as err:
            from banditlab.plumbing.folder import is_disk_full

            if is_disk_full(err):
                raise
            raise UsageError(f"--html: cannot write {html}: {err.strerror or err}") from None
        return Path(html)
    if interactive and not has_display():
        echo("--interactive: no display here (DISPLAY is unset), so no window can open; "
             "writing the static figure instead.")
        interactive = False
    if interactive:
        from matplotlib.widgets import Slider

        from banditlab.plots import style

        plt = style(seaborn=True, backend="TkAgg" if sys.platform.startswith("linux") else None)

        fig = plt.figure(figsize=(16, 6))
        state = {"below": below, "above": above}

        def redraw(v):
            if v < vmu:
                state["below"] = v
            elif v > vmu:
                state["above"] = v
            draw(bandit, state["below"], state["above"], steps, lr, plt, fig)
            fig.subplots_adjust(bottom=0.18)
            sl_ax = fig.add_axes([0.25, 0.03, 0.5, 0.03])
            s = Slider(sl_ax, "V", vmu - 0.6, vmu + 0.4, valinit=v)
            s.on_changed(redraw)
            fig._slider = s  # keep a reference
            fig.canvas.draw_idle()

        redraw(below)
        plt.show()
    from banditlab.plots import save

    plt = style(seaborn=True)
    fig = draw(bandit, below, above, steps, lr, plt)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    png = save(fig, out)[0]
    plt.close(fig)
    echo(f"figure: {png}")
    return png
