"""Hostile input and shared folders: one line and exit 2, nothing written; run folders are owned and locked;
corrupt checkpoints are refused cleanly."""

import subprocess
import sys

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from conftest import PATIENCE_S, run_cli, wait_until


# ------------------------------------------------------------------------------------------ fuzzing the CLI
BAD_NUMBERS = st.sampled_from(["nan", "inf", "-inf", "-1", "1e400", "abc", "", "2e100", "0x", "1,2"])
SWEEP_OPTIONS = ["--steps", "--seeds", "--batch", "--lr", "--support-eps", "--sigma", "--arms", "--contexts",
                 "--bandit-seed", "--seed", "--log-every", "--threads"]
LLM_OPTIONS = ["--steps", "--group-size", "--prompts-per-step", "--lr", "--temperature", "--top-p", "--eval-n",
               "--checkpoint-every", "--difficulty", "--max-new-tokens", "--lora-r", "--micro-batch"]


def _rejected(option, value):
    """Would any sane reading of `option value` be valid? (A few values are legal for a few options.)"""
    legal = {("--lr", "2e100"), ("--sigma", "2e100"), ("--log-every", "-1"), ("--threads", "-1")}
    return (option, value) not in legal


@settings(max_examples=40, deadline=None)
@given(option=st.sampled_from(SWEEP_OPTIONS), value=BAD_NUMBERS, noise=st.sampled_from(["bernoulli", "gaussian"]))
def test_sweep_rejects_bad_numbers_with_one_line_and_writes_nothing(option, value, noise, tmp_path_factory):
    assume(_rejected(option, value))
    out = tmp_path_factory.mktemp("fuzz") / "run"
    args = ["sweep", option, value, "--noise", noise, "--steps", "5", "--out", str(out), "--no-progress"]
    if option == "--steps":
        args = ["sweep", "--noise", noise, option, value, "--out", str(out), "--no-progress"]
    code, _, err = run_cli(args)
    assert code == 2 and len(err.strip().splitlines()) == 1, (option, value, code, err)
    assert not out.exists(), (option, value)


@settings(max_examples=30, deadline=None)
@given(option=st.sampled_from(LLM_OPTIONS), value=BAD_NUMBERS)
def test_llm_train_rejects_bad_numbers_with_one_line_and_writes_nothing(option, value, tmp_path_factory):
    assume((option, value) not in {("--lr", "2e100"), ("--micro-batch", "2e100")})  # legal values
    out = tmp_path_factory.mktemp("fuzz") / "run"
    code, _, err = run_cli(["llm", "train", option, value, "--out", str(out), "--no-progress"])
    assert code == 2 and len(err.strip().splitlines()) == 1, (option, value, code, err)
    assert not out.exists(), (option, value)


def test_fuzz_errors_are_one_line(tmp_path):
    for args in (["sweep", "--support-eps", "nan"], ["sweep", "--sigma", "inf", "--noise", "gaussian"],
                 ["sweep", "--baseline", "1e308,-1e308"], ["sweep", "--seed", str(2**70)],
                 ["sweep", "--bandit-seed", "-1"], ["theory", "--bandit-seed", "-1"], ["sweep", "--arms", "10000000"],
                 ["sweep", "--contexts", "1000000"], ["sweep", "--batch", str(10**12)],
                 ["sweep", "--steps", str(10**12), "--seeds", str(10**6)], ["sweep", "--baseline", "0:1:100000000"],
                 ["llm", "train", "--device", "tpu"], ["llm", "train", "--reward", "bogus"],
                 ["llm", "train", "--difficulty", "100000"], ["llm", "train", "--agg", "bogus"],
                 ["llm", "train", "--algo-arg", "baseline=bogus"], ["llm", "train", "--temperature", "inf"],
                 ["llm", "eval", "--n", "-5"], ["llm", "generate", "q", "--temperature", "0"],
                 ["llm", "generate", "q", "--n", "0"], ["llm", "generate", "q", "--max-new-tokens", "-1"]):
        code, _, err = run_cli([*args, *(["--out", str(tmp_path / "o")] if args[0] == "sweep" or args[1] == "train"
                                         else [])])
        assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, (args, err)
        assert not (tmp_path / "o").exists(), args


