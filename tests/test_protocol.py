"""banditlab.plumbing.protocol, the one life of a run folder, and `reproduce`'s data folders that go through it.

Open: another kind of run, files without a record, another identity and a folder in use are refused in one line;
`adopt`, `replace` and `accept` take them over where a command allows it. Resume: the same identity reopens its
folder, unfinished until DONE. DONE is last: a record rewritten removes it first, and an error before `done()`
leaves none. Reproduce: data made from another config are refused (plain and --plot-only) until --force reruns
them; a complete data folder without a record is redrawn as it is, neither rerun nor rewritten.
"""

from __future__ import annotations

import json
import shutil

import pytest

from banditlab.errors import UsageError
from banditlab.plumbing.folder import is_complete, lock, read_record
from banditlab.plumbing.protocol import Run

ID = {"algo": "asymre", "steps": 10, "lr": 1.0}


def finished(folder, identity=ID, kind="sweep"):
    with Run.open(folder, kind, identity) as run:
        run.write_record({"note": "first"})
        with run.running():
            (folder / "out.txt").write_text("out")
            run.done()


# ------------------------------------------------------------------------------------------ opening
def test_another_identity_is_refused_in_one_line_naming_the_keys(tmp_path):
    finished(tmp_path / "r")
    with pytest.raises(UsageError, match=r"^--out: .*/r holds a different run \(differs in: lr, steps\); "
                                         r"choose another --out$"):
        Run.open(tmp_path / "r", "sweep", {**ID, "steps": 20, "lr": 0.5})
    with pytest.raises(UsageError, match="holds a sweep run, not a reproduce run"):
        Run.open(tmp_path / "r", "reproduce", ID)
    Run.open(tmp_path / "r", "sweep", ID).close()  # refusals leave the folder unlocked


def test_files_without_a_record_are_refused_unless_adopted(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "steps.parquet").write_text("x")
    with pytest.raises(UsageError, match="is not empty and holds no banditlab run"):
        Run.open(d, "reproduce", ID)
    with Run.open(d, "reproduce", ID, adopt=True) as run:
        assert run.previous is None and not run.changed and not run.complete


def test_check_writes_nothing_and_open_locks_until_closed(tmp_path):
    assert Run.check(tmp_path / "new", "sweep", ID) == (None, False)
    assert not (tmp_path / "new").exists()
    run = Run.open(tmp_path / "new", "sweep", ID)
    with pytest.raises(UsageError, match="is in use by another run"):
        Run.open(tmp_path / "new", "sweep", ID)
    run.close()
    Run.open(tmp_path / "new", "sweep", ID).close()


def test_without_out_a_new_default_folder_is_claimed(tmp_path):
    with Run.open(None, "sweep", ID, name=("sweep", "asymre")) as run:
        assert run.folder.is_dir() and run.folder.name.startswith("sweep-asymre-") and run.previous is None


# ------------------------------------------------------------------------------------------ resume and DONE
def test_the_same_identity_resumes_and_is_complete_only_after_done(tmp_path):
    d = tmp_path / "r"
    with pytest.raises(RuntimeError):
        with Run.open(d, "sweep", ID) as run:
            run.write_record({"note": "first"})
            with run.running():
                raise RuntimeError("killed half-way")
    assert not is_complete(d) and read_record(d)["identity"] == ID
    with Run.open(d, "sweep", ID) as run:  # resumed: its record is read back, unfinished
        assert run.previous["note"] == "first" and not run.complete
        run.write_record({"note": "second"})
        with run.running():
            run.done()
    with Run.open(d, "sweep", ID) as run:
        assert run.complete


def test_done_is_last_and_a_rewritten_record_removes_it_first(tmp_path):
    d = tmp_path / "r"
    finished(d)
    assert (d / "DONE").stat().st_mtime_ns >= (d / "out.txt").stat().st_mtime_ns
    with Run.open(d, "sweep", ID) as run:
        run.write_record({"note": "rerun"})
        assert not is_complete(d)  # from here until done() the folder holds an unfinished run
    rec = json.loads((d / "config.json").read_text())
    assert list(rec)[:2] == ["kind", "identity"] and rec["note"] == "rerun"


