"""The trend call: the GSM8K δV experiment (experiments/reproduce/llm-asymre-gsm8k.py) in one device call, under a
deadline, streamed into $OUT.

    bash experiments/gpu/gsm8k_trend_call.sh 480        # on the device, .gpu/b carried; 480 = the call's timeout_s
    python experiments/gpu/gsm8k_trend_call.py --deadline-at EPOCH [--out DIR] [--rehearse [--model M] [--steps N]
        [--problems N] [--full-test N]]

`--deadline-at` is the moment (time.time()) by which every file must be written: the shell wrapper computes it
from its own start and the call's timeout_s, less the seconds kept to end cleanly. Files in the output folder
(what the device returns, 6 files): log.txt, screen-train.jsonl, screen-test.jsonl, metrics.jsonl, summary.json
(machine, versions, commit, timings, pool, plan; `error` when the call failed) and table.md. Every one is written
as its data arrive, so a call cut off at any point returns what it finished.
`--rehearse` runs the same code at tiny sizes on the shipped GSM8K slices (tests/test_gpu_rehearsal.py).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kit  # noqa: E402  (gives the uninstalled checkout the import name banditlab_llm)

ROOT = Path(__file__).resolve().parents[2]
NAME = "llm-asymre-gsm8k"


def experiment_module():
    """experiments/reproduce/llm-asymre-gsm8k.py (a file name with hyphens: loaded by path)."""
    spec = importlib.util.spec_from_file_location("llm_asymre_gsm8k", ROOT / "experiments" / "reproduce" / f"{NAME}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def rehearsal_config(cfg: dict, model: str, steps: int, problems: int = 8, full_test: int = 0) -> dict:
    """The shipped config at CPU sizes: the shipped GSM8K slices (`problems` screened per split; π₀'s full-test
    pass over the first `full_test` test problems, 0: the whole slice), 2 methods × 2 seeds, k = 2, 8 new tokens,
    every screened problem kept (a small model on 8 tokens solves nothing, so a mixed pool would be empty)."""
    cfg = {**cfg, "seeds": [0, 1], "full_test_seconds": 1, "train_file": "tests/data/gsm8k/train-sample.jsonl",
           "test_file": "tests/data/gsm8k/test-sample.jsonl", "full_test_problems": full_test}
    cfg["screen"] = {**cfg["screen"], "k": 2, "batch_problems": 2, "max_problems": problems, "keep": "all",
                     "train_share": 0.5, "test_share": 0.2}
    cfg["train"] = {**cfg["train"], "model": model, "max_new_tokens": 8, "prompts_per_step": 2, "evals": 3,
                    "eval_n": 3, "gen_batch": 12, "max_steps": steps}
    cfg["methods"] = {k: v for k, v in cfg["methods"].items() if k in ("AsymRE δV = −0.1", "AsymRE δV = +0.1")}
    return cfg


def main(argv=None) -> int:
    kit.expose_llm_package()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deadline-at", type=float, default=None, help="time.time() by which every file is written")
    ap.add_argument("--deadline-s", type=float, default=None, help="or: seconds from now")
    ap.add_argument("--out", default=os.environ.get("OUT") or "runs/gsm8k-trend", help="the output folder ($OUT)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--rehearse", action="store_true", help="CPU sizes on the shipped GSM8K slices")
    ap.add_argument("--model", default="smollm2", help="with --rehearse: the model (tiny or smollm2)")
    ap.add_argument("--steps", type=int, default=3, help="with --rehearse: at most this many steps")
    ap.add_argument("--problems", type=int, default=8, help="with --rehearse: problems screened per split")
    ap.add_argument("--full-test", type=int, default=0,
                    help="with --rehearse: π₀'s full-test pass on this many test problems (0: the whole slice)")
    a = ap.parse_args(argv)
    if (a.deadline_at is None) == (a.deadline_s is None):
        print("gsm8k_trend_call: give one of --deadline-at and --deadline-s", file=sys.stderr)
        return 2
    deadline = a.deadline_at if a.deadline_at is not None else time.time() + a.deadline_s
    if deadline <= time.time() + 10:
        print(f"gsm8k_trend_call: the deadline is {deadline - time.time():.0f} s away: no time to run", file=sys.stderr)
        return 2
    from banditlab.errors import RunFailed, UsageError
    from banditlab.reproduce import load_config

    cfg = load_config(NAME)
    if a.rehearse:
        cfg = rehearsal_config(cfg, a.model, a.steps, a.problems, a.full_test)
    mod, out = experiment_module(), Path(a.out)
    try:
        mod.run_experiment(cfg, out, deadline, device=a.device, commit=kit.git_commit())
    except (UsageError, RunFailed) as err:
        return fail(out, f"{err}", 3)
    except Exception as err:  # the summary names any failure, so that the returned files say what happened
        import traceback

        traceback.print_exc()
        return fail(out, f"{type(err).__name__}: {' '.join(str(err).split())[:300]}", 1)
    return 0


def fail(out: Path, msg: str, code: int) -> int:
    print(f"gsm8k_trend_call: {msg}", file=sys.stderr)
    path = out / "summary.json"
    try:
        summary = json.loads(path.read_text()) if path.exists() else {}
    except ValueError:
        summary = {}
    path.write_text(json.dumps({**summary, "error": msg}, indent=1, default=str) + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
