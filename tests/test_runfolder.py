"""banditlab.plumbing.folder, the one owner of run folders: properties of its API.

Identity: a record is accepted back by the same identity and refused, in one line naming exactly the options that
differ, by any other. Completion: a process killed (os._exit, no handler or cleanup runs, as with kill -9) at any
point of any write leaves no DONE marker and no half-written output, and the same writes again complete the folder.
Names: default folders claimed at once, in the same second, are all distinct. Lock: a second holder is refused.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from banditlab.plumbing import folder as R
from banditlab.errors import UsageError

KEYS = ["algo", "lr", "steps", "seed", "baseline", "behavior", "noise", "mode"]
VALUE = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=False), st.text(max_size=6), st.booleans(),
                  st.none(), st.lists(st.integers(-3, 3), max_size=3))
IDENTITY = st.dictionaries(st.sampled_from(KEYS), VALUE, min_size=1)
FEW = settings(max_examples=15, deadline=None)


def fresh(tmp_path, name):
    d = tmp_path / name
    d.mkdir()
    return d


# ------------------------------------------------------------------------------------------ identity
@FEW
@given(identity=IDENTITY, changed=st.sets(st.sampled_from(KEYS), min_size=1), n=st.integers(0, 10**9))
def test_an_identity_is_accepted_back_and_any_change_is_refused_in_one_line_naming_it(tmp_path_factory, identity,
                                                                                      changed, n):
    folder = tmp_path_factory.mktemp("run")
    R.write_record(folder, "sweep", {"identity": identity, "sweep": identity})
    assert R.check_identity(folder, identity)["identity"] == R.jsonable(identity)
    assert R.kind_of(folder) == "sweep"
    other = dict(identity)
    for k in changed:  # a value no generated identity holds, or the key taken away
        if k in other and n % 2:
            del other[k]
        else:
            other[k] = f"changed {n}"
    with pytest.raises(UsageError) as err:
        R.check_identity(folder, other)
    text = str(err.value)
    assert "\n" not in text and text.endswith("choose another --out")
    assert text.split("differs in: ")[1].split(")")[0] == ", ".join(sorted(changed))


def test_a_folder_without_a_record_has_no_identity_and_a_damaged_record_is_refused(tmp_path):
    assert R.check_identity(tmp_path, {"lr": 1}) is None
    (tmp_path / "config.json").write_text('{"identity": ')
    with pytest.raises(UsageError, match="unreadable"):
        R.check_identity(tmp_path, {"lr": 1})


# ------------------------------------------------------------------------------------------ completion
OUTPUTS = {"summary.csv": "a,b\n1,2\n" * 50, "table.csv": "x\n3\n" * 40, "state.pt": "s" * 3000}


def write_run(folder, outputs: dict) -> None:
    """A run's final writes in the runfolder way: every output atomically, then the marker."""
    for name, text in outputs.items():
        R.atomic_write(folder / name, text)
    R.atomic_output(folder / "steps.txt", lambda tmp: tmp.write_text("steps\n" * 100))
    R.mark_complete(folder)


