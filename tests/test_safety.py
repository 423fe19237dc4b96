"""Reliability by class (docs/reliability.md): no loader runs code, a run folder is complete only when its marker
says so and a rerun finishes it, every input surface has one strict schema, and a full disk says so."""

import errno
import json
import os
import pickle
import signal
import tomllib

import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from banditlab.plumbing import folder as runfolder
from banditlab.cli.app import main
from conftest import PATIENCE_S, run_cli as cli

SWEEP = ["sweep", "--arms", "5", "--steps", "30", "--seeds", "2", "--baseline", "-0.1,0.1", "--no-progress"]
LLM = ["llm", "train", "--model", "tiny", "--steps", "1", "--group-size", "2", "--prompts-per-step", "2",
       "--max-new-tokens", "4", "--eval-n", "0", "--n-train", "4", "--no-progress"]


def one_line(code, err, expected_code=2):
    lines = err.strip().splitlines()
    return code == expected_code and len(lines) == 1 and "Traceback" not in err


# ------------------------------------------------------------------------------------------ 1. loading runs no code
class Payload:
    """Unpickling this runs `touch MARKER` (os.system): the attack a crafted state file carries."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def craft(path, marker, zip_format):
    """A torch file (zip) or a raw pickle whose loading would run the payload."""
    obj = {"step": 0, "policy": Payload(marker)}
    if zip_format:
        torch.save(obj, path)
    else:
        path.write_bytes(pickle.dumps(obj))


@pytest.fixture(scope="module")
def llm_run(tmp_path_factory):
    """A finished one-step tiny LLM run, and an offline one with its offline dataset."""
    root = tmp_path_factory.mktemp("llm")
    assert cli([*LLM, "--out", root / "run"])[0] == 0
    assert cli([*LLM, "--offline", "--algo", "topr", "--offline-data", root / "offline.pt",
                "--out", root / "off"])[0] == 0
    return root


@pytest.mark.parametrize("zip_format", [True, False], ids=["torch-zip", "raw-pickle"])
@pytest.mark.parametrize("loader", ["sweep state.pt", "llm checkpoint.pt", "--offline-data"])
def test_a_crafted_pickle_never_runs_and_gives_one_line(loader, zip_format, tmp_path, llm_run):
    marker = tmp_path / "PWNED"
    if loader == "sweep state.pt":
        out = tmp_path / "sweep"
        assert cli([*SWEEP, "--out", out])[0] == 0
        runfolder.unmark(out)  # unfinished: the rerun must read state.pt
        craft(out / "state.pt", marker, zip_format)
        code, _, err = cli([*SWEEP, "--out", out])
    elif loader == "llm checkpoint.pt":
        import shutil

        out = tmp_path / "run"
        shutil.copytree(llm_run / "run", out)
        craft(out / "checkpoint.pt", marker, zip_format)
        code, _, err = cli([*LLM, "--out", out, "--resume"])
    else:
        data = tmp_path / "offline.pt"
        craft(data, marker, zip_format)
        code, _, err = cli([*LLM, "--offline", "--algo", "topr", "--offline-data", data, "--out", tmp_path / "new"])
        assert not (tmp_path / "new").exists()
    assert not marker.exists(), "the payload ran"
    assert one_line(code, err) and ("pickled objects" in err or "unreadable" in err), err


def test_the_files_the_tool_writes_load_back_as_plain_data(llm_run):
    from banditlab.plumbing.safeio import load_tensors

    for f in ("run/checkpoint.pt", "offline.pt"):
        assert isinstance(load_tensors(llm_run / f, "--test"), dict)


# ------------------------------------------------------------------------------------------ 2. completion
class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs (it passes every `except Exception`)."""


