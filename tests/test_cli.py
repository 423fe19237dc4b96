"""The command line: every malformed option gives one line naming it and exit code 2; Ctrl-C keeps the work and
the same command resumes to identical results; `theory` prints the closed form."""

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from conftest import PATIENCE_S, run_cli, wait_until

SMALL = ["--arms", "8", "--steps", "40", "--seeds", "2", "--baseline", "-0.2:0.2:3", "--no-progress"]


@pytest.fixture
def toml_files(tmp_path):
    files = {
        "bad_syntax": "means = [0.1, 0.2\n",
        "no_means": "mu = [0.5, 0.5]\n",
        "lengths": "means = [0.1, 0.2, 0.3]\nmu = [0.5, 0.5]\n",
        "one_arm": "means = [0.1]\n",
        "range": "means = [0.1, 1.5]\nnoise = 'bernoulli'\n",
    }
    for name, text in files.items():
        (tmp_path / f"{name}.toml").write_text(text)
    return tmp_path


BAD = [
    (["--baseline", "0.5:-0.5"], "--baseline"),
    (["--baseline", "a:b"], "--baseline"),
    (["--baseline", "0:1:x"], "--baseline"),
    (["--baseline", "0:1:2:3"], "--baseline"),
    (["--arms", "1"], "--arms"),
    (["--steps", "0"], "--steps"),
    (["--steps", "abc"], "--steps"),
    (["--batch", "-3"], "--batch"),
    (["--seeds", "0"], "--seeds"),
    (["--lr", "0"], "--lr"),
    (["--lr", "nan"], "--lr"),
    (["--lr", "-1"], "--lr"),
    (["--algo", "reinforce++"], "--algo"),
    (["--algo", "sft"], "--baseline"),
    (["--algo-arg", "nope=1"], "--algo-arg"),
    (["--algo", "topr", "--algo-arg", "a_neg=x"], "--algo-arg"),
    (["--behavior", "sometimes"], "--behavior"),
    (["--behavior", "lag:0"], "--behavior"),
    (["--mode", "fast"], "--mode"),
    (["--pulls", "paired"], "--pulls"),
    (["--rewards", "0,1", "--mu", "0.5,0.3,0.2"], "--mu"),
    (["--rewards", "0,0.8,1.5"], "--rewards"),
    (["--noise", "gausian"], "--noise"),
    (["--rewards", "0,x"], "--rewards"),
    (["--mu", "0.5,0.5"], "--mu"),
    (["--bandit", "/nonexistent/bandit.toml"], "--bandit"),
    (["--config", "/nonexistent/sweep.toml"], "--config"),
    (["--device", "tpu"], "--device"),
]


@pytest.mark.parametrize("args,option", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_options_give_one_line_and_exit_2(args, option, tmp_path):
    small = SMALL[2:] if {"--rewards", "--bandit"} & set(args) else SMALL  # explicit arms: no --arms
    code, out, err = run_cli(["sweep", *small, "--out", str(tmp_path / "run"), *args])
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"banditlab: error: {option}") and "Traceback" not in err
    assert not (tmp_path / "run").exists()  # nothing written for a refused command


@pytest.mark.parametrize("mode", ["sampled", "exact"])
def test_a_grid_too_large_for_this_machine_is_refused_before_anything_is_allocated(mode, tmp_path):
    """10⁶ arms × 10⁵ seeds (sampled mode) or × 10⁴ baselines (exact mode) would need petabytes."""
    grid = ["--seeds", "100000", "--baseline", "0"] if mode == "sampled" else ["--baseline", "-0.5:0.5:10000"]
    code, _, err = run_cli(["sweep", "--arms", "1000000", "--mode", mode, *grid, "--out", str(tmp_path / "run")])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "grid too large" in err and "GiB" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name,field", [("bad_syntax", "TOML"), ("no_means", "means"), ("lengths", "lengths"),
                                        ("one_arm", "2 arms"), ("range", "Bernoulli")])
def test_malformed_bandit_files(name, field, toml_files):
    code, _, err = run_cli(["theory", "--bandit", str(toml_files / f"{name}.toml")])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--bandit" in err and field in err


def test_theory_prints_the_closed_form():
    code, out, _ = run_cli(["theory", "--rewards", "0,0.8,1", "--mu", "0.3,0.6,0.1", "--baseline", "-0.2,0,0.1"])
    assert code == 0
    assert "V^μ = 0.5800" in out and "concentrates on arm 2 (r = 0.8000)" in out and "depends on π₀" in out


def test_sweep_writes_the_tidy_files_and_refuses_a_different_run_in_the_same_folder(tmp_path):
    out = tmp_path / "run"
    code, text, _ = run_cli(["sweep", *SMALL, "--out", str(out)])
    assert code == 0 and "δV" in text
    s = pd.read_csv(out / "summary.csv")
    needed = ["baseline_offset", "baseline", "v_mu", "seed", "final_expected_reward", "theory_expected_reward",
              "support_size", "entropy", "improved", "diverged"]
    assert set(needed) <= set(s.columns) and len(s) == 6
    assert s.loc[s.baseline_offset > 0, "theory_expected_reward"].isna().all()
    assert s.loc[s.baseline_offset < 0, "theory_expected_reward"].notna().all()
    steps = pd.read_parquet(out / "steps.parquet")
    assert steps["step"].max() == 40 and (out / "sweep.png").exists() and (out / "config.json").exists()
    code, _, err = run_cli(["sweep", *SMALL, "--out", str(out), "--lr", "2"])
    assert code == 2 and "lr" in err and "different run" in err