# ------------------------------------------------------------------------------------------ config files
@pytest.mark.parametrize("text,word", [('steps = "abc"', "steps"), ('lr = "1"', "lr"), ("steps = nan", "steps"),
                                       ("arms = 5.5", "arms"), ("seeds = 1.5", "seeds"), ("batch = inf", "batch"),
                                       ("absolute = 1", "absolute")])
def test_wrong_types_in_a_sweep_config_are_refused_before_writing(text, word, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(text + "\n")
    code, _, err = run_cli(["sweep", "--config", str(cfg), "--out", str(tmp_path / "o")])
    assert code == 2 and word in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("text,word", [('lr = "1e-4"', "lr"), ("group_size = 2.5", "group_size"),
                                       ("checkpoint_every = 0", "checkpoint-every")])
def test_wrong_types_in_an_llm_config_are_refused_before_writing(text, word, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(text + "\n")
    code, _, err = run_cli(["llm", "train", "--config", str(cfg), "--out", str(tmp_path / "o")])
    assert code == 2 and word in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------------------ run folders
def test_a_folder_belongs_to_one_kind_of_run(tmp_path):
    sweep = tmp_path / "s"
    code, _, _ = run_cli(["sweep", "--steps", "20", "--seeds", "2", "--arms", "5", "--baseline", "-0.1,0.1",
                          "--out", str(sweep), "--no-progress"])
    assert code == 0
    before = (sweep / "config.json").read_text()
    code, _, err = run_cli(["llm", "train", "--steps", "1", "--out", str(sweep), "--no-progress"])
    assert code == 2 and "holds a sweep run" in err
    assert (sweep / "config.json").read_text() == before
    code, text, _ = run_cli(["plot", str(sweep)])
    assert code == 0
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep")
    code, _, err = run_cli(["sweep", "--steps", "5", "--out", str(other)])
    assert code == 2 and "not empty" in err and (other / "mine.txt").read_text() == "keep"


def test_a_finished_sweep_is_not_rewritten(tmp_path):
    args = ["sweep", "--steps", "20", "--seeds", "2", "--arms", "5", "--baseline", "-0.1,0.1", "--out",
            str(tmp_path / "s"), "--no-progress"]
    assert run_cli(args)[0] == 0
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "s").iterdir() if p.name != ".lock"}
    code, text, _ = run_cli(args)
    assert code == 0 and "already complete" in text
    assert stamps == {p.name: p.stat().st_mtime_ns for p in (tmp_path / "s").iterdir() if p.name != ".lock"}


@pytest.mark.slow
def test_a_second_run_on_a_locked_folder_is_refused(tmp_path):
    args = [sys.executable, "-m", "banditlab", "sweep", "--steps", "200000", "--arms", "50", "--seeds", "2",
            "--out", str(tmp_path / "s"), "--no-progress"]
    first = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until((tmp_path / "s" / "config.json").exists, first, "the first run's config.json")
        second = subprocess.run(args, capture_output=True, text=True, timeout=PATIENCE_S)
        assert second.returncode == 2 and "in use by another run" in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
    finally:
        first.kill()
        first.wait()


@pytest.mark.slow
@pytest.mark.parametrize("content", [b"", b"\x00garbage" * 10, None])
def test_corrupt_or_foreign_sweep_state_is_refused_in_one_line(content, tmp_path):
    args = ["sweep", "--steps", "20", "--seeds", "2", "--arms", "5", "--baseline", "-0.1,0.1", "--no-progress"]
    assert run_cli([*args, "--out", str(tmp_path / "a")])[0] == 0
    other = [a if a != "5" else "7" for a in args]  # the same run with 7 arms
    assert run_cli([*other, "--out", str(tmp_path / "b")])[0] == 0
    (tmp_path / "a" / "summary.csv").unlink()  # an unfinished run: the state is read
    state = tmp_path / "a" / "state.pt"
    if content is None:  # a state from another run (7 arms) copied in
        state.write_bytes((tmp_path / "b" / "state.pt").read_bytes())
    else:
        state.write_bytes(content)
    code, _, err = run_cli([*args, "--out", str(tmp_path / "a")])
    assert code == 2 and "state.pt" in err and len(err.strip().splitlines()) == 1


def test_corrupt_config_json_is_refused(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "config.json").write_text("{oops")
    code, _, err = run_cli(["sweep", "--steps", "5", "--out", str(tmp_path / "a")])
    assert code == 2 and "config.json" in err and len(err.strip().splitlines()) == 1
