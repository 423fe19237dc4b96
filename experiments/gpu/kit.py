"""The GPU evidence kit's shared parts: a report written after every part, and guarded, time-limited subprocesses.

A call script (call_a.py, call_b.py) is a list of parts. Each part runs under a wall-clock limit that also respects
the call's own deadline; a part that fails, times out or is skipped is recorded with its reason and the next part
runs. After every part the report is rewritten atomically into the output folder as JSON and Markdown, so a call
cut off at any moment still returns every finished part. The output folder is `$OUT` when set (the device tool's
returned folder), else `--out`, else runs/gpu-kit. It holds at most a handful of files (the tool returns 8 at most):
NAME.json, NAME.md, NAME.log (every subprocess's output), and what a part adds (pytest's junit XML).

Rows for docs/gpu.md: every part states its claims as {claim: value}; the Markdown ends with those rows, ready to
paste into docs/gpu.md's table with the report's date, device and commit.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def expose_llm_package() -> Path | None:
    """Give this uninstalled checkout the LLM package's import name: the folder is llm/, the installed name
    banditlab_llm. A folder holding the link banditlab_llm -> ROOT/llm goes first on sys.path and on PYTHONPATH,
    so this process and every subprocess import `banditlab_llm` from the checkout. Each call script calls it first;
    where the package is installed (importable already) it does nothing."""
    import hashlib
    import importlib.util

    if importlib.util.find_spec("banditlab_llm") is not None:
        return None
    checkout = hashlib.sha256(str(ROOT.resolve()).encode()).hexdigest()[:12]
    names = Path(tempfile.gettempdir()) / f"banditlab-import-names-{os.getuid()}-{checkout}"
    names.mkdir(exist_ok=True)
    link = names / "banditlab_llm"
    if not (link.is_symlink() and link.resolve() == (ROOT / "llm").resolve()):
        tmp = names / f".link-{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(ROOT / "llm", target_is_directory=True)
        os.replace(tmp, link)
    if str(names) not in sys.path:
        sys.path.insert(0, str(names))
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(names)]
    os.environ["PYTHONPATH"] = os.pathsep.join([str(names), *paths])
    return names


def call_args(doc: str, rehearse_help: str) -> argparse.Namespace:
    """The options every call script takes: --rehearse, --out, --parts."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rehearse", action="store_true", help=rehearse_help)
    ap.add_argument("--out", default=None, help="report folder when $OUT is unset (default runs/gpu-kit)")
    ap.add_argument("--parts", default="", help="comma list of parts to run (default: all)")
    return ap.parse_args()


def out_dir(arg: str | None) -> Path:
    path = Path(os.environ.get("OUT") or arg or ROOT / "runs" / "gpu-kit")
    path.mkdir(parents=True, exist_ok=True)
    return path


def env() -> dict:
    """The environment of every subprocess: the repository first on PYTHONPATH (nothing is pip-installed on the
    device machine), unbuffered output, the hub offline."""
    e = dict(os.environ)
    parts = [str(ROOT)] + [p for p in e.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(ROOT)]
    e.update(PYTHONPATH=os.pathsep.join(parts), PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return e


def git_commit() -> str:
    """The project commit: the one pack wrote into the carried folder (the device machine has no .git), else git's."""
    for f in (ROOT / ".gpu" / "a" / "commit", ROOT / ".gpu" / "b" / "commit"):
        if f.is_file() and f.read_text().strip():
            return f.read_text().strip()[:12]
    try:
        return subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def device_words() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}"
    return f"CPU ({platform.machine()}), torch {torch.__version__}"


class Report:
    """One call's results: parts in order, each {status, seconds, result, claims, error}, flushed after each."""

    def __init__(self, name: str, out: Path, rehearse: bool, budget_s: float):
        self.name, self.out, self.t0, self.deadline = name, out, time.time(), time.time() + budget_s
        self.log = out / f"{name}.log"
        self.log.write_text("")
        self.data = {"call": name, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                     "commit": git_commit(), "device": device_words(), "rehearsal": rehearse,
                     "python": sys.version.split()[0], "budget_s": budget_s, "parts": {}}
        self.flush()

    def left(self) -> float:
        return self.deadline - time.time()

    def part(self, key: str, title: str, fn, limit_s: float) -> dict:
        """Run fn(limit) (limit: the seconds it may take), guarded: the record says ok / failed / timeout / skipped."""
        limit = min(limit_s, self.left() - 5)
        rec = {"title": title, "status": "skipped", "seconds": 0.0, "result": {}, "claims": {}, "error": None}
        self.data["parts"][key] = rec
        if limit < 10:
            rec["error"] = f"no time left in the call's budget ({self.data['budget_s']:.0f} s)"
            self.flush()
            return rec
        rec["status"] = "running"
        self.flush()
        t = time.time()
        self.say(f"== {key}: {title} (limit {limit:.0f} s)")
        try:
            result = fn(limit) or {}
            rec["claims"] = result.pop("claims", {})
            rec["result"] = result
            rec["status"] = result.pop("status", "ok")
            rec["error"] = result.pop("error", None)
        except Exception as err:  # a part's failure is recorded, never fatal to the call, with what it finished
            partial = dict(getattr(err, "partial", None) or {})
            rec.update(claims=partial.pop("claims", {}), result=partial)
            if isinstance(err, PartTimeout):
                rec.update(status="timeout", error=str(err))
            else:
                rec.update(status="failed", error=f"{type(err).__name__}: {' '.join(str(err).split())[:300]}")
                self.say(traceback.format_exc())
        rec["seconds"] = round(time.time() - t, 1)
        self.say(f"== {key}: {rec['status']} in {rec['seconds']} s" + (f": {rec['error']}" if rec["error"] else ""))
        self.flush()
        return rec

    def run_plan(self, plan: list, only: str) -> None:
        """Each (key, title, fn, limit) part of `plan` in order, or those named in `only` (comma-separated)."""
        keep = set(filter(None, only.split(",")))
        for key, title, fn, limit in plan:
            if not keep or key in keep:
                self.part(key, title, fn, limit)
        self.say(f"report: {self.out / (self.name + '.md')}")

    def say(self, text: str) -> None:
        print(text, flush=True)
        with self.log.open("a") as f:
            f.write(text + "\n")

    def flush(self) -> None:
        self.data["elapsed_s"] = round(time.time() - self.t0, 1)
        from banditlab.plumbing.folder import atomic_write

        atomic_write(self.out / f"{self.name}.json", json.dumps(self.data, indent=2, default=str) + "\n")
        atomic_write(self.out / f"{self.name}.md", markdown(self.data))