def test_config_file_and_command_line_combine(tmp_path):
    cfg = tmp_path / "sweep.toml"
    cfg.write_text('algo = "topr"\nsteps = 30\nseeds = 1\nbaseline = "-0.1"\narms = 5\n[algo_args]\na_neg = 0.5\n')
    code, text, _ = run_cli(["sweep", "--config", str(cfg), "--steps", "20", "--out", str(tmp_path / "r"),
                             "--no-progress"])
    assert code == 0 and "topr" in text and "20 steps" in text


def resumable_sweep(tmp_path, checkpoint_seconds):
    """(command on folder a, args, env) of a sampled, lagged sweep that checkpoints often."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"checkpoint_seconds = {checkpoint_seconds}\n")
    args = ["sweep", "--arms", "50", "--steps", "6000", "--seeds", "3", "--baseline", "-0.3:0.3:3",
            "--behavior", "lag:50", "--config", str(cfg), "--no-progress"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return [sys.executable, "-m", "banditlab", *args, "--out", str(tmp_path / "a")], args, env


def assert_equals_an_uninterrupted_run(tmp_path, args, env):
    straight = subprocess.run([sys.executable, "-m", "banditlab", *args, "--out", str(tmp_path / "b")],
                              capture_output=True, text=True, env=env, timeout=PATIENCE_S)
    assert straight.returncode == 0
    for f in ("summary.csv", "steps.parquet"):
        read = pd.read_csv if f.endswith(".csv") else pd.read_parquet
        pd.testing.assert_frame_equal(read(tmp_path / "a" / f), read(tmp_path / "b" / f), check_exact=True)


@pytest.mark.slow
def test_interrupt_then_resume_matches_an_uninterrupted_run(tmp_path):
    cmd, args, env = resumable_sweep(tmp_path, 0.02)
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    wait_until((tmp_path / "a" / "state.pt").exists, p, "first checkpoint")
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=PATIENCE_S)
    assert p.returncode == 130 and "resume" in err and "Traceback" not in err
    assert not (tmp_path / "a" / "summary.csv").exists()
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=PATIENCE_S)
    assert again.returncode == 0, again.stderr
    assert_equals_an_uninterrupted_run(tmp_path, args, env)


@pytest.mark.slow
def test_kill_9_at_random_moments_then_the_same_command_is_bit_identical(tmp_path):
    """SIGKILL (no handler runs) twice at random moments after the first checkpoint; the same command then
    finishes with results identical to an uninterrupted run (sampled mode, lagged behaviour: the random stream
    and the snapshot both have to be restored exactly)."""
    import random

    cmd, args, env = resumable_sweep(tmp_path, 0.01)
    rng = random.Random(1234)
    killed = 0
    for _ in range(2):
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        wait_until((tmp_path / "a" / "state.pt").exists, p, "first checkpoint", every=0.01)
        time.sleep(rng.uniform(0.1, 1.0))  # a random moment after it, not a wait for anything
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            killed += 1
        p.wait(timeout=PATIENCE_S)
    assert killed >= 1 and not (tmp_path / "a" / "summary.csv").exists()
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=PATIENCE_S)
    assert again.returncode == 0, again.stderr
    assert_equals_an_uninterrupted_run(tmp_path, args, env)


def test_shared_pulls_give_a_baselines_runs_whatever_other_baselines_the_sweep_holds(tmp_path):
    """With `--pulls shared` seed s draws the same pulls at every baseline, so a baseline's final rewards do not
    depend on the other baselines in the grid (equal to rounding: the larger grid sums counted cells); with
    `--pulls independent` they do. RED-Drop draws independently under either setting (its drops are per run),
    and a grid without shared draws records no `pulls` in its identity (the numbers do not depend on it)."""
    from banditlab.sweep import SweepConfig

    def finals(name, baselines, *extra):
        out = tmp_path / name
        assert run_cli(["sweep", "--arms", "8", "--steps", "60", "--seeds", "3", "--baseline", baselines,
                        "--no-progress", *extra, "--out", out])[0] == 0
        d = pd.read_csv(out / "summary.csv")
        return d[d.baseline_offset.round(6) == -0.2].sort_values("seed").final_expected_reward.to_numpy()

    one, three = finals("one", "-0.2"), finals("three", "-0.2,0.0,0.1")
    assert abs(one - three).max() < 1e-9
    one, three = (finals(n, b, "--pulls", "independent") for n, b in [("i1", "-0.2"), ("i3", "-0.2,0.0,0.1")])
    assert abs(one - three).max() > 1e-6
    shared, indep = (finals(n, "-0.2,0.1", "--algo", "red-drop", "--pulls", p) for n, p in [("r1", "shared"),
                                                                                              ("r2", "independent")])
    assert (shared == indep).all()
    assert "pulls" in SweepConfig().identity()
    assert "pulls" not in SweepConfig(pulls="independent").identity()
    assert "pulls" not in SweepConfig(mode="exact").identity()
