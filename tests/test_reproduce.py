"""Smoke runs of every `banditlab reproduce` experiment and of `banditlab demo`, on tiny configs, plus the
properties their figures rest on."""


import numpy as np
import pandas as pd
import pytest

from banditlab.science import bandits
from banditlab import reproduce as R
from banditlab.cli.app import main

TINY = {  # key → value overrides that keep each config's structure but cut its size
    "exact_steps": 3000, "sampled_steps": 200, "sampled_seeds": 2, "iterations": 3, "steps_per_iteration": 50,
    "steps": 150, "seeds": 2, "V": "0.0:0.9:7", "shares": "0.1:0.9:3", "log_every": 10,
}


@pytest.fixture(scope="module")
def tiny_configs(tmp_path_factory):
    import tomllib

    d = tmp_path_factory.mktemp("configs")
    for f in R.CONFIGS.glob("*.toml"):
        cfg = tomllib.loads(f.read_text())
        lines = []
        for k, v in cfg.items():
            if isinstance(v, dict):
                continue
            v = TINY.get(k, v)
            lines.append(f"{k} = {v!r}".replace("'", '"'))
        for k, v in cfg.items():
            if isinstance(v, dict):
                lines.append(f"[{k}]")
                lines += [f'"{kk}" = {vv!r}'.replace("'", '"') for kk, vv in v.items()]
        (d / f.name).write_text("\n".join(lines) + "\n")
    return d


@pytest.fixture(scope="module")
def figures(tiny_configs, tmp_path_factory):
    out = tmp_path_factory.mktemp("figures")
    R.reproduce(R.bandit_experiments(), out, progress=False, configs=tiny_configs, echo=lambda *_: None)
    return out


@pytest.mark.slow
def test_every_experiment_writes_png_pdf_and_data(figures):
    for name, exp in ((k, R.EXPERIMENTS[k]) for k in R.bandit_experiments()):
        assert (figures / f"{name}.png").stat().st_size > 10_000
        assert (figures / f"{name}.pdf").exists()
        assert (figures / "data" / exp.config / "DONE").exists()


@pytest.mark.slow
def test_plot_only_redraws_from_files_without_rerunning(figures, tiny_configs):
    data = figures / "data" / "staleness" / "steps.parquet"
    before = data.stat().st_mtime_ns
    (figures / "staleness.png").unlink()
    R.reproduce(["staleness"], figures, plot_only=True, progress=False, configs=tiny_configs, echo=lambda *_: None)
    assert (figures / "staleness.png").exists() and data.stat().st_mtime_ns == before


@pytest.mark.slow
def test_exact_limit_points_sit_on_the_theory_curve(figures):
    final = pd.read_csv(figures / "data" / "asymre-limit" / "final.csv")
    ex = final[(final["mode"] == "exact") & (final.V <= 0.3)]
    b = bandits.paper()
    from banditlab.science import theory

    th = [theory.expected_reward(theory.limit_policy(b.mu[0], b.means[0], v), b.means[0]) for v in ex.V]
    assert np.allclose(ex.expected_reward, th, atol=5e-3)
    above = final[(final["mode"] == "exact") & (final.V > b.v_mu_total)]
    assert (above.support_size == 1).all()


@pytest.mark.slow
def test_naive_reinforce_objective_is_unbounded_and_topr_is_not(figures):
    df = pd.read_parquet(figures / "data" / "topr-naive-collapse" / "steps.parquet")
    last, mid = df[df.step == df.step.max()], df[df.step == df.step.max() // 2]
    naive = "naive REINFORCE [1,1]/[1,1]"
    gap = lambda d, m: float(d[d.method == m].min_logit.iloc[0])
    assert gap(last, naive) < 2 * gap(mid, naive) * 0.9  # keeps falling linearly
    assert gap(last, "TOPR [1,1]/[0,1]") > gap(last, naive) / 5


def test_unknown_experiment_and_missing_data(tmp_path, capsys):
    for args, word in ((["reproduce", "fig-99"], "unknown experiment"),
                       (["reproduce", "staleness", "--plot-only", "--figures", str(tmp_path)], "--plot-only"),
                       (["reproduce"], "--all")):
        with pytest.raises(SystemExit) as e:
            main(args)
        assert e.value.code == 2 and word in capsys.readouterr().err


def test_demo_explains_and_draws(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(SystemExit) as e:
        main(["demo", "--steps", "300", "--out", str(tmp_path / "demo"), "--interactive"])
    out = capsys.readouterr().out
    assert e.value.code == 0
    assert "V^μ = Σ μ r = 0.580" in out and "π* = [0.000, 0.911, 0.089]" in out and "no display" in out
    assert (tmp_path / "demo.png").exists() and (tmp_path / "demo.pdf").exists()
    with pytest.raises(SystemExit) as e:
        main(["demo", "--rewards", "0,1", "--mu", "0.5,0.5", "--out", str(tmp_path / "d2")])
    assert e.value.code == 2 and "3 arms" in capsys.readouterr().err


@pytest.mark.slow
def test_a_shipped_experiment_reproduces_its_committed_data(tmp_path):
    """The committed figures stand: rerunning rec-counterexample with its shipped config (exact mode, 4 methods ×
    4000 steps) gives the committed steps.parquet to 1e-9, through today's simulator and experiment module."""
    committed = R.ROOT / "figures" / "data" / "rec-counterexample" / "steps.parquet"
    R.reproduce(["rec-counterexample"], tmp_path, progress=False, echo=lambda *_: None)
    a, b = pd.read_parquet(committed), pd.read_parquet(tmp_path / "data" / "rec-counterexample" / "steps.parquet")
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=0, atol=1e-9)


def test_banditlab_never_imports_llm():
    import ast

    for f in (R.ROOT / "banditlab").glob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] in ("llm", "banditlab_llm") for n in names), f.name
