"""Progress and quiet for long work: the one progress helper, used by every long loop (sweep, reproduce, llm).

    with Bar("evaluating", total=n_tokens) as bar:   # a line on stderr: done/total, elapsed, ETA
        bar.advance(k)

ETA = elapsed / done · (total − done), counted from the bar's start, so it is shown from the first update on
(rich's own estimate averages over a 30-s window and shows -:--:-- when updates are further apart, as training
steps are). The bar is drawn only where stderr is a terminal; BANDITLAB_PROGRESS=0 or 1 overrides that. Updates
reach the display at most every REDRAW seconds (and at the end), so a loop may update it at every step.

`silence_third_party()` keeps third-party progress bars and warnings (transformers' "Loading weights" bar, FutureWarnings)
out of the output; `--verbose` or BANDITLAB_DEBUG=1 lets them through.
"""

from __future__ import annotations

import os
import sys
import time


def enabled() -> bool:
    """Draw progress bars? BANDITLAB_PROGRESS=0/1 decides; otherwise only on a terminal."""
    forced = os.environ.get("BANDITLAB_PROGRESS", "")
    return forced == "1" if forced in ("0", "1") else sys.stderr.isatty()


def verbose() -> bool:
    return os.environ.get("BANDITLAB_DEBUG", "") not in ("", "0")


def eta_text(elapsed: float, done: float, total: float) -> str:
    """'m:ss' left at the average rate so far; '?' before the first unit of work is done."""
    if done <= 0 or total is None:
        return "?"
    left = max(0.0, elapsed / done * (total - done))
    return f"{int(left // 60)}:{int(left % 60):02d}"


REDRAW = 0.1  # seconds between two redraws of a bar's text
_LIVE: list = []  # the one rich display shared by nested bars (rich allows one live display at a time)


class Bar:
    """One progress line (rich) with count, elapsed time and ETA; a no-op where progress is off. Bars opened
    while another is open (an evaluation inside training) show as a second line of the same display."""

    def __init__(self, label: str, total: float, show: bool | None = None, start: float = 0, unit: str = ""):
        self.label, self.total, self.done, self.start, self.unit = label, total, start, start, unit
        self.show = enabled() if show is None else show
        self.info = ""
        self._task = None

    def __enter__(self) -> "Bar":
        if self.show:
            from rich.progress import BarColumn, Progress, TextColumn

            if not _LIVE:
                live = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[text]}"),
                                transient=True, refresh_per_second=4)
                live.start()
                _LIVE.append(live)
            self._t0 = time.perf_counter()
            self._drawn = -REDRAW
            self._task = _LIVE[0].add_task(self.label, total=self.total, completed=self.done, text="")
            self.update(self.done)
        return self

    def advance(self, k: float = 1, info: str | None = None) -> None:
        self.update(self.done + k, info)

    def update(self, done: float, info: str | None = None) -> None:
        self.done = min(done, self.total)
        if info is not None:
            self.info = info
        if self._task is not None:
            elapsed = time.perf_counter() - self._t0
            if elapsed - self._drawn < REDRAW and self.done < self.total and info is None:
                return
            self._drawn = elapsed
            unit = f" {self.unit}" if self.unit else ""
            text = (f"{self.done:g}/{self.total:g}{unit}  {int(elapsed // 60)}:{int(elapsed % 60):02d} elapsed, "
                    f"ETA {eta_text(elapsed, self.done - self.start, self.total - self.start)}"
                    + (f"  {self.info}" if self.info else ""))
            _LIVE[0].update(self._task, completed=self.done, total=self.total, text=text)

    def __exit__(self, *exc) -> None:
        if self._task is not None:
            live = _LIVE[0]
            live.remove_task(self._task)
            self._task = None
            if not live.tasks:
                live.stop()
                _LIVE.clear()


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
