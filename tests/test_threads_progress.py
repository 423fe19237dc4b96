"""CPU threads (banditlab.plumbing.threads), plain progress lines off a terminal and the resume line (banditlab.plumbing.progress),
`banditlab --version` and `reproduce --plot-only`."""

import os
import re
import signal
import subprocess
import sys
import threading
from importlib.metadata import version
from pathlib import Path

import pytest
import torch
from conftest import PATIENCE_S, run_cli, wait_until

import banditlab.cli.app
import banditlab.plumbing.threads as T
from banditlab.plumbing import progress

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------------ threads
@pytest.fixture
def restore_threads(monkeypatch):
    """Put torch's threads and the thread variables back after a test that sets them."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.setenv(var, os.environ.get(var, "1"))
    before = torch.get_num_threads()
    yield
    T.use_threads(before)


def test_the_rule_counts_the_cores_this_process_may_use(monkeypatch):
    """8 cores of affinity: bandit work below 4M entries 1 thread, above it 8; a language model 4; two
    data-parallel processes on the machine share the cores: 4 above 4M, 2 for a language model."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert [T.rule(0), T.rule(T.SMALL - 1), T.rule(T.SMALL), T.rule(None)] == [1, 1, 8, 4]
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert [T.rule(0), T.rule(T.SMALL), T.rule(None)] == [1, 4, 2]
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert T.rule(None) == 1  # at least one


def test_use_threads_sets_torch_blas_and_the_variables_children_read(restore_threads):
    import numpy as np

    np.ones((64, 64)) @ np.ones((64, 64))  # numpy's BLAS is loaded
    assert T.use_threads(2) == 2
    assert torch.get_num_threads() == 2
    assert all(os.environ[v] == "2" for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"))
    assert set(T.blas_threads()) <= {2}
    assert T.use_threads(0, elements=1000) == 1  # the rule: small work, one thread
    assert torch.get_num_threads() == 1 and set(T.blas_threads()) <= {1}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="OpenBLAS is found through /proc/self/maps")
def test_numpy_openblas_is_resized_at_run_time(restore_threads):
    """numpy's bundled OpenBLAS sizes its pool when it loads; the helper resizes it afterwards."""
    import numpy as np

    np.ones((64, 64)) @ np.ones((64, 64))
    if not T.blas_threads():
        pytest.skip("this numpy is not linked with OpenBLAS")
    T.use_threads(3)
    assert T.blas_threads() == [3] * len(T.blas_threads())


def test_a_library_loaded_later_starts_with_the_count(tmp_path):
    """torch imported after the helper ran (commands import it lazily) starts with the helper's count, not with
    the count the process's environment gave (torch starts with at most one thread per core)."""
    code = ("from banditlab.plumbing.threads import use_threads; use_threads(1); import torch; "
            "print(torch.get_num_threads())")
    env = {**os.environ, "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path,
                         timeout=PATIENCE_S)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1"]


class Called(BaseException):
    """Raised by the stand-in for use_threads: the command asked for its threads (and is stopped there)."""


COMMANDS = {  # every command that computes, with its arguments (TMP: a fresh folder)
    "sweep": ["sweep", "--out", "TMP/s"],
    "merge": ["merge", "TMP", "TMP", "--out", "TMP/m"],
    "theory": ["theory"],
    "plot": ["plot", "TMP"],
    "reproduce": ["reproduce", "rec-counterexample", "--figures", "TMP/f"],
    "demo": ["demo", "--html", "TMP/d.html"],
    "llm train": ["llm", "train", "--out", "TMP/t"],
    "llm eval": ["llm", "eval", "--n", "1"],
    "llm generate": ["llm", "generate", "hi"],
    "llm bench": ["llm", "bench", "--json", "TMP/b.json"],
}


