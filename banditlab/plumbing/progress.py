"""Progress and quiet for long work: the one progress helper, used by every long loop (sweep, reproduce, llm).

    with Bar("evaluating", total=n_tokens) as bar:   # done/total, elapsed, ETA, on stderr
        bar.advance(k)

Where progress goes (`mode`):
  * on a terminal (stderr is one): a bar drawn in place (rich), redrawn at most every REDRAW seconds;
  * elsewhere (a pipe, a log file, a batch job): one plain line on stderr every BANDITLAB_PROGRESS_SECONDS
    seconds (default 30), `progress: LABEL DONE/TOTAL UNIT  M:SS elapsed, ETA M:SS  INFO` (H:MM:SS from an
    hour on), one part per open bar, written by a timer thread, so a step longer than the interval still shows
    that the run is alive;
  * BANDITLAB_PROGRESS=0: nothing; BANDITLAB_PROGRESS=1: the drawn bar even off a terminal (Jupyter);
  * a command's --no-progress (a bar made with show=False): nothing.
`check_settings` refuses other values of the two variables, in one line, before a command starts.

ETA = elapsed / done · (total − done), counted from the bar's start (a resumed run counts from where it resumed),
so it is shown from the first update on (rich's own estimate averages over a 30-s window and shows -:--:-- when
updates are further apart, as training steps are). A loop may update a bar at every step.

`silence_third_party()` keeps third-party progress bars and warnings (transformers' "Loading weights" bar, FutureWarnings)
out of the output; `--verbose` or BANDITLAB_DEBUG=1 lets them through.
"""

from __future__ import annotations

import os
import sys
import threading
import time

from banditlab.errors import UsageError

SECONDS = 30.0  # default interval between two plain progress lines (BANDITLAB_PROGRESS_SECONDS)


def check_settings() -> None:
    """BANDITLAB_PROGRESS is 0, 1 or unset; BANDITLAB_PROGRESS_SECONDS a number of seconds > 0 (UsageError)."""
    forced = os.environ.get("BANDITLAB_PROGRESS", "")
    if forced not in ("", "0", "1"):
        raise UsageError(f"BANDITLAB_PROGRESS: expected 0 (no progress) or 1 (the drawn bar), got {forced!r}")
    interval()


def interval() -> float:
    """Seconds between two plain progress lines: BANDITLAB_PROGRESS_SECONDS, default SECONDS."""
    text = os.environ.get("BANDITLAB_PROGRESS_SECONDS", "")
    try:
        seconds = float(text) if text else SECONDS
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds < float("inf"):
        raise UsageError(f"BANDITLAB_PROGRESS_SECONDS: expected a number of seconds > 0, got {text!r}")
    return seconds


def mode(show: bool | None = True) -> str | None:
    """How a bar shows: "bar" (drawn in place), "lines" (a plain line every `interval()` seconds) or None."""
    forced = os.environ.get("BANDITLAB_PROGRESS", "")
    if show is False or forced == "0":
        return None
    return "bar" if forced == "1" or sys.stderr.isatty() else "lines"


def verbose() -> bool:
    return os.environ.get("BANDITLAB_DEBUG", "") not in ("", "0")


def clock(seconds: float) -> str:
    """'m:ss', or 'h:mm:ss' from an hour on."""
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def eta_text(elapsed: float, done: float, total: float) -> str:
    """Time left at the average rate so far ('m:ss' or 'h:mm:ss'); '?' before the first unit of work is done."""
    if done <= 0 or total is None:
        return "?"
    return clock(max(0.0, elapsed / done * (total - done)))


def count(x: float) -> str:
    """A count as people write it: 100000000, not 1e+08; 0.5 stays 0.5."""
    return str(int(x)) if float(x).is_integer() else f"{x:.4g}"


REDRAW = 0.1  # seconds between two redraws of a drawn bar's text
_LIVE: list = []  # the one rich display shared by nested bars (rich allows one live display at a time)
_LINES: list = []  # the one timer that writes the plain lines of every open bar


class Bar:
    """One progress line with count, elapsed time and ETA: drawn in place, or a plain line every few seconds
    (`mode`); a no-op where progress is off. Bars opened while another is open (an evaluation inside training)
    show as a second line of the same display, or a second part of the same plain line."""

    def __init__(self, label: str, total: float, show: bool | None = None, start: float = 0, unit: str = ""):
        self.label, self.total, self.done, self.start, self.unit = label, total, start, start, unit
        self.mode = mode(show)
        self.info = ""
        self._task = None

    def __enter__(self) -> "Bar":
        self._t0 = time.perf_counter()
        if self.mode == "bar":
            from rich.progress import BarColumn, Progress, TextColumn

            if not _LIVE:
                live = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[text]}"),
                                transient=True, refresh_per_second=4)
                live.start()
                _LIVE.append(live)
            self._drawn = -REDRAW
            self._task = _LIVE[0].add_task(self.label, total=self.total, completed=self.done, text="")
            self.update(self.done)
        elif self.mode == "lines":
            if not _LINES:
                _LINES.append(_Lines(interval()))
            _LINES[0].bars.append(self)
        return self

    def advance(self, k: float = 1, info: str | None = None) -> None:
        self.update(self.done + k, info)

    def text(self) -> str:
        """'DONE/TOTAL UNIT  M:SS elapsed, ETA M:SS  INFO'."""
        elapsed = time.perf_counter() - self._t0
        unit = f" {self.unit}" if self.unit else ""
        return (f"{count(self.done)}/{count(self.total)}{unit}  {clock(elapsed)} elapsed, "
                f"ETA {eta_text(elapsed, self.done - self.start, self.total - self.start)}"
                + (f"  {self.info}" if self.info else ""))

    def update(self, done: float, info: str | None = None) -> None:
        self.done = min(done, self.total)
        if info is not None:
            self.info = info
        if self._task is not None:
            elapsed = time.perf_counter() - self._t0
            if elapsed - self._drawn < REDRAW and self.done < self.total and info is None:
                return
            self._drawn = elapsed
            _LIVE[0].update(self._task, completed=self.done, total=self.total, text=self.text())

    def __exit__(self, *exc) -> None:
        if self._task is not None:
            live = _LIVE[0]
            live.remove_task(self._task)
            self._task = None
            if not live.tasks:
                live.stop()
                _LIVE.clear()
        elif self.mode == "lines" and _LINES and self in _LINES[0].bars:
            _LINES[0].bars.remove(self)
            if not _LINES[0].bars:
                _LINES.pop().close()


class _Lines:
    """A daemon thread that writes `progress: ...` on stderr every `seconds`, one part per open bar, until closed."""

    def __init__(self, seconds: float):
        self.bars: list[Bar] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(seconds,), name="banditlab-progress", daemon=True)
        self._thread.start()

    def _run(self, seconds: float) -> None:
        while not self._stop.wait(seconds):
            parts = [f"{b.label} {b.text()}" for b in list(self.bars)]
            try:
                print("progress: " + " | ".join(parts), file=sys.stderr, flush=True)
            except (OSError, ValueError):  # stderr closed or its reader gone: stop writing
                return

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def silence_third_party() -> None:
    """Keep third-party bars and warnings (transformers logging and its tqdm bars, Python warnings such as
    FutureWarning) out of the output for the rest of the process, unless BANDITLAB_DEBUG=1 asks for them."""
    if verbose():
        return
    import warnings

    warnings.simplefilter("ignore")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TQDM_DISABLE", "1")  # read by tqdm when it is first imported
    import importlib.util

    if importlib.util.find_spec("transformers") is not None:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
