"""Wall-clock and CPU time of the README's LLM command lines, optionally beside another code tree (alternating).

    python experiments/bench_llm_cli.py [--before /path/to/other/checkout] [--rounds 2] [--busy] [--smollm2-steps 8]

Each round runs every command once with this checkout (and once with `--before` on PYTHONPATH, when given);
`--busy` keeps one other process spinning (`while True: pass`) for the whole measurement, as a second job on a
laptop would. Reported per run: wall-clock seconds and the child's CPU seconds (user + system), which other
processes on a shared machine change far less than the wall clock; on an idle machine the LLM commands' one torch
thread makes the two close. A run longer than `--timeout` seconds is stopped and reported as '>TIMEOUT'. Only
ratios taken in one run mean anything on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import resource
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


def python_path(tree: str) -> str:
    """The tree's root, and its linked `banditlab_llm` folder when it has one (a checkout that is not installed)."""
    names = Path(tree) / ".names"
    return os.pathsep.join([tree, str(names)] if names.is_dir() else [tree])


def timed(tree: str, args: list[str], timeout: float) -> str:
    """'WALL s wall, CPU s CPU' of one `banditlab llm train` run of `tree`."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env.update(PYTHONPATH=python_path(tree), HF_HUB_OFFLINE="1")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        try:
            subprocess.run([sys.executable, "-m", "banditlab", "llm", "train", *args, "--out", f"{out}/run",
                            "--no-progress"], cwd=HERE, env=env, check=True, timeout=timeout,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return f">{timeout:.0f} s wall"
        wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return f"{wall:.1f} s wall, {cpu:.1f} s CPU"


def cli_options(args: list[str]) -> dict:
    """`llm train` flags of `commands` as TrainConfig fields: --data-path x → {"data_path": "x"}."""
    keys, values = args[0::2], args[1::2]
    return {k.lstrip("-").replace("-", "_"): v for k, v in zip(keys, values)}


def number(text: str):
    """'20' → 20, '-0.1' → -0.1, anything else unchanged (the config converts numbers where it wants text)."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def phases(args: list[str]) -> None:
    """Where one `llm train` run's time goes, in this process: CPU seconds (this process and its children, e.g.
    the grader's) and wall seconds of loading, the step-0 evaluation, every step (with its rollout and training
    parts) and the last evaluation, and the resident size after each (memory growth after an evaluation shows
    here)."""
    import resource as rs

    from banditlab_llm.train import Trainer, config_from

    def cpu():
        me, kids = rs.getrusage(rs.RUSAGE_SELF), rs.getrusage(rs.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime

    def rss_mb():
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    last = [cpu(), time.perf_counter()]

    def mark(name, extra=""):
        c, w = cpu(), time.perf_counter()
        print(f"{name:<24} {c - last[0]:7.1f} s CPU {w - last[1]:7.1f} s wall  RSS {rss_mb():6.0f} MB  {extra}",
              flush=True)
        last[:] = [c, w]

    with tempfile.TemporaryDirectory() as out:
        opts = {**cli_options(args), "out": f"{out}/run"}
        cfg = config_from({k: number(v) for k, v in opts.items()}, None)
        trainer = Trainer(cfg, echo=lambda *_: None)
        mark("load")
        if cfg.eval_n:
            acc = trainer.eval_logs()["test_accuracy"]
            mark("evaluation, step 0", f"pass@1 {acc:.3f}")
        while trainer.step < trainer.total_steps:
            logs = trainer.train_step()
            mark(f"step {trainer.step}", f"rollout {logs['gen_seconds']:.1f} s, training {logs['train_seconds']:.1f} s"
                 " wall")
        if cfg.eval_n:
            trainer.eval_logs()
            mark("evaluation, last step")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", default="", help="another checkout to time beside this one (its root on PYTHONPATH)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--busy", action="store_true", help="one other busy process for the whole measurement")
    ap.add_argument("--smollm2-steps", type=int, default=8, help="the README line's 8 steps by default")
    ap.add_argument("--only", default="", help="run only commands whose name contains this")
    ap.add_argument("--timeout", type=float, default=1200)
    ap.add_argument("--phases", action="store_true",
                    help="instead: CPU and wall seconds of each phase of one run, in this process")
    a = ap.parse_args()
    if a.phases:
        for name, args in commands(a.smollm2_steps).items():
            if a.only in name:
                print(f"{name}: load average {os.getloadavg()[0]:.1f}", flush=True)
                phases(args)
        return
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if a.busy else None
    try:
        print(f"load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} cores, busy process: {a.busy}", flush=True)
        for name, args in commands(a.smollm2_steps).items():
            if a.only not in name:
                continue
            for r in range(a.rounds):
                before = f"before {timed(a.before, args, a.timeout)}; " if a.before else ""
                print(f"{name} round {r + 1}: {before}this tree {timed(str(HERE), args, a.timeout)} "
                      f"(load {os.getloadavg()[0]:.1f})", flush=True)
    finally:
        if busy:
            busy.kill()


if __name__ == "__main__":
    main()