@pytest.mark.parametrize("name", COMMANDS)
@pytest.mark.parametrize("given", [None, 3])
def test_every_computing_command_sets_its_threads(name, given, tmp_path, monkeypatch):
    """Each command calls the one helper with its --threads (0 when not given: the rule), for bandit-sized work
    (an entry count) or a language model's (None), before it computes."""
    calls = []

    def stand_in(requested=0, elements=0):
        calls.append((requested, elements))
        raise Called

    if name.startswith("llm"):
        pytest.importorskip("transformers")
        import banditlab_llm.cli
        import banditlab_llm.train

        monkeypatch.setattr(banditlab_llm.cli, "use_threads", stand_in)
        monkeypatch.setattr(banditlab_llm.train, "use_threads", stand_in)
    monkeypatch.setattr(banditlab.cli.app, "use_threads", stand_in)
    monkeypatch.setattr(T, "use_threads", stand_in)
    args = [str(a).replace("TMP", str(tmp_path)) for a in COMMANDS[name]]
    with pytest.raises(Called):
        run_cli(args + ([] if given is None else ["--threads", given]))
    requested, elements = calls[0]
    assert requested == (given or 0)
    assert (elements is None) == name.startswith("llm")


@pytest.mark.parametrize("args", [["demo", "--threads", "-1"], ["plot", ".", "--threads", "2000"],
                                  ["llm", "bench", "--threads", "5000"]])
def test_a_thread_count_out_of_range_is_one_line(args):
    code, out, err = run_cli(args)
    assert code == 2 and err.count("\n") == 1 and "--threads" in err


# ------------------------------------------------------------------------------------------------ progress
def test_where_progress_goes(monkeypatch):
    """Off a terminal: plain lines; BANDITLAB_PROGRESS=1 the drawn bar, =0 nothing; --no-progress nothing."""
    monkeypatch.setattr(sys, "stderr", _Sink())
    monkeypatch.delenv("BANDITLAB_PROGRESS", raising=False)
    assert [progress.mode(True), progress.mode(None), progress.mode(False)] == ["lines", "lines", None]
    monkeypatch.setenv("BANDITLAB_PROGRESS", "1")
    assert progress.mode(True) == "bar" and progress.mode(False) is None
    monkeypatch.setenv("BANDITLAB_PROGRESS", "0")
    assert progress.mode(True) is None


class _Sink:
    """A stderr that is not a terminal."""

    def __init__(self):
        self.text = ""

    def write(self, s):
        self.text += s
        return len(s)

    def flush(self):
        pass

    def isatty(self):
        return False


def test_off_a_terminal_open_bars_print_a_line_every_interval(monkeypatch):
    sink = _Sink()
    monkeypatch.setattr(sys, "stderr", sink)
    monkeypatch.delenv("BANDITLAB_PROGRESS", raising=False)
    monkeypatch.setenv("BANDITLAB_PROGRESS_SECONDS", "0.05")
    with progress.Bar("train", total=50, start=10, unit="steps") as bar:
        bar.update(12, "reward +0.25")
        with progress.Bar("eval", total=4) as inner:
            inner.advance()
            wait_until(lambda: "| eval" in sink.text, what="a progress line of both bars")
            line = next(x for x in sink.text.splitlines() if "| eval" in x)
        thread = progress._LINES[0]._thread
    assert re.fullmatch(r"progress: train 12/50 steps  \d+:\d\d elapsed, ETA \d+:\d\d  reward \+0\.25 \| "
                        r"eval 1/4  \d+:\d\d elapsed, ETA \d+:\d\d", line), line
    assert not progress._LINES and not thread.is_alive()  # the last bar closed stops the timer


@pytest.mark.parametrize("var, value", [("BANDITLAB_PROGRESS_SECONDS", "0"), ("BANDITLAB_PROGRESS_SECONDS", "soon"),
                                        ("BANDITLAB_PROGRESS_SECONDS", "inf"), ("BANDITLAB_PROGRESS", "yes")])
def test_a_bad_progress_setting_is_one_line_naming_it(var, value, monkeypatch):
    monkeypatch.setenv(var, value)
    code, out, err = run_cli(["theory"])
    assert code == 2 and out == "" and err.count("\n") == 1 and var in err


class _Lines:
    """The lines a subprocess writes on stdout and stderr, read as they come, each tagged with its stream."""

    def __init__(self, proc):
        self.lines = []
        for stream, tag in ((proc.stdout, "out"), (proc.stderr, "err")):
            threading.Thread(target=self._read, args=(stream, tag), daemon=True).start()

    def _read(self, stream, tag):
        for line in stream:
            self.lines.append((tag, line.rstrip("\n")))

    def find(self, tag, pattern):
        return next((m for t, line in list(self.lines) if t == tag for m in [re.search(pattern, line)] if m), None)


