"""Screening a problem set with the starting policy π₀: pass@k counts and the DAPO-style learnable pool.

    successes_i = #{j ≤ k : completion j of problem i, sampled from π₀ at temperature T, is graded correct}
    pool = {i : 0 < successes_i < k}

A problem that π₀ always or never solves gives a group of equal rewards, hence a zero group-mean advantage and
no gradient for GRPO or AsymRE (DAPO, Yu et al. 2025, §3.2 "dynamic sampling"); the pool keeps the others.
`screen` writes one JSON line per problem as soon as its batch is graded and skips problems already in the file,
so a time-boxed screening stops cleanly and the next call continues it. Deliberately left out: re-screening
during training (DAPO filters every batch online; here the pool is fixed once from π₀).
"""

from __future__ import annotations

import json
import time
from pathlib import Path


def read_counts(path: Path) -> dict[int, int]:
    """{problem index: successes} from a screening file (`safeio.read_json_lines`: a last line cut short by a
    killed call is dropped, damage elsewhere refused naming the line)."""
    from banditlab.plumbing.safeio import read_json_lines

    if not path.exists():
        return {}
    return {int(row["index"]): int(row["successes"]) for row in read_json_lines(path, "screening file", cut_last=True)}


def screen(backend, tok, grader, problems, path: Path, k: int, max_new_tokens: int, temperature: float = 1.0,
           batch_problems: int = 32, seed: int = 0, deadline: float = float("inf"), echo=print,
           on_batch=None) -> dict[int, int]:
    """Count π₀'s successes in k samples for each problem, in index order, until all are done or `deadline`
    (a time.time() value) passes; appends to `path` and returns every count in it. `on_batch(idx, rollouts,
    correct)`, when given, receives each batch's samples (problem-major, k per problem) after its lines are
    written: the caller keeps them as training data."""
    from .data import build_prompt

    done = read_counts(path)
    todo = [i for i in range(len(problems)) if i not in done]
    path.parent.mkdir(parents=True, exist_ok=True)
    t0, n0 = time.time(), len(done)
    for s in range(0, len(todo), batch_problems):
        if time.time() >= deadline:
            break
        idx = todo[s: s + batch_problems]
        r = backend.generate([build_prompt(tok, problems[i].question) for i in idx], k, max_new_tokens, temperature,
                             seed=seed * 1_000_003 + idx[0])
        ok = grader.correct(r.texts, [problems[i].answer for i in idx for _ in range(k)])
        with path.open("a") as f:
            for j, i in enumerate(idx):
                done[i] = sum(bool(x) for x in ok[j * k: (j + 1) * k])
                f.write(json.dumps({"index": i, "successes": done[i], "k": k}) + "\n")
        if on_batch is not None:
            on_batch(idx, r, ok)
        echo(f"screened {len(done)}/{len(problems)} {path.stem} problems "
             f"({(len(done) - n0) / max(time.time() - t0, 1e-9):.2f}/s)")
    return done


def pool_of(counts: dict[int, int], k: int, keep: str = "mixed") -> dict:
    """The pool of one split: indices with 0 < successes < k ("mixed"), or every screened index ("all", for a
    rehearsal with a model that solves nothing), each with π₀'s pass rate successes / k."""
    if keep not in ("mixed", "all"):
        raise ValueError(f"pool keep rule: expected mixed or all, got {keep!r}")
    idx = sorted(i for i, s in counts.items() if keep == "all" or 0 < s < k)
    rates = [counts[i] / k for i in idx]
    every = [s / k for s in counts.values()]
    return {"screened": len(counts), "index": idx, "pass_rate": rates,
            "mean_pass_rate_screened": sum(every) / len(every) if every else float("nan"),
            "mean_pass_rate_pool": sum(rates) / len(rates) if rates else float("nan"),
            "never": sum(s == 0 for s in counts.values()), "always": sum(s == k for s in counts.values())}
