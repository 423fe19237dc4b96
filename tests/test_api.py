"""The Python API and the command line say the same thing: docs/bandit.md's Python example prints what the page
shows and the numbers `banditlab theory` prints; one support rule (π ≥ theory.SUPPORT_EPS) everywhere; the
closed form of a bandit with weighted contexts is averaged with p(x) by the CLI and the sweep alike; `run_grid`
returns the sweep's columns and numbers."""

import contextlib
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from banditlab.science import bandits

from banditlab.science import theory
from banditlab.registry.objectives import get_objective
from banditlab.science.simulator import SimConfig, run_grid
from banditlab.sweep import SweepConfig
from conftest import run_cli

DOC = Path(__file__).resolve().parents[1] / "docs" / "bandit.md"


def doc_example() -> tuple[str, str]:
    """The Python block of docs/bandit.md's Python API section and the output block after it."""
    section = DOC.read_text().split("## The Python API", 1)[1]
    code, shown = re.search(r"```python\n(.*?)```\s*```text\n(.*?)```", section, re.S).groups()
    return code, shown


def theory_rows(out: str) -> dict[float, tuple[str, float]]:
    """`banditlab theory`'s table: δV → (J(π*) as printed, support)."""
    rows = {}
    for line in out.splitlines():
        cols = line.split()
        if len(cols) >= 5 and re.fullmatch(r"[+-]\d\.\d{3}", cols[0]) and cols[2] != "—":
            rows[float(cols[0])] = (cols[2], float(cols[3]))
    return rows


def test_the_python_example_prints_what_the_page_shows_and_what_the_cli_prints():
    code, shown = doc_example()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(DOC), "exec"), {})
    assert out.getvalue() == shown
    printed = re.findall(r"dV = ([+-][\d.]+): J\(pi\*\) = ([\d.]+), support = (\d+); simulated J = ([\d.]+), "
                         r"support = (\d+)", shown)
    assert len(printed) == 2
    status, cli, _ = run_cli(["theory", "--baseline", ",".join(dv for dv, *_ in printed)])
    assert status == 0
    rows = theory_rows(cli)
    for dv, J, support, J_T, support_T in printed:
        assert rows[float(dv)] == (J, float(support))  # the same J(π*) to 4 digits and the same support
        assert (J_T, support_T) == (J, support)  # 20000 exact steps reach the limit at this precision


def test_one_support_rule_everywhere():
    assert SimConfig().support_eps == SweepConfig().support_eps == theory.SUPPORT_EPS == 1e-3
    eps = theory.SUPPORT_EPS
    pi = np.array([1 - eps - eps / 2, eps, eps / 2])
    assert theory.support_size(pi) == 2  # π = eps is in the support (≥), as in the simulator
    b = bandits.paper()
    p = theory.limit_policy(b.mu[0], b.means[0], b.v_mu_total - 0.3)
    assert theory.support_size(p) == int((p >= eps).sum()) == 35 < int((p > 0).sum())
    assert theory.limit_summary(b.mu[0], b.means[0], b.v_mu_total - 0.3)["theory_support_size"] == 35
    _, out, _ = run_cli(["theory", "--baseline", "-0.3"])
    assert f"π*(a) ≥ {eps:g}" in out and theory_rows(out)[-0.3][1] == 35


@pytest.fixture
def weighted(tmp_path):
    """Two contexts of weight 4 : 1 whose limits at δV = −0.1 keep 2 arms and 1 arm (worked by hand:
    context 1: a = μ(r − V) = (0, 1/30, 2/30), b = 0.1, τ = 0, π* = (0, 1/3, 2/3);
    context 2: a = (−0.089, −0.056, 0.244), τ = 0.144, π* = (0, 0, 1))."""
    path = tmp_path / "weighted.toml"
    path.write_text("[[context]]\nmeans = [0.4, 0.5, 0.6]\nweight = 4\n\n"
                    "[[context]]\nmeans = [0.0, 0.1, 1.0]\nweight = 1\n")
    return path


def test_the_cli_and_the_sweep_average_the_support_over_weighted_contexts_with_p_x(weighted, tmp_path):
    b = bandits.from_toml(weighted)
    assert np.allclose(b.context_probs, [0.8, 0.2])
    limits = [theory.limit_policy(m, r, theory.v_mu(m, r) - 0.1) for m, r in zip(b.mu, b.means)]
    assert [theory.support_size(p) for p in limits] == [2, 1]
    expected = 0.8 * 2 + 0.2 * 1  # a uniform mean over contexts would say 1.5
    s = theory.averaged_limit_summary(b.mu, b.means, b.v_mu - 0.1, b.context_probs)
    assert s["theory_support_size"] == pytest.approx(expected)
    J = [p @ r for p, r in zip(limits, b.means)]
    assert s["theory_expected_reward"] == pytest.approx(float(b.context_probs @ J))

    status, out, _ = run_cli(["theory", "--bandit", weighted, "--baseline", "-0.1"])
    assert status == 0 and theory_rows(out)[-0.1][1] == pytest.approx(expected)
    status, _, err = run_cli(["sweep", "--bandit", weighted, "--baseline", "-0.1", "--mode", "exact", "--steps", "20",
                              "--out", tmp_path / "run", "--no-progress"])
    assert status == 0, err
    summary = pd.read_csv(tmp_path / "run" / "summary.csv")
    assert summary.theory_support_size.tolist() == pytest.approx([expected])
    assert summary.theory_expected_reward.tolist() == pytest.approx([s["theory_expected_reward"]])


def test_run_grid_returns_the_sweeps_columns_and_numbers(weighted, tmp_path):
    status, _, err = run_cli(["sweep", "--bandit", weighted, "--baseline", "-0.2,0.1", "--mode", "exact", "--steps",
                              "400", "--out", tmp_path / "run", "--no-progress"])
    assert status == 0, err
    steps = pd.read_parquet(tmp_path / "run" / "steps.parquet")
    b = bandits.from_toml(weighted)
    df, _ = run_grid(b, get_objective("asymre", baseline="vmu"), [-0.2, 0.1], mode="exact", steps=400)
    assert list(df.columns) == [*steps.columns, "diverged"]
    pd.testing.assert_frame_equal(df[steps.columns], steps, check_exact=False, rtol=1e-12)

    absolute, _ = run_grid(b, get_objective("asymre", baseline="absolute"), [0.3], steps=10)
    assert np.allclose(absolute.baseline, 0.3) and np.allclose(absolute.baseline_offset, 0.3 - b.v_mu_total)


def test_the_public_api_is_the_package_top_and_imports_lazily():
    """`from banditlab import ...` gives every name of `banditlab.__all__` (each the object its owner module
    defines), and importing the package alone loads neither torch nor the simulator (the CLI starts light)."""
    import subprocess
    import sys

    import banditlab

    for name in banditlab.__all__:
        assert getattr(banditlab, name) is not None
    code = ("import sys, banditlab; assert 'torch' not in sys.modules and 'banditlab.science.simulator' not in "
            "sys.modules; from banditlab import Simulator, run_grid; assert 'torch' in sys.modules")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
    from banditlab.science.simulator import Simulator

    assert banditlab.Simulator is Simulator
    with pytest.raises(AttributeError):
        banditlab.not_a_name