FINAL_WRITES = ["state.pt", "steps.parquet", "summary.csv", "table.csv", "pairs.csv", "sweep.png", "DONE"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    assert cli([*SWEEP, "--out", out])[0] == 0
    return out


def interrupt_at(monkeypatch, target, action):
    """Run `action` at the moment the final output `target` is about to be written: every output, the figure
    included, goes through the one writer's rename (`folder.atomic_output`)."""
    real_replace = os.replace

    def replace(src, dst, *a, **k):
        if os.path.basename(dst) == target:
            action()
        return real_replace(src, dst, *a, **k)

    monkeypatch.setattr(runfolder.os, "replace", replace)


def same_outputs(a, b):
    for f in ("summary.csv", "table.csv", "pairs.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(a / f), pd.read_csv(b / f), check_exact=True)
    pd.testing.assert_frame_equal(pd.read_parquet(a / "steps.parquet"), pd.read_parquet(b / "steps.parquet"))


@pytest.mark.slow  # 28 cases of about a second each
@pytest.mark.parametrize("target", FINAL_WRITES)
@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM", "SIGINT twice", "disk full"])
def test_a_signal_or_full_disk_at_every_final_write_never_leaves_a_folder_claiming_completion(
        target, how, tmp_path, monkeypatch, reference):
    """At each final output write: a kill or a second Ctrl-C leaves no DONE and the rerun finishes the folder;
    a first SIGTERM lets the run finish (handlers stay until DONE); a full disk says so. Every rerun ends with
    the files of an uninterrupted run."""
    out = tmp_path / "run"

    def act():
        if how == "SIGKILL":
            raise Killed
        if how == "disk full":
            raise OSError(errno.ENOSPC, "No space left on device")
        os.kill(os.getpid(), signal.SIGINT if how == "SIGINT twice" else signal.SIGTERM)
        if how == "SIGINT twice":
            os.kill(os.getpid(), signal.SIGINT)

    interrupt_at(monkeypatch, target, act)
    if how == "SIGKILL":
        with pytest.raises(Killed):
            main([*SWEEP, "--out", str(out)])
        code, err = None, ""
    else:
        code, _, err = cli([*SWEEP, "--out", out])
    monkeypatch.undo()
    if how == "SIGTERM":
        assert code == 0 and runfolder.is_complete(out), err
    else:
        assert not runfolder.is_complete(out)
        if how == "disk full":
            assert one_line(code, err, 1) and "disk is full" in err, err
        if how == "SIGINT twice":
            assert one_line(code, err, 130), err
        code, text, err = cli([*SWEEP, "--out", out])
        assert code == 0 and "already complete" not in text and runfolder.is_complete(out), err
    same_outputs(out, reference)


def test_llm_resume_drops_a_truncated_last_metrics_line_and_refuses_a_missing_folder(tmp_path, llm_run):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(llm_run / "run", out)
    text = (out / "metrics.jsonl").read_text()
    (out / "metrics.jsonl").write_text(text[:-15])  # the process died while appending the last row
    runfolder.unmark(out)
    code, _, err = cli([*LLM, "--out", out, "--resume"])
    assert code == 0 and runfolder.is_complete(out), err
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0]
    code, _, err = cli([*LLM, "--out", tmp_path / "nowhere", "--resume"])
    assert one_line(code, err) and "does not exist" in err and not (tmp_path / "nowhere").exists()


def test_reproduce_marks_its_data_complete_only_after_the_run(tmp_path, monkeypatch):
    """The experiment's run and plot are stand-ins (the real ones take seconds): the first run dies half-way,
    so its data folder stays unmarked and the next call runs it again and marks it."""
    import matplotlib.pyplot as plt

    from banditlab import reproduce as R

    exp = R.EXPERIMENTS["rec-counterexample"]
    calls = []

    def run(cfg, data, tick):
        (data / "steps.parquet").write_text("half")
        calls.append(data)
        if len(calls) == 1:
            raise Killed

    fake = exp.__class__(exp.config, run, lambda cfg, data, out, plt_: plt.figure(), exp.title, 0)
    monkeypatch.setattr(R, "EXPERIMENTS", {**R.EXPERIMENTS, "rec-counterexample": fake})
    with pytest.raises(Killed):
        R.reproduce(["rec-counterexample"], tmp_path, progress=False, echo=lambda *_: None)
    assert not runfolder.is_complete(tmp_path / "data" / "rec-counterexample")
    R.reproduce(["rec-counterexample"], tmp_path, progress=False, echo=lambda *_: None)
    assert len(calls) == 2 and runfolder.is_complete(tmp_path / "data" / "rec-counterexample")
    R.reproduce(["rec-counterexample"], tmp_path, progress=False, echo=lambda *_: None)
    assert len(calls) == 2  # complete: not rerun


# ------------------------------------------------------------------------------------------ 3–5. strict schemas
NUMBER = st.one_of(st.floats(-2.0, 2.0), st.integers(-3, 3))
VALUE = st.one_of(NUMBER, st.booleans(), st.text(max_size=3), st.lists(NUMBER, min_size=0, max_size=4),
                  st.lists(st.booleans(), min_size=1, max_size=3), st.floats(allow_nan=False) | st.just(1e308))
BANDIT_KEYS = ["means", "mu", "logits", "noise", "low", "high", "sigma", "mue", "noize", "weight", "context"]


def toml_value(v):
    return json.dumps(v) if not isinstance(v, float) or abs(v) < 1e300 else repr(v)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(table=st.dictionaries(st.sampled_from(BANDIT_KEYS), VALUE, min_size=1, max_size=5))
def test_bandit_files_are_read_exactly_or_refused_by_key(table, tmp_path):
    """A bandit file either gives a bandit built from exactly its keys, or one line naming what is wrong: an
    unknown key, a type (a boolean is not a number), mu and logits together, a value out of range."""
    from banditlab.science.bandits import BanditError, TOP_KEYS, from_toml

    text = "".join(f"{k} = {toml_value(v)}\n" for k, v in table.items())
    path = tmp_path / "b.toml"
    path.write_text(text)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        data = None  # not TOML: the reader must refuse it
    try:
        b = from_toml(path)
    except BanditError as err:
        assert len(str(err).splitlines()) == 1
        return
    assert data is not None and set(data) <= TOP_KEYS and not {"mu", "logits"} <= set(data)
    assert all(not isinstance(x, bool) for x in data["means"]) and b.means[0].tolist() == [float(x) for x in
                                                                                            data["means"]]
    if "mu" in data:
        assert abs(b.mu[0] - [float(x) for x in data["mu"]]).max() < 1e-9


SWEEP_FIELDS = ["steps", "seeds", "lr", "sigma", "seed", "threads", "checkpoint_seconds", "baseline", "absolute",
                "behavior", "stepz", "arms"]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(SWEEP_FIELDS), value=VALUE, in_table=st.booleans())
