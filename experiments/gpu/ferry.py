"""The ferry call's smoke test on CUDA (docs/gpu.md): what the trend call needs works on this machine.

    bash experiments/gpu/ferry_call.sh          # on the device, .gpu/a carried, timeout_s 120; report into $OUT
    python experiments/gpu/ferry.py             # on a machine without CUDA: a rehearsal (the CUDA tests skip and
                                                # say so; the report is labelled "not GPU evidence")

Parts, each guarded and time-limited (kit.Report; a failure is recorded and the next part runs), 95 s in all:
  env       nvidia-smi, versions (torch, CUDA, transformers, peft, math-verify, gguf), the first SmolLM2 half in $HOME
  cuda-tests  pytest on the tests that train on CUDA with the tiny model: AsymRE, TOPR and GRPO (online, lagged,
            offline) through llm.train.Trainer (tests/test_llm_device.py; the other objectives are left to the
            whole-suite call) and the multi-adapter offline trainer (tests/test_multirun.py); junit XML
  bandit    one bandit size on the device: 21 baselines × 100 seeds × 100 arms × 500 steps, exact mode, float32
            and float64 (bandit_throughput.py)
  trend     the trend call's own code (experiments/gpu/gsm8k_trend_call.py --rehearse) with the tiny model on the
            device: screening, batched evaluation of every adapter, lockstep training, the files it streams
Report: OUT/ferry.json and OUT/ferry.md after every part, OUT/ferry.log, OUT/ferry-pytest.xml.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kit  # noqa: E402

BUDGET_S = 95
TESTS = ["tests/test_llm_device.py", "tests/test_multirun.py", "-k", "cuda and (asymre or topr or grpo or multirun)"]


def part_env(report, limit):
    import importlib.metadata as md

    import torch

    smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                         capture_output=True, text=True) if _has("nvidia-smi") else None
    vers = {}
    for name in ("transformers", "peft", "math-verify", "gguf", "pytest"):
        try:
            vers[name] = md.version(name)
        except md.PackageNotFoundError:
            vers[name] = None
    half = Path.home() / "smollm2.part-a"
    res = {"nvidia_smi": smi.stdout.strip() if smi else "not found", "torch": torch.__version__,
           "cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(), **vers,
           "smollm2_part_a_bytes": half.stat().st_size if half.is_file() else None,
           "commit_carried": _read(kit.ROOT / ".gpu" / "a" / "commit")}
    missing = [k for k in ("transformers", "peft", "math-verify", "pytest") if not vers[k]]
    if missing or res["smollm2_part_a_bytes"] is None:
        res.update(status="failed", error=f"missing: {', '.join(missing + (['SmolLM2 part a'] if not half.is_file() else []))}")
    return res


def part_tests(report, limit):
    xml = report.out / "ferry-pytest.xml"
    code, tail = kit.run(report, kit.python("-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs",
                                            f"--junitxml={xml}", *TESTS), limit, check=False)
    counts = kit.junit_counts(xml)
    res = {"counts": counts, "ran": TESTS, "tail": tail[-1200:]}
    if code not in (0, 5) or counts.get("failed") or counts.get("errors"):
        res.update(status="failed", error=f"pytest exit {code}: {counts}")
    elif not counts.get("passed"):
        res.update(status="skipped", error=f"no test ran on CUDA ({counts}): no CUDA device")
    return res


def part_bandit(report, limit, device):
    path = Path(tempfile.mkdtemp()) / "bandit.json"
    kit.run(report, kit.python("experiments/gpu/bandit_throughput.py", "--device", device, "--baselines", "21",
                               "--seeds", "100", "--arms", "100", "--steps", "500", "--wide-arms", "1000",
                               "--wide-seeds", "2", "--json", str(path)), limit)
    rows = kit.read_json(path) or []
    res = {"rows": rows}
    res["claims"] = {f"bandit exact mode on {device}, {r['runs']} runs × {r['arms']} arms × {r['steps']} steps, "
                     f"{r['dtype']}": f"{r['seconds']:.2f} s, {r['arm_updates_per_s']:.3g} arm-updates/s"
                     for r in rows}
    return res


def part_trend(report, limit, device):
    with tempfile.TemporaryDirectory(prefix="ferry-trend-") as work:
        code, tail = kit.run(report, kit.python("experiments/gpu/gsm8k_trend_call.py", "--rehearse", "--model", "tiny",
                                                "--device", device, "--deadline-s", str(int(limit - 5)), "--out",
                                                work), limit, check=False)
        summary = kit.read_json(Path(work) / "summary.json")
        files = sorted(p.name for p in Path(work).iterdir())
    res = {"exit": code, "files": files, "stage": summary.get("stage"), "steps": summary.get("steps"),
           "eval_mode": summary.get("eval_mode"), "eval_probe_seconds": summary.get("eval_probe_seconds"),
           "error": summary.get("error")}
    if code != 0 or summary.get("stage") != "done":
        res.update(status="failed", error=summary.get("error") or f"exit {code}: {tail.strip().splitlines()[-1:]}")
    return res


def _has(cmd: str) -> bool:
    import shutil

    return shutil.which(cmd) is not None


def _read(path: Path) -> str | None:
    return path.read_text().strip() if path.is_file() else None


def main():
    kit.expose_llm_package()
    a = kit.call_args(__doc__, "on a CPU: the CUDA parts skip, the rest runs on the CPU")
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    report = kit.Report("ferry", kit.out_dir(a.out), a.rehearse or device == "cpu", BUDGET_S)
    plan = [("env", "the machine, versions, SmolLM2's first half", lambda t: part_env(report, t), 10),
            ("cuda-tests", "the trainer's CUDA tests (tiny model)", lambda t: part_tests(report, t), 45),
            ("bandit", f"one bandit size on {device}", lambda t: part_bandit(report, t, device), 15),
            ("trend", f"the trend call's code on {device}, tiny model", lambda t: part_trend(report, t, device), 35)]
    report.run_plan(plan, a.parts)
    bad = [k for k, p in report.data["parts"].items() if p["status"] in ("failed", "timeout")]
    print(json.dumps({k: p["status"] for k, p in report.data["parts"].items()}))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
