"""Wall-clock time of the README's LLM command lines, two code trees side by side (alternating, same machine).

    python experiments/bench_llm_cli.py --before /path/to/other/checkout --rounds 2 [--busy] [--smollm2-steps 2]

Each round runs every command once with `--before` on PYTHONPATH and once with this checkout; `--busy` keeps one
other process spinning (`while True: pass`) for the whole measurement, as a second job on a laptop would. A run
longer than `--timeout` seconds is stopped and reported as '>TIMEOUT'. Only ratios taken in one run mean anything
on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def commands(smollm2_steps: int) -> dict[str, list[str]]:
    smol = ["--model", "smollm2", "--dataset", "gsm8k", "--data-path", "tests/data/gsm8k/train-sample.jsonl",
            "--test-path", "tests/data/gsm8k/test-sample.jsonl", "--algo", "asymre", "--baseline-offset", "-0.1",
            "--sync-interval", "4", "--steps", str(smollm2_steps), "--group-size", "4", "--prompts-per-step", "2",
            "--max-new-tokens", "64", "--eval-n", "8"]
    return {"tiny, 20 steps": ["--model", "tiny", "--steps", "20"],
            f"smollm2 README line, {smollm2_steps} steps": smol}


def timed(tree: str, args: list[str], timeout: float) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env.update(PYTHONPATH=os.pathsep.join([tree, str(Path(tree) / ".names")]), HF_HUB_OFFLINE="1")  # banditlab_llm
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        try:
            subprocess.run([sys.executable, "-m", "banditlab", "llm", "train", *args, "--out", f"{out}/run",
                            "--no-progress"], cwd=HERE, env=env, check=True, timeout=timeout,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return f">{timeout:.0f}"
        return f"{time.perf_counter() - t0:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, help="the other checkout (its root goes on PYTHONPATH)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--busy", action="store_true", help="one other busy process for the whole measurement")
    ap.add_argument("--smollm2-steps", type=int, default=2)
    ap.add_argument("--only", default="", help="run only commands whose name contains this")
    ap.add_argument("--timeout", type=float, default=600)
    a = ap.parse_args()
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if a.busy else None
    try:
        print(f"load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} cores, busy process: {a.busy}", flush=True)
        for name, args in commands(a.smollm2_steps).items():
            if a.only not in name:
                continue
            for r in range(a.rounds):
                before, after = timed(a.before, args, a.timeout), timed(str(HERE), args, a.timeout)
                print(f"{name} round {r + 1}: before {before} s, after {after} s "
                      f"(load {os.getloadavg()[0]:.1f})", flush=True)
    finally:
        if busy:
            busy.kill()


if __name__ == "__main__":
    main()