def test_config_files_take_exactly_their_keys_or_refuse_by_name(key, value, in_table, tmp_path):
    """A TOML config key either lands in the config with its exact value and type, inside its declared range,
    or is refused naming the key (unknown key, wrong type, out of range)."""
    from dataclasses import fields

    from banditlab.cli.configfile import merged_config
    from banditlab.errors import UsageError
    from banditlab.sweep import SweepConfig

    path = tmp_path / "c.toml"
    path.write_text(("[sweep]\n" if in_table else "") + f"{key} = {toml_value(value)}\n")
    try:
        cfg = merged_config(SweepConfig, str(path), {}, section="sweep")
    except UsageError as err:
        assert key in str(err) or key.replace("_", "-") in str(err) or "TOML" in str(err)
        return
    f = {f.name: f for f in fields(SweepConfig)}[key]
    got = getattr(cfg, key)
    assert not isinstance(value, bool) or f.type in ("bool", bool)
    assert got == value or (f.type in ("str", str) and got == str(value))
    if "range" in f.metadata:
        lo, hi, _, _ = f.metadata["range"]
        assert (lo is None or got >= lo) and (hi is None or got <= hi)


def test_keys_beside_a_table_and_conflicting_options_are_refused(tmp_path):
    both = tmp_path / "both.toml"
    both.write_text("steps = 5\n[sweep]\nseeds = 2\n")
    good = tmp_path / "bandit.toml"
    good.write_text("means = [0.1, 0.9]\n")
    cases = [
        (["sweep", "--config", both], "steps"),
        (["sweep", "--bandit", good, "--arms", "7"], "--arms"),
        (["sweep", "--bandit", good, "--noise", "gaussian"], "--noise"),
        (["sweep", "--rewards", "0,1", "--arms", "7"], "--arms"),
        (["sweep", "--behavior", "fixed,on-policy"], "--behavior"),
        (["sweep", "--behavior", "lag:5,lag:7"], "--behavior"),
        (["sweep", "--baseline", "0,0"], "--baseline"),
        (["sweep", "--algo-arg", "offset=5"], "offset"),
        (["sweep", "--algo", "topr", "--algo-arg", "a_neg=1", "--algo-arg", "a_neg=0"], "a_neg"),
        (["sweep", "--sigma", "0.3"], "--sigma"),
        (["sweep", "--threads", "1000000"], "--threads"),
        (["sweep", "--seed", "-1"], "--seed"),
        (["sweep", "--config", "/dev/zero"], "--config"),
        (["sweep", "--out", "a/" * 3000], "--out"),
        ([*LLM, "--baseline-offset", "0.1", "--algo-arg", "offset=0.2"], "--baseline-offset"),
        ([*LLM, "--lora-targets", "q_proj,bogus_proj"], "bogus_proj"),
        ([*LLM, "--temperature", "1e-45"], "--temperature"),
        ([*LLM, "--lora-r", str(10**9)], "--lora-r"),
        ([*LLM[:LLM.index("--n-train")], *LLM[LLM.index("--n-train") + 2:], "--n-train", str(10**8)], "--n-train"),
    ]
    for args, name in cases:
        out = tmp_path / "out"
        code, _, err = cli([*args, "--out", out] if "--out" not in args else args)
        assert one_line(code, err) and name in err, (args, err)
        assert not out.exists(), args


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for args in (["sweep", "--config", fifo], ["sweep", "--bandit", fifo],
                 [*LLM, "--dataset", "gsm8k", "--data-path", fifo]):
        code, _, err = cli([*args, "--out", tmp_path / "o"])
        assert one_line(code, err) and "regular file" in err, err


