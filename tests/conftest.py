import contextlib
import io
import os

# tests never touch the network: every hub lookup must fail fast
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


def run_cli(args) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of one in-process `banditlab ARGS...` call; arguments may be paths or numbers.

    Output is captured with `contextlib.redirect_*`, not pytest's `capsys`, so the helper also works inside
    hypothesis tests (whose examples share one function-scoped fixture). `main` always ends in `sys.exit`.
    Test files take it with `from conftest import run_cli`."""
    from banditlab.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as e:
            code = e.code
    return code, out.getvalue(), err.getvalue()