def die_at(k: int, where: str):
    """Patch the file writes of this (child) process to exit at once (os._exit: no handler or cleanup runs) at
    the k-th write: before it, half-way through its bytes, or after the temporary file and before the rename."""
    from pathlib import Path

    count = [0]
    real_write, real_replace = Path.write_bytes, os.replace

    def write_bytes(self, data):
        count[0] += 1
        if count[0] == k and where == "before":
            os._exit(9)
        if count[0] == k and where == "half":
            with open(self, "wb") as f:
                f.write(data[: len(data) // 2])
            os._exit(9)
        return real_write(self, data)

    def replace(src, dst):
        if count[0] == k and where == "rename":
            os._exit(9)
        return real_replace(src, dst)

    Path.write_bytes = write_bytes
    R.os.replace = replace


@settings(max_examples=20, deadline=None)
@given(k=st.integers(1, len(OUTPUTS) + 1), where=st.sampled_from(["before", "half", "rename"]),
       before=st.booleans())
def test_a_kill_at_any_write_leaves_no_marker_and_no_half_file(tmp_path_factory, k, where, before):
    """(k counts the writes that go through write_bytes: every output and the marker.)"""
    folder = tmp_path_factory.mktemp("run")
    if before:  # an unfinished folder from an earlier run, with older outputs
        for name in OUTPUTS:
            (folder / name).write_text("old\n")
    pid = os.fork()
    if pid == 0:  # the child: dies at the k-th write, or finishes if there are fewer
        try:
            die_at(k, where)
            write_run(folder, {**OUTPUTS})
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 9
    assert not R.is_complete(folder)
    for name, text in OUTPUTS.items():  # each output is whole: the new one, the old one, or absent
        f = folder / name
        assert not f.exists() or f.read_text() in (text, "old\n")
    write_run(folder, OUTPUTS)  # the rerun finishes the folder
    assert R.is_complete(folder)
    assert all((folder / name).read_text() == text for name, text in OUTPUTS.items())


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    f = tmp_path / "table.csv"
    f.write_text("old")

    def fail(tmp):
        tmp.write_text("new, half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError) as err:
        R.atomic_output(f, fail)
    assert R.is_disk_full(err.value) and f.read_text() == "old" and os.listdir(tmp_path) == ["table.csv"]


# ------------------------------------------------------------------------------------------ default names
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(2, 12), taken=st.sets(st.integers(1, 6), max_size=3))
def test_default_folders_claimed_in_the_same_second_are_all_distinct(tmp_path_factory, monkeypatch, n, taken):
    root = tmp_path_factory.mktemp("cwd")
    monkeypatch.chdir(root)
    frozen = time.localtime(1_800_000_000)
    monkeypatch.setattr(R.time, "localtime", lambda *_: frozen)
    base = R.default_name("sweep", "asymre")
    assert base.parent.name == "runs" and base.name == "sweep-asymre-" + time.strftime("%Y%m%d-%H%M%S", frozen)
    base.parent.mkdir()
    earlier = {base if i == 1 else base.with_name(f"{base.name}-{i}") for i in taken}  # folders of earlier runs
    for d in earlier:
        d.mkdir()
    claims, start = [], threading.Barrier(n)

    def claim():
        start.wait()
        claims.append(R.claim(None, "sweep", name=("sweep", "asymre")))

    threads = [threading.Thread(target=claim) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    folders = {c.folder for c in claims}
    assert len(folders) == n and not folders & earlier
    assert all(d.is_dir() and d.name.startswith(base.name) for d in folders)
    for c in claims:
        c.close()


# ------------------------------------------------------------------------------------------ the lock
def test_a_second_holder_is_refused_in_one_line_until_the_first_lets_go(tmp_path):
    first = R.claim(tmp_path / "run", "sweep")
    with pytest.raises(UsageError) as err:
        R.claim(tmp_path / "run", "sweep")
    assert "\n" not in str(err.value) and f"in use by another run (pid {os.getpid()})" in str(err.value)
    first.close()
    R.claim(tmp_path / "run", "sweep").close()


def test_a_lock_held_by_another_process_is_refused_and_released_by_its_death(tmp_path):
    out = tmp_path / "run"
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            held = R.claim(out, "llm-train")  # noqa: F841  (kept open: the lock lives as long as the file)
            os.write(ready_w, b"1")
            time.sleep(60)
        finally:
            os._exit(0)
    os.read(ready_r, 1)
    with pytest.raises(UsageError, match=f"pid {pid}"):
        R.claim(out, "llm-train")
    os.kill(pid, signal.SIGKILL)  # no handler runs: the operating system releases the lock
    os.waitpid(pid, 0)
    R.claim(out, "llm-train").close()


def test_a_folder_of_another_kind_or_with_foreign_files_is_refused(tmp_path):
    run = fresh(tmp_path, "run")
    R.write_record(run, "sweep", {"identity": {}})
    with pytest.raises(UsageError, match="holds a sweep run, not a llm-train run"):
        R.claim(run, "llm-train")
    notes = fresh(tmp_path, "notes")
    (notes / "mine.txt").write_text("keep")
    with pytest.raises(UsageError, match="not empty"):
        R.claim(notes, "sweep")
    assert (notes / "mine.txt").read_text() == "keep"


# ------------------------------------------------------------------------------------------ cadence and signals
@FEW
@given(every=st.integers(1, 7), steps=st.integers(1, 40), stop=st.integers(1, 40))
def test_a_step_cadence_saves_every_n_steps_and_at_the_final_step(every, steps, stop):
    c = R.Cadence(steps=every)
    saved = [t for t in range(1, steps + 1) if c.due(t, final=t == steps or t == stop)]
    assert saved == [t for t in range(1, steps + 1) if t % every == 0 or t in (steps, stop)]


def test_a_seconds_cadence_saves_once_the_interval_has_passed(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(R.time, "monotonic", lambda: clock[0])
    c = R.Cadence(seconds=10.0)
    due = []
    for t in range(1, 60):
        clock[0] += 1.5
        due.append(c.due(t))
    assert [t for t, d in zip(range(1, 60), due) if d] == [7, 14, 21, 28, 35, 42, 49, 56]  # each after 10.5 s


def test_a_first_signal_sets_the_flag_a_second_interrupts_and_the_handlers_come_back():
    before = signal.getsignal(signal.SIGTERM)
    with R.stop_flag() as flag:
        os.kill(os.getpid(), signal.SIGTERM)
        assert flag["stop"]
        with pytest.raises(KeyboardInterrupt, match="second SIGINT"):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) is before
    with pytest.raises(R.Interrupted, match="stopped by SIGTERM; rerun"):
        with R.stop_flag(at_once="rerun"):
            os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is before


# ------------------------------------------------------------------------------------------ reproduce uses it
def test_reproduce_locks_its_data_folder_and_a_signal_leaves_it_unmarked(tmp_path, monkeypatch):
    """The experiment's run and plot are stand-ins (the real ones take seconds), and so is the figure style."""
    import matplotlib.pyplot as plt

    from banditlab import plots

    from banditlab import reproduce

    monkeypatch.setattr(plots, "style", lambda seaborn: plt)
    monkeypatch.setattr(plots, "save", lambda fig, out: [])

    exp = reproduce.EXPERIMENTS["rec-counterexample"]
    stop = [True]

    def run(cfg, data, tick):
        (data / "steps.parquet").write_text("half")
        if stop[0]:
            os.kill(os.getpid(), signal.SIGTERM)

    fake = exp.__class__(exp.config, run, lambda cfg, data, out, plt_: plt.figure(), exp.title, 0)
    monkeypatch.setattr(reproduce, "EXPERIMENTS", {**reproduce.EXPERIMENTS, "rec-counterexample": fake})
    go = lambda: reproduce.reproduce(["rec-counterexample"], tmp_path, progress=False, echo=lambda *_: None)
    data = tmp_path / "data" / exp.config
    with pytest.raises(R.Interrupted, match="stopped by SIGTERM; this experiment's data are incomplete"):
        go()
    assert not R.is_complete(data)
    held = R.lock(data)
    with pytest.raises(UsageError, match="--figures: .* is in use by another run"):
        go()
    held.close()
    stop[0] = False
    go()
    assert R.is_complete(data)


def test_a_signal_the_process_ignores_from_its_start_stays_ignored():
    """A script's background job starts with SIGINT ignored; the run keeps it so, from its first second to its
    last, and still stops on SIGTERM."""
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with R.stop_flag() as flag:
            os.kill(os.getpid(), signal.SIGINT)
            assert not flag["stop"]
            os.kill(os.getpid(), signal.SIGTERM)
            assert flag["stop"]
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)