ROW = st.dictionaries(st.sampled_from(["question", "answer", "id", "extra", "problem", "solution"]),
                      st.one_of(st.text(max_size=5), st.booleans(), st.integers(0, 9), st.none(),
                                st.just("x" * 20_000), st.just("so #### 7")), max_size=4)


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(ROW, min_size=1, max_size=3), dataset=st.sampled_from(["gsm8k", "math"]))
def test_dataset_rows_are_problems_or_refused_with_their_row(rows, dataset):
    """A JSONL row becomes a Problem with text question and answer (no booleans, no unknown fields, a capped
    question length), or the file is refused naming the row."""
    from banditlab_llm.data import FIELDS, MAX_QUESTION_CHARS, DataError, _from_rows

    try:
        problems = _from_rows(rows, dataset, "test.jsonl")
    except DataError as err:
        assert "row" in str(err) and len(str(err).splitlines()) == 1
        return
    for row, p in zip(rows, problems):
        assert set(row) <= FIELDS[dataset]
        q = row["question" if dataset == "gsm8k" else "problem"]
        assert p.question == q and isinstance(q, str) and len(q) <= MAX_QUESTION_CHARS
        assert not isinstance(row.get("answer"), bool) and isinstance(p.answer, str) and p.answer


# ------------------------------------------------------------------------------------------ 6–8
def test_runs_that_leave_the_finite_range_are_flagged():
    import numpy as np

    from banditlab.science.simulator import METRICS
    from banditlab.sweep import finite_runs

    values = np.zeros((3, 4, len(METRICS)))
    values[0, :, METRICS.index("loss")] = np.nan  # step 0 has no loss yet
    values[2, 1, METRICS.index("loss")] = np.nan
    values[1, 2, METRICS.index("min_logit")] = -np.inf
    assert finite_runs(values, [0, 5, 10]).tolist() == [True, False, False, True]


