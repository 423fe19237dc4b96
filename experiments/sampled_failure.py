"""Where sampled AsymRE stops improving on V^μ as the baseline falls, and why: figures/sampled-failure.png.

Theorem 4.2 is about the expected update: for every V < V^μ its limit improves on the behaviour,
J(π*) − V^μ > 0. A sampled step with B pulls is that update plus noise. As V falls, the margin shrinks like
Var_μ(r̄)/(V^μ − V) while the noise of a step grows like V^μ − V, so at a fixed batch and step size some seeds end
below V^μ. Drawn from a sweep's run folder alone (config.json, summary.csv, table.csv):

    banditlab sweep --baseline=-10,-8,-6,-5,-4,-3,-2,-1,-0.5 --seeds 32 --out runs/sampled-failure
    python experiments/sampled_failure.py runs/sampled-failure figures/sampled-failure

Left: the share of seeds with J(π_T) > V^μ and its Wilson 95 % interval. Right: the margin J(π*) − V^μ, the
standard deviation over seeds of J(π_T), and the per-step standard deviation of the sampled update's change in J
at π* (`step_sd`). One context, Bernoulli rewards (the default bandit); other bandits are refused.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def step_sd(mu, means, V, pi, lr: float, batch: int, low: float = 0.0, high: float = 1.0) -> float:
    """Standard deviation of the first-order change in J(π) = Σ π r̄ made by one sampled AsymRE step at π.

    The step (token-mean over B pulls a_i ~ μ, r_i ∈ {low, high} with mean r̄(a_i)) moves the logits by
        Δl = (η/B) Σ_i (r_i − V)(e_{a_i} − π),
    whose mean is the expected update η(μ(r̄ − V) − (V^μ − V)π). With ∂J/∂l_b = π_b(r̄_b − J), the change in J is,
    to first order,
        ΔJ = (η/B) Σ_i (r_i − V) c(a_i),   c(a) = π_a(r̄_a − J) − Σ_b π_b²(r̄_b − J),
    a mean of B independent terms, so
        Var(ΔJ) = (η²/B) · ( E_μ[ E[(r − V)² | a] c(a)² ] − E_μ[(r̄_a − V) c(a)]² ),
        E[(r − V)² | a] = (r̄_a − V)² + (high − low)² p_a(1 − p_a),   p_a = (r̄_a − low)/(high − low).
    At large V^μ − V the term (r̄_a − V)² ≈ (V^μ − V)² dominates: the step's noise grows like V^μ − V.
    """
    mu, means, pi = (np.asarray(x, float) for x in (mu, means, pi))
    J = float(pi @ means)
    c = pi * (means - J) - float(pi**2 @ (means - J))
    p = (means - low) / (high - low)
    second = (means - V) ** 2 + (high - low) ** 2 * p * (1 - p)
    var = lr**2 / batch * (float(mu @ (second * c**2)) - float(mu @ ((means - V) * c)) ** 2)
    return float(np.sqrt(max(var, 0.0)))


def curves(rec: dict, offsets):
    """(margin J(π*) − V^μ, step_sd at π*) of Theorem 4.2's limit for each δV, from a run's config.json."""
    from banditlab.science import theory
    from banditlab.science.bandits import Bandit

    b = Bandit(**rec["bandit"])
    s = rec["sweep"]
    mu, r = b.mu[0], b.means[0]
    vmu = theory.v_mu(mu, r)
    margin, sd = [], []
    for dv in offsets:
        pi = theory.limit_policy(mu, r, vmu + dv)
        margin.append(theory.expected_reward(pi, r) - vmu)
        sd.append(step_sd(mu, r, vmu + dv, pi, s["lr"], s["batch"], b.low, b.high))
    return np.array(margin), np.array(sd)


def plot(run: Path, out: Path) -> list[Path]:
    import pandas as pd

    from banditlab.plots import save, style

    run = Path(run)
    rec = json.loads((run / "config.json").read_text())
    s = rec["sweep"]
    if len(rec["bandit"]["context_probs"]) != 1 or rec["bandit"]["noise"] != "bernoulli" or s["absolute"] or \
            s["baseline_ref"] != "vmu" or s["mode"] != "sampled" or s["behavior"] != "fixed":
        raise SystemExit("sampled_failure: needs a sampled sweep of one Bernoulli context, fixed behaviour, δV from V^μ")
    table = pd.read_csv(run / "table.csv")
    summary = pd.read_csv(run / "summary.csv")
    spread = summary.groupby("baseline_offset")["final_expected_reward"].std(ddof=1)
    plt = style()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13, 4.8))
    x = table["baseline_offset"].to_numpy()
    err = np.vstack([table["improved"] - table["improved_low"], table["improved_high"] - table["improved"]])
    ax.errorbar(x, table["improved"], yerr=err, fmt="o", color="C0", ms=5, capsize=3,
                label=f"sampled updates ({int(table['n'].max())} seeds): share, Wilson 95% CI")
    ok = table["exact_same_step"] > summary["v_mu"].iloc[0]
    ax.plot(x[ok], np.ones(ok.sum()), "D", color="C1", mfc="none", ms=5,
            label=f"expected update after {s['steps']} steps: above " + r"$V^\mu$")
    ax.set(xlabel=r"baseline offset $\delta V = V - V^\mu$", ylabel=r"share of seeds with $J(\pi_T) > V^\mu$",
           title=r"Sampled updates improve on $V^\mu$ less often as $V$ falls", ylim=(0, 1.05))
    ax.legend(fontsize=9, loc="lower right", frameon=True)

    dense = np.linspace(x.min(), x.max(), 300)
    margin, sd = curves(rec, dense)
    ax2.plot(dense, margin, color="k", lw=1.8, label=r"margin $J(\pi^*) - V^\mu$ (Theorem 4.2)")
    ax2.plot(dense, sd, color="C1", ls="--", lw=1.5,
             label=rf"sd of one step's $\Delta J$ at $\pi^*$ ($B$ = {s['batch']}, $\eta$ = {s['lr']:g})")
    ax2.plot(spread.index, spread.to_numpy(), "o", color="C0", ms=5, label=r"sd over seeds of $J(\pi_T)$")
    ax2.set_yscale("log")
    ax2.set(xlabel=r"baseline offset $\delta V = V - V^\mu$", ylabel="expected reward (log scale)",
            title="The margin shrinks as the noise of a step grows")
    ax2.legend(fontsize=9, loc="best", frameon=True)
    fig.suptitle(f"{rec['objective']['name']} on the {rec['bandit']['name']} bandit: sampled mode, "
                 f"{s['batch']} pulls per step, η = {s['lr']:g}, {s['steps']} steps", fontsize=13)
    fig.tight_layout()
    files = save(fig, out)
    plt.close(fig)
    return files


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: python experiments/sampled_failure.py RUN_DIR OUT (OUT without extension)")
    print("\n".join(map(str, plot(Path(sys.argv[1]), Path(sys.argv[2])))))