def _start(args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "BANDITLAB_PROGRESS_SECONDS": "0.2"}
    env.pop("BANDITLAB_PROGRESS", None)
    proc = subprocess.Popen([sys.executable, "-m", "banditlab", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return proc, _Lines(proc)


def _interrupt(proc, lines, said):
    """SIGINT, then the step the run says it stopped at (`said`: a pattern with one group)."""
    proc.send_signal(signal.SIGINT)
    assert proc.wait(PATIENCE_S) == 130
    wait_until(lambda: lines.find("err", said), what="the interruption line", timeout=PATIENCE_S)
    return int(lines.find("err", said).group(1))


def _run_interrupt_resume(args, progress_line, said, resume_args, tmp_path):
    """Start a long run with stdout and stderr on pipes, wait for its progress line, interrupt it, run it again
    and wait for 'resumed at step K' with the K it stopped at."""
    proc, lines = _start(args, tmp_path)
    try:
        wait_until(lambda: lines.find("err", progress_line), proc, "a progress line on a pipe")
        stopped = _interrupt(proc, lines, said)
    finally:
        proc.kill()
        proc.wait()
    proc, lines = _start(args + resume_args, tmp_path)
    try:
        wait_until(lambda: lines.find("out", r"resumed at step (\d+)/"), proc, "the resume line")
        assert int(lines.find("out", r"resumed at step (\d+)/").group(1)) == stopped
        wait_until(lambda: lines.find("err", progress_line), proc, "a progress line after resuming")
        _interrupt(proc, lines, said)
    finally:
        proc.kill()
        proc.wait()
    return stopped


@pytest.mark.slow
def test_a_sweep_on_a_pipe_prints_progress_and_says_where_it_resumed(tmp_path):
    args = ["sweep", "--mode", "exact", "--rewards", "0,0.8,1", "--mu", "0.3,0.6,0.1", "--baseline", "-0.1",
            "--steps", str(10**8), "--out", str(tmp_path / "run")]
    stopped = _run_interrupt_resume(args, r"^progress: asymre exact 1 runs \d+/100000000 steps  \d+:\d\d elapsed",
                                    r"interrupted at step (\d+)/", [], tmp_path)
    assert stopped > 0


@pytest.mark.slow
def test_llm_train_on_a_pipe_prints_progress_and_says_where_it_resumed(tmp_path):
    pytest.importorskip("transformers")
    args = ["llm", "train", "--model", "tiny", "--steps", "100000", "--eval-n", "0", "--group-size", "2",
            "--prompts-per-step", "1", "--max-new-tokens", "4", "--device", "cpu", "--out", str(tmp_path / "run")]
    _run_interrupt_resume(args, r"^progress: train \d+/100000 steps", r"interrupted after step (\d+)/", ["--resume"],
                          tmp_path)


# ------------------------------------------------------------------------------------------------ version, plot-only
def test_version_prints_the_package_version():
    code, out, err = run_cli(["--version"])
    assert (code, out, err) == (0, f"banditlab {version('banditlab')}\n", "")
    assert re.fullmatch(r"banditlab \d+\.\d+\S*\n", out)


def test_plot_only_says_it_only_plots(tmp_path):
    """--plot-only redraws from FIGURES/data/ID and says that it runs nothing; its help says so too."""
    import shutil

    data = ROOT / "figures" / "data" / "rec-counterexample"
    if not (data / "DONE").exists():
        pytest.skip("no committed data for rec-counterexample")
    shutil.copytree(data, tmp_path / "data" / "rec-counterexample")
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "data").rglob("*")}
    code, out, err = run_cli(["reproduce", "rec-counterexample", "--plot-only", "--figures", tmp_path])
    assert code == 0, err
    assert "--plot-only: redrawing from" in out and "running nothing" in out
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "data").rglob("*")} == before  # the data untouched
    assert (tmp_path / "rec-counterexample.png").exists()
    code, out, _ = run_cli(["reproduce", "--help"])
    assert "only plot" in " ".join(out.split())
    code, out, err = run_cli(["reproduce", "rec-counterexample", "--plot-only", "--force", "--figures", tmp_path])
    assert code == 2 and err.count("\n") == 1 and "--plot-only" in err