def test_figure_paths_keep_dots_in_their_names(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from banditlab.plots import save

    fig = plt.figure()
    paths = save(fig, tmp_path / "v1.0") + save(fig, tmp_path / "v1.1") + save(fig, tmp_path / "w.png")
    plt.close(fig)
    assert [p.name for p in paths] == ["v1.0.png", "v1.0.pdf", "v1.1.png", "v1.1.pdf", "w.png", "w.pdf"]


def test_a_deleted_working_directory_gives_one_line(tmp_path):
    import subprocess
    import sys

    gone = tmp_path / "gone"
    gone.mkdir()
    code = ("import os, sys; os.chdir(sys.argv[1]); os.rmdir(sys.argv[1]); "
            "from banditlab.cli.app import main; main(['sweep'])")
    r = subprocess.run([sys.executable, "-c", code, str(gone)], capture_output=True, text=True, timeout=PATIENCE_S)
    assert r.returncode == 2 and "working directory" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_the_model_cache_needs_no_home_when_banditlab_cache_is_set(monkeypatch):
    import importlib
    import pwd

    import banditlab_llm.models as models

    monkeypatch.delenv("HOME", raising=False)
    monkeypatch.setenv("BANDITLAB_CACHE", "/tmp/banditlab-cache-test")
    monkeypatch.setattr(pwd, "getpwuid", lambda uid: (_ for _ in ()).throw(KeyError(uid)))
    try:
        assert str(importlib.reload(models).CACHE) == "/tmp/banditlab-cache-test"
    finally:
        monkeypatch.undo()
        importlib.reload(models)


def test_merge_names_a_truncated_shard_in_one_line(tmp_path):
    shards = [tmp_path / f"s{i}" for i in (1, 2)]
    for i, d in enumerate(shards, 1):
        assert cli([*SWEEP, "--shard", f"{i}/2", "--out", d])[0] == 0
    data = (shards[1] / "steps.parquet").read_bytes()
    (shards[1] / "steps.parquet").write_bytes(data[: len(data) // 2])
    code, _, err = cli(["merge", *shards, "--out", tmp_path / "m"])
    assert one_line(code, err) and "s2/steps.parquet" in err and "damaged" in err, err
    assert not (tmp_path / "m").exists()


# ------------------------------------------------------------------------------------------ found by experiments/hostile.py
@pytest.mark.parametrize("command", ["eval", "generate"])
def test_a_crafted_adapter_never_runs_and_gives_one_line(command, tmp_path, llm_run):
    """peft reads a pickled adapter_model.bin with torch's weights-only loader: the payload is refused, and the
    refusal (an exception type of torch's own) is one line, like any other adapter that cannot load."""
    import shutil

    adapter = tmp_path / "adapter"
    shutil.copytree(llm_run / "run" / "adapter", adapter)
    for f in adapter.glob("adapter_model.*"):
        f.unlink()
    marker = tmp_path / "PWNED"
    craft(adapter / "adapter_model.bin", marker, zip_format=True)
    args = ["llm", command, "--model", "tiny", "--max-new-tokens", "2", "--adapter", adapter]
    code, _, err = cli(args + (["--n", "1"] if command == "eval" else ["hi"]))
    assert not marker.exists(), "the payload ran"
    assert one_line(code, err) and "--adapter" in err, err
    code, _, err = cli(["llm", command, "--model", "tiny", "--adapter", tmp_path] + ([] if command == "eval" else ["hi"]))
    assert one_line(code, err) and "not an adapter folder" in err, err


JSON_ITEM = st.sampled_from(['"question": "1+1?"', '"answer": "#### 2"', '"id": "a"', '"id": NaN',
                            '"answer": Infinity', '"question": "2+2?"', '"id": -Infinity', '"answer": 1e999999',
                            '"id": -1e400', '"id": 1e308', '"question": "\\ud800?"', '"id": "\\u00e9\\ud83d\\ude00"'])
NOT_DATA = ("NaN", "Infinity", "1e999999", "-1e400", "\\ud800?")  # what the one strict JSON reader refuses


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=st.lists(JSON_ITEM, min_size=1, max_size=5))
def test_jsonl_lines_are_read_exactly_or_refused_with_their_line(items, tmp_path):
    """A JSONL line is read with every key it has, once: a key given twice (json keeps the last, silently),
    NaN/Infinity (not JSON), numbers that overflow to ±inf and a lone surrogate (not text) are refused naming the
    line; a surrogate pair (one emoji) and 1e308 are read."""
    from banditlab_llm.data import DataError, read_jsonl

    line = "{" + ", ".join(items) + "}"
    path = tmp_path / "d.jsonl"
    path.write_text(line + "\n")
    keys = [i.split(":")[0].strip('"') for i in items]
    bad = len(set(keys)) < len(keys) or any(c in line for c in NOT_DATA)
    try:
        rows = read_jsonl(path)
    except DataError as err:
        assert bad and "line 1" in str(err) and len(str(err).splitlines()) == 1, err
        return
    assert not bad and list(rows[0]) == keys


@given(items=st.lists(st.sampled_from(["0", "1.5", "-2", "", " ", "nan", "x", "1e3"]), min_size=1, max_size=5))
def test_number_lists_are_read_item_by_item_or_refused(items):
    """`--rewards`/`--mu`/`--baseline` lists: every comma-separated item is one finite number, none skipped."""
    from banditlab.errors import UsageError
    from banditlab.sweep import parse_floats

    text = ",".join(items)
    try:
        vals = parse_floats(text, "--rewards")
    except UsageError as err:
        assert "--rewards" in str(err)
        assert any(i.strip() in ("", "nan", "x") for i in items)
        return
    assert vals == [float(i) for i in items]


NUMBER = st.sampled_from(["0", "0.25", "-0.5", "1e-11", "1e-320", "2e-320", "0.1", "0.1000000000001"])


@settings(max_examples=120, deadline=None)
@given(form=st.sampled_from(["list", "range"]), items=st.lists(NUMBER, min_size=1, max_size=4),
       num=st.integers(1, 6))
def test_baselines_are_distinct_however_they_are_written(form, items, num):
    """A list or a START:STOP:NUM range of baselines gives distinct values (rounded to 10 decimals, the precision
    of the sweep's table) or is refused naming --baseline: never one baseline run several times and pooled."""
    from banditlab.errors import UsageError
    from banditlab.sweep import parse_range

    text = ",".join(items) if form == "list" else f"{items[0]}:{items[-1]}:{num}"
    try:
        vals = parse_range(text)
    except UsageError as err:
        assert str(err).startswith("--baseline:") and len(str(err).splitlines()) == 1
        rounded = [round(float(i), 10) for i in items]
        if form == "list":
            assert len(set(rounded)) < len(rounded)
        return
    assert len(set(vals.tolist())) == len(vals)
    if form == "list":
        assert vals.tolist() == [round(float(i), 10) + 0.0 for i in items]


@pytest.mark.parametrize("where", ["option", "config"])
def test_a_range_of_one_repeated_baseline_is_refused_by_sweep_and_theory(where, tmp_path):
    """`0:0:5` through the option or a config file: refused in one line by sweep and theory, nothing written."""
    args = ["--baseline", "0:0:5"]
    if where == "config":
        (tmp_path / "c.toml").write_text('baseline = "0:0:5"\n')
        args = ["--config", str(tmp_path / "c.toml")]
    for command in (["sweep", "--out", str(tmp_path / "run"), "--steps", "5"], ["theory"]):
        code, _, err = cli(command + args)
        assert one_line(code, err) and "--baseline" in err and "more than once" in err, err
    assert not (tmp_path / "run").exists()


REPRO_KEYS = ["V", "exact_steps", "sampled_steps", "sampled_seeds", "batch", "lr", "exact_step"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(REPRO_KEYS), value=VALUE)
def test_reproduce_configs_take_the_shipped_types_or_refuse_by_key(key, value, tmp_path):
    """A `reproduce --configs` file holds the shipped config's keys with the shipped types (an integer may stand
    for a float), finite numbers and counts in [0, 1e9]; anything else is refused naming the key before a data
    folder exists."""
    from banditlab.errors import UsageError
    from banditlab.reproduce import CONFIGS, COUNT_MAX, load_config

    shipped = tomllib.loads((CONFIGS / "asymre-limit.toml").read_text())
    path = tmp_path / "asymre-limit.toml"
    path.write_text(f"{key} = {toml_value(value)}\n")
    try:
        got = load_config("asymre-limit", tmp_path)[key]
    except UsageError as err:
        assert key in str(err) or "TOML" in str(err)
        return
    kind = type(shipped[key])
    assert type(got) is kind or (kind is float and type(got) is int)
    assert not isinstance(got, int) or 0 <= got <= COUNT_MAX


def test_a_wrong_reproduce_config_writes_nothing(tmp_path):
    cfgs = tmp_path / "cfg"
    cfgs.mkdir()
    (cfgs / "asymre-limit.toml").write_text('V = "0:0.9:3"\nexact_steps = 20\nsampled_steps = 20\n'
                                             'sampled_seeds = 2\nbatch = 8\nlr = "1"\n')
    code, _, err = cli(["reproduce", "asymre-limit", "--configs", cfgs, "--figures", tmp_path / "fig",
                        "--no-progress"])
    assert one_line(code, err) and "lr" in err and not (tmp_path / "fig").exists(), err


@pytest.mark.parametrize("extra", [["--offline-data", "x.pt"], ["--epochs", "3"]])
def test_offline_options_without_offline_are_refused(extra, tmp_path):
    code, _, err = cli([*LLM, *extra, "--out", tmp_path / "r"])
    assert one_line(code, err) and extra[0] in err and not (tmp_path / "r").exists(), err


@pytest.mark.parametrize("args", [["llm", "eval", "--model", "tiny", "--threads", "1000000"],
                                  ["llm", "generate", "--model", "tiny", "--seed", "-1", "hi"],
                                  ["llm", "generate", "--model", "tiny", "--temperature", "1e-45", "hi"],
                                  ["llm", "generate", "--model", "tiny", "x" * 20_000],
                                  ["demo", "--above", "inf"], ["demo", "--below", "-1e300"]])
def test_every_command_checks_its_numbers_before_work(args, tmp_path):
    """One line, exit 2, nothing written: the same declared ranges on every command, and the question cap of the
    datasets on `generate`'s prompts."""
    extra = ["--out", tmp_path / "demo"] if args[0] == "demo" else []
    code, _, err = cli(args + extra)
    assert one_line(code, err) and not list(tmp_path.iterdir()), err


@pytest.mark.parametrize("content", [b"", b"not gguf", b"GGUF" + b"\x00" * 4, b"GGUF" + os.urandom(64)],
                         ids=["empty", "text", "magic-only", "magic-and-noise"])
def test_a_damaged_gguf_model_gives_one_line(content, tmp_path):
    """Every file handed to --model is read by one loader that names it; a damaged GGUF never reaches the user
    as gguf's or transformers' own exception."""
    path = tmp_path / "m.gguf"
    path.write_bytes(content)
    code, _, err = cli(["llm", "eval", "--model", path, "--n", "1"])
    assert one_line(code, err) and "--model" in err, err


@pytest.mark.parametrize("command", ["train", "eval", "generate"])
def test_a_hub_model_missing_from_the_offline_cache_is_refused_before_loading(command, tmp_path, monkeypatch):
    """With the hub offline, a hub name that is not in the local cache is named in one line before anything is
    loaded or written ("loading ..." is never printed); a local folder of that name would still be taken."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    args = {"train": [*LLM[2:], "--out", tmp_path / "run"], "eval": ["--n", "1"], "generate": ["hi"]}[command]
    args = [a if a != "tiny" else "NoSuchOrg/no-such-model" for a in args]
    if command != "train":
        args = ["--model", "NoSuchOrg/no-such-model", *args]
    code, out, err = cli(["llm", command, *args])
    assert one_line(code, err) and "NoSuchOrg/no-such-model" in err and "HF_HUB_OFFLINE" in err, err
    assert "loading" not in out and not (tmp_path / "run").exists()


def _options(command):
    """(single-valued option names, repeatable option names) of a CLI command path such as ["llm", "train"]."""
    import typer

    from banditlab.cli.app import app

    cmd = typer.main.get_command(app)
    for name in command:
        cmd = cmd.commands[name]
    single = [p.opts[0] for p in cmd.params if p.param_type_name == "option" and not p.multiple
              and p.opts[0] != "--help"]
    return single, [p.opts[0] for p in cmd.params if p.param_type_name == "option" and p.multiple]


COMMANDS = [["sweep"], ["merge"], ["plot"], ["reproduce"], ["demo"], ["llm", "train"], ["llm", "eval"],
            ["llm", "generate"], ["llm", "bench"]]


@settings(max_examples=60, deadline=None)
@given(command=st.sampled_from(COMMANDS), data=st.data())
def test_an_option_given_twice_is_refused_by_name(command, data):
    """click keeps the last of two values silently; every single-valued option of every command given twice
    (value or flag) is refused in one line naming it, before anything runs; repeatable options are not."""
    import typer

    from banditlab.cli.app import _repeated_option, app

    single, multiple = _options(command)
    opt = data.draw(st.sampled_from(single))
    form = data.draw(st.sampled_from(["{o} 1 {o} 2", "{o}=1 {o} 2"]))
    argv = [*command, *form.format(o=opt).split()]
    assert _repeated_option(typer.main.get_command(app), argv) is not None
    code, _, err = cli(argv)
    assert one_line(code, err) and opt in err and "twice" in err, err
    for m in multiple:
        assert _repeated_option(typer.main.get_command(app), [*command, m, "a=1", m, "b=2"]) is None


def test_outputs_are_checked_writable_before_the_work(tmp_path, llm_run):
    """A figure or JSON path that cannot be written is refused in one line before the work, and a folder that
    does not exist yet is made."""
    (tmp_path / "f").write_text("x")
    code, _, err = cli(["llm", "bench", "--model", "tiny", "--json", tmp_path])
    assert one_line(code, err) and "--json" in err and "folder" in err, err
    code, _, err = cli(["demo", "--steps", "10", "--out", tmp_path / "f" / "demo"])
    assert one_line(code, err) and "--out" in err and "not a folder" in err, err
    code, _, err = cli(["plot", llm_run / "run", "--out", tmp_path / "new" / "deeper" / "curves"])
    assert code == 0 and (tmp_path / "new" / "deeper" / "curves.png").exists(), err


# ------------------------------------------------------------------------------------------ one schema per concept
SCHEMA_CASES = {
    "sigma with Bernoulli noise in a file": ("file", 'means = [0.1, 0.9]\nnoise = "bernoulli"\nsigma = 0.5\n', "sigma"),
    "3,000,000 arms in a file": ("file", "means = [" + ",".join(["0.5"] * 3_000_000) + "]\n", "arms"),
    "one context weight given, one absent": ("file", "[[context]]\nmeans = [0.1, 0.9]\nweight = 2\n"
                                             "[[context]]\nmeans = [0.2, 0.3]\n", "weight"),
    "low/high with explicit means and no noise in a file": ("file", "means = [0.1, 0.9]\nnoise = \"none\"\nlow = -1\n",
                                                            "low/high"),
    "--sigma with Bernoulli noise": ("sweep", ["--sigma", "0.3"], "--sigma"),
    "--batch in exact mode": ("sweep", ["--mode", "exact", "--batch", "8"], "--batch"),
    "--pulls in exact mode": ("sweep", ["--mode", "exact", "--pulls", "independent"], "--pulls"),
    "--baseline-ref with --absolute": ("sweep", ["--absolute", "--baseline", "0.5", "--baseline-ref", "group"],
                                       "--baseline-ref"),
    "--low with explicit rewards and Gaussian noise": ("sweep", ["--rewards", "0.1,0.9", "--noise", "gaussian",
                                                                 "--low", "-1"], "--low/--high"),
    "--seeds in exact mode": ("sweep", ["--mode", "exact", "--seeds", "5"], "--seeds"),
    "--baseline-ref group in exact mode": ("sweep", ["--mode", "exact", "--baseline-ref", "group"], "--baseline-ref"),
    "demo --out beside --html": ("demo", ["--steps", "5", "--html", "PAGE", "--out", "FIG"], "--out"),
    "theory: baselines × contexts": ("theory", ["--contexts", "1000", "--arms", "1000"], "--baseline × contexts"),
    "theory: baselines × contexts × arms": ("theory", ["--arms", "1000000", "--baseline", "-0.5:0.5:10"],
                                            "--baseline × contexts × arms"),
}


@pytest.mark.parametrize("case", SCHEMA_CASES)
def test_one_schema_for_options_and_files_and_bounded_work(case, tmp_path):
    """The same ranges and cross-field rules for the command line and bandit files (`bandits.check_size`,
    `check_fields`), options that mean nothing in the chosen mode refused, and `theory`'s work bounded by its
    product: one line naming the key or option, exit 2, no folder written."""
    where, what, words = SCHEMA_CASES[case]
    if where == "file":
        (tmp_path / "b.toml").write_text(what)
        args = ["theory", "--bandit", tmp_path / "b.toml"]
    elif where == "sweep":
        args = ["sweep", *what, "--steps", "3", "--out", tmp_path / "run"]
    elif where == "demo":
        args = ["demo", *[str(tmp_path / "run" / a) if a in ("PAGE", "FIG") else a for a in what]]
    else:
        args = ["theory", *what]
    code, _, err = cli(args)
    assert one_line(code, err) and words in err, err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("where", ["sweep --out", "llm generate PROMPT", "theory --bandit"])
def test_text_that_is_not_utf8_is_refused_at_the_boundary(where, tmp_path):
    """A command-line argument that was not UTF-8 reaches Python as lone surrogates (os.fsdecode): a path name
    (every option through `safeio.check_path`) or a prompt (`data.check_length`) is refused in one line naming the
    option before anything is written; the run record could not hold it, and tokenizers refuse it mid-run."""
    bad = os.fsdecode(b"caf\xe9")  # Latin-1 bytes, as a shell in another locale would pass them
    if where == "sweep --out":
        args, option = ["sweep", "--baseline", "0", "--steps", "3", "--out", str(tmp_path / bad)], "--out"
    elif where == "llm generate PROMPT":
        args, option = ["llm", "generate", "--model", "tiny", "--max-new-tokens", "2", f"what is {bad}?"], "QUESTION 1"
    else:
        args, option = ["theory", "--bandit", str(tmp_path / f"{bad}.toml")], "--bandit"
    code, _, err = cli(args)
    assert one_line(code, err) and option in err and "not valid UTF-8" in err, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("last, newline, read", [('{"step": 2, "loss": 0.5}', True, 2), ('{"step": 2, "lo', False, 1),
                                                 ('{"step": 2, "loss": -Infinity}', True, None),
                                                 ('{"step": 2, "loss": 1e999}', True, None)])
def test_only_a_line_cut_short_is_dropped_from_metrics(last, newline, read, tmp_path):
    """A run that dies while appending leaves a last line without its newline: dropped. A complete last line is
    data like any other, and a non-finite number in it is refused naming the line, never dropped as if cut."""
    from banditlab.errors import UsageError
    from banditlab.plumbing.folder import read_metrics

    f = tmp_path / "metrics.jsonl"
    f.write_text('{"step": 0}\n{"step": 1, "loss": 0.7}\n' + last + ("\n" if newline else ""))
    if read is None:
        with pytest.raises(UsageError, match="line 3"):
            read_metrics(f, "RUN_DIR")
    else:
        assert [r["step"] for r in read_metrics(f, "RUN_DIR")] == list(range(read + 1))