def test_replace_and_accept_take_over_another_identity_which_is_never_complete(tmp_path):
    d = tmp_path / "r"
    finished(d)
    longer = {**ID, "steps": 20}
    with Run.open(d, "sweep", longer, accept=lambda rec: rec["identity"]["algo"] == "asymre") as run:
        assert run.changed and not run.complete and is_complete(d)
        run.write_record({"extra": 1}, keep=True)  # a longer run: its record keeps the other keys
        assert not is_complete(d) and not run.changed
    rec = read_record(d)
    assert rec["identity"]["steps"] == 20 and rec["note"] == "first" and rec["extra"] == 1
    with pytest.raises(UsageError, match="differs in: algo"):
        Run.open(d, "sweep", {**longer, "algo": "topr"}, accept=lambda rec: False)
    with Run.open(d, "sweep", {**longer, "algo": "topr"}, replace=True) as run:
        assert run.changed and not run.complete


def test_a_non_writer_checks_but_claims_and_writes_nothing(tmp_path):
    d = tmp_path / "r"
    finished(d)
    held = lock(d)  # rank 0 holds the folder
    run = Run.open(d, "sweep", ID, writer=False)
    run.write_record({"note": "rank 1"})
    run.done()
    assert run.held is None and read_record(d)["note"] == "first"
    held.close()
    with pytest.raises(UsageError, match="differs in: steps"):
        Run.open(d, "sweep", {**ID, "steps": 1}, writer=False)


# ------------------------------------------------------------------------------------------ reproduce
@pytest.fixture
def fake_experiment(tmp_path, monkeypatch):
    """rec-counterexample with stand-in run and plot (the real ones take seconds); returns (calls, configs)."""
    import matplotlib.pyplot as plt

    from banditlab import reproduce as R

    exp = R.EXPERIMENTS["rec-counterexample"]
    calls = []

    def run(cfg, data, tick):
        (data / "steps.parquet").write_text(f"steps {cfg['steps']}")
        calls.append(cfg["steps"])

    fake = exp.__class__(exp.config, run, lambda cfg, data, out, plt_: plt.figure(), exp.title, 0)
    monkeypatch.setattr(R, "EXPERIMENTS", {**R.EXPERIMENTS, "rec-counterexample": fake})
    configs = tmp_path / "configs"
    configs.mkdir()
    shutil.copy(R.CONFIGS / "rec-counterexample.toml", configs)
    return calls, configs


def test_reproduce_refuses_data_from_another_config_until_force_reruns_it(tmp_path, fake_experiment):
    from banditlab import reproduce as R

    calls, configs = fake_experiment
    go = lambda **kw: R.reproduce(["rec-counterexample"], tmp_path / "fig", progress=False, echo=lambda *_: None,
                                  configs=configs, **kw)
    go()
    data = tmp_path / "fig" / "data" / "rec-counterexample"
    assert read_record(data)["kind"] == "reproduce" and is_complete(data)
    toml = configs / "rec-counterexample.toml"
    steps = calls[0]
    toml.write_text(toml.read_text().replace(f"steps = {steps}", f"steps = {steps + 1}"))
    with pytest.raises(UsageError, match=r"^--figures: .* \(differs in: steps\); made from another "
                                         r"rec-counterexample.toml; --force reruns it$"):
        go()
    with pytest.raises(UsageError, match="rerun it with --force instead of --plot-only"):
        go(plot_only=True)
    assert calls == [steps] and (data / "steps.parquet").read_text() == f"steps {steps}"
    go(force=True)
    assert calls == [steps, steps + 1] and read_record(data)["identity"]["steps"] == steps + 1 and is_complete(data)
    go()
    assert len(calls) == 2  # complete, of this config: redrawn only


def test_reproduce_redraws_a_complete_folder_without_record_as_it_is(tmp_path, fake_experiment):
    from banditlab import reproduce as R

    calls, configs = fake_experiment
    data = tmp_path / "fig" / "data" / "rec-counterexample"
    shutil.copytree(R.ROOT / "figures" / "data" / "rec-counterexample", data)
    before = sorted(p.name for p in data.iterdir())
    for plot_only in (True, False):
        R.reproduce(["rec-counterexample"], tmp_path / "fig", plot_only=plot_only, progress=False,
                    echo=lambda *_: None, configs=configs)
    assert calls == [] and sorted(p.name for p in data.iterdir()) == before  # no record until it next runs
    R.reproduce(["rec-counterexample"], tmp_path / "fig", force=True, progress=False, echo=lambda *_: None,
                configs=configs)
    assert len(calls) == 1 and read_record(data)["kind"] == "reproduce" and is_complete(data)


def test_importing_reproduce_imports_no_experiment_and_no_experiment_imports_reproduce():
    import ast
    import subprocess
    import sys

    from banditlab import reproduce as R

    code = ("import sys, banditlab.reproduce; "
            "print(sorted(m for m in sys.modules if m.startswith('banditlab_experiment')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    for f in R.CONFIGS.glob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.module != "banditlab.reproduce", f.name
