import contextlib
import io
import os
import signal

import pytest

# tests never touch the network: every hub lookup must fail fast
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

# The signal tests interrupt their processes with SIGINT. A suite started as a script's background job (`cmd &`,
# nohup) begins with SIGINT ignored, and its children would inherit that: give the suite Python's own handler, which
# children start from as the default action, so the tests mean the same however the suite was launched.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def run_cli(args) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of one in-process `banditlab ARGS...` call; arguments may be paths or numbers.

    Output is captured with `contextlib.redirect_*`, not pytest's `capsys`, so the helper also works inside
    hypothesis tests (whose examples share one function-scoped fixture). `main` always ends in `sys.exit`.
    Test files take it with `from conftest import run_cli`."""
    from banditlab.cli.app import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as e:
            code = e.code
    return code, out.getvalue(), err.getvalue()


# Subprocess tests wait for events (a file appearing, a line printed, the process ending), never for fixed seconds.
# Their deadlines only stop a test that hangs: PATIENCE_S allows a machine ten times slower than an idle 2-core one
# (the slowest subprocess here, a 6000-step lagged sweep, takes about 12 s of CPU idle and 30 s of wall clock with
# the other core busy).
PATIENCE_S = float(os.environ.get("BANDITLAB_TEST_PATIENCE_S", "900"))


def wait_until(condition, proc=None, what: str = "the event", timeout: float = PATIENCE_S, every: float = 0.02):
    """Poll `condition()` until it is true. Fails, naming `what`, if `proc` (a Popen) ends first or the deadline
    passes: a test that needs a process caught mid-run must not carry on against a finished one."""
    import time

    import pytest

    end = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the process ended (exit {proc.returncode}) before {what}")
        if time.monotonic() > end:
            pytest.fail(f"no {what} within {timeout:g} s")
        time.sleep(every)


@pytest.fixture
def saved(monkeypatch):
    """The matplotlib figures saved while the test runs, in order, each once."""
    import matplotlib.figure

    figures = []
    savefig = matplotlib.figure.Figure.savefig

    def recording(fig, *args, **kwargs):
        if fig not in figures:
            figures.append(fig)
        return savefig(fig, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", recording)
    return figures
