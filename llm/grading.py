"""Grading completions against gold answers with math-verify.

extract_answer   the last \\boxed{...}; else the text after the last '####'; else the last number in the text
grade            math-verify's parse + verify of the extracted answer against the gold, both wrapped in \\boxed{}
                 True / False, or None when the gold itself cannot be parsed (reported and skipped, never scored)
Grader           rewards for a batch: +1/−1 ("pm1") or 1/0 ("01"); None for skipped golds.

math-verify enforces its timeouts with signal.alarm, which only works on the main thread. The Grader grades
in-process when called from the main thread, and otherwise in a single spawned worker process (whose main thread
can use signals), with an overall deadline; a batch that still times out is scored wrong, never crashes the run.
Completions are cut to their last MAX_CHARS characters before parsing, so huge or degenerate outputs stay cheap.
Time bounds: 1 s per parse and per comparison (a bomb such as 10^{10^{10}} costs 1.0–1.6 s), and 5 s + 0.25 s per
completion for a batch, after which the remaining completions are scored wrong.
"""

from __future__ import annotations

import re
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from concurrent.futures import TimeoutError as FutureTimeout
from functools import lru_cache

from .data import last_boxed

import logging

logging.getLogger("math_verify").setLevel(logging.CRITICAL)  # its timeouts are expected here: scored, not logged

MAX_CHARS = 4000
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?")
REWARDS = {"pm1": (1.0, -1.0), "01": (1.0, 0.0)}


def extract_answer(completion: str) -> str | None:
    """The model's final answer as a string, or None if it gave none."""
    text = (completion or "")[-MAX_CHARS:]
    boxed = last_boxed(text)
    if boxed is not None and boxed.strip():
        return boxed.strip()
    if "####" in text:
        tail = text.rsplit("####", 1)[1].strip().splitlines()
        if tail and tail[0].strip():
            return tail[0].strip().replace(",", "")
    nums = NUMBER.findall(text)
    return nums[-1].replace(",", "").rstrip(".") if nums else None


NOT_ANSWERS = {"", "none", "null", "nan", "n/a", "?"}


@lru_cache(maxsize=4096)
def _parse_gold(gold: str, timeout: int):
    """math-verify's parse of a gold answer, or () when it is not a mathematical object: math-verify falls back
    to the bare string for text it cannot parse (`\\frac{1}{`, `((((`), and a string-only gold would then
    "match" any output that repeats it, so it is skipped and counted, never graded."""
    from math_verify import parse

    if gold.strip().lower() in NOT_ANSWERS:
        return ()
    try:
        parsed = tuple(parse(f"\\boxed{{{gold}}}", parsing_timeout=timeout))
    except Exception:
        return ()
    return parsed if any(not isinstance(x, str) for x in parsed) else ()


def grade(completion: str, gold: str, timeout: int | None = 5) -> bool | None:
    """Is the completion's final answer equivalent to the gold? None if the gold cannot be parsed.
    Call from a main thread when timeout is not None (math-verify's timeouts use signals)."""
    from math_verify import parse, verify

    g = list(_parse_gold(str(gold), timeout))
    if not g:
        return None
    ans = extract_answer(completion)
    if ans is None:
        return False
    try:
        p = parse(f"\\boxed{{{ans[:MAX_CHARS]}}}", parsing_timeout=timeout)
        return bool(p) and bool(verify(g, p, timeout_seconds=timeout))
    except Exception:  # math-verify raises on pathological inputs: that answer is wrong, the run goes on
        return False


def _grade_many(pairs: list[tuple[str, str]], timeout: int | None, budget: float | None = None
                ) -> list[bool | None]:
    """Grade pairs in order; once `budget` seconds are spent, the rest are scored wrong (never hang a step)."""
    import time

    start, out = time.monotonic(), []
    for c, g in pairs:
        if budget is not None and time.monotonic() - start > budget:
            out.append(False if _parse_gold(str(g), timeout or 1) else None)
            continue
        out.append(grade(c, g, timeout))
    return out


class Grader:
    """Batch grading into rewards, safe from any thread."""

    def __init__(self, reward: str = "pm1", timeout: int = 1, budget_per_item: float = 0.25):
        if reward not in REWARDS:
            raise ValueError(f"--reward: expected one of {', '.join(REWARDS)}, got {reward!r}")
        self.reward, self.timeout, self.budget_per_item = reward, timeout, budget_per_item
        self._pool: ProcessPoolExecutor | None = None

    def correct(self, completions: list[str], golds: list[str]) -> list[bool | None]:
        pairs = list(zip(completions, golds))
        budget = 5 + self.budget_per_item * len(pairs)  # seconds for the whole batch
        if threading.current_thread() is threading.main_thread():
            return _grade_many(pairs, self.timeout, budget)
        if self._pool is None:
            import multiprocessing as mp

            self._pool = ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"))
        try:
            fut = self._pool.submit(_grade_many, pairs, self.timeout, budget)
            return fut.result(timeout=60 + 2 * self.timeout * len(pairs))
        except FutureTimeout:
            return [False] * len(pairs)
        except BrokenProcessPool:  # the worker could not start or died: grade here, without signal timeouts
            self._pool = None
            return _grade_many(pairs, None)

    def __call__(self, completions: list[str], golds: list[str]) -> list[float | None]:
        hi, lo = REWARDS[self.reward]
        return [None if c is None else (hi if c else lo) for c in self.correct(completions, golds)]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None