class PartTimeout(RuntimeError):
    def __init__(self, msg: str, partial: dict | None = None):
        super().__init__(msg)
        self.partial = partial or {}


def run(report: Report, argv: list[str], limit: float, check: bool = True) -> tuple[int, str]:
    """Run argv (from the repository root) under `limit` seconds; its output goes to the call's log. Returns (exit
    code, the output's last 4000 characters); a timeout kills the whole process group and raises PartTimeout."""
    report.say("$ " + " ".join(argv))
    with open(report.log, "a") as log:
        start = log.tell()
        p = subprocess.Popen(argv, cwd=ROOT, env=env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = p.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            raise PartTimeout(f"killed after {limit:.0f} s: {' '.join(argv[:6])} ...") from None
    with open(report.log) as f:
        f.seek(start)
        tail = f.read()[-4000:]
    if check and code != 0:
        raise RuntimeError(f"exit code {code}: {(tail.strip().splitlines() or [''])[-1][:200]}")
    return code, tail


def run_collect(report: Report, argv: list[str], limit: float, collect) -> dict:
    """`run`, then collect() (the part's result, read from the files the subprocess wrote as it went); on a
    failure or timeout the error carries collect() as `partial`, so the report keeps what finished."""
    try:
        run(report, argv, limit)
    except Exception as err:
        err.partial = collect()
        raise
    return collect()


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


def markdown(d: dict) -> str:
    """The report as Markdown: a header, one table row per part, each part's numbers, the rows for docs/gpu.md."""
    lines = [f"# GPU evidence, {d['call']}" + (" (CPU rehearsal: not GPU evidence)" if d["rehearsal"] else ""), "",
             f"date {d['date']} · device {d['device']} · commit {d['commit']} · Python {d['python']} · "
             f"{d['elapsed_s']} s of a {d['budget_s']:.0f} s budget", "",
             "| part | status | seconds | error |", "|---|---|---:|---|"]
    for key, p in d["parts"].items():
        lines.append(f"| {key}: {p['title']} | {p['status']} | {p['seconds']} | {p['error'] or ''} |")
    for key, p in d["parts"].items():
        if p["result"]:
            lines += ["", f"## {key}", "", "```json", json.dumps(p["result"], indent=1, default=str)[:6000], "```"]
    claims = [(c, v) for p in d["parts"].values() for c, v in p["claims"].items()]
    device = d["device"].split(",")[0]
    lines += ["", "## Rows for docs/gpu.md" + (" (rehearsal: do not paste)" if d["rehearsal"] else ""), "",
              "| claim | value | date | device | commit |", "|---|---|---|---|---|"]
    lines += [f"| {c} | {v} | {d['date'][:10]} | {device} | {d['commit']} |" for c, v in claims]
    return "\n".join(lines) + "\n"


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def bench(report: Report, tmp: Path, tag: str, args: list[str], limit: float) -> dict:
    """`banditlab llm bench ARGS` in a subprocess (the CLI exactly as a user runs it); its JSON result."""
    path = tmp / f"bench-{tag}.json"
    run(report, python("-m", "banditlab", "llm", "bench", *args, "--json", str(path)), limit)
    res = read_json(path)
    keep = ("label", "fits", "error", "failed_at", "device_name", "dtype", "parameters", "seconds_per_step",
            "train_tokens_per_s", "gen_tokens_per_s", "completion_tokens_per_step", "peak_memory", "after_load", "prompt_tokens",
            "notes", "measured", "skipped")
    shape = ("prompts_per_step", "group_size", "max_new_tokens", "micro_batch", "gen_batch_size", "lora_r", "algo")
    return {**{k: res.get(k) for k in keep}, "config": {k: res.get("config", {}).get(k) for k in shape}}


def fmt_mem(m: dict) -> str:
    if "cuda_max_allocated_gb" in (m or {}):
        return f"peak {m['cuda_max_allocated_gb']:.1f} GB allocated, {m['cuda_max_reserved_gb']:.1f} GB reserved"
    return f"peak RSS {m['cpu_peak_rss_gb']:.2f} GB" if m else "peak memory n/a"


def junit_counts(xml: Path) -> dict:
    """{passed, failed, errors, skipped} from pytest's junit XML (empty when it was not written): the counts both
    calls report."""
    import xml.etree.ElementTree as ET

    try:
        suite = ET.parse(xml).getroot()
    except (OSError, ET.ParseError):
        return {}
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    n = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    return {"passed": n["tests"] - n["failures"] - n["errors"] - n["skipped"], "failed": n["failures"],
            "errors": n["errors"], "skipped": n["skipped"]}

