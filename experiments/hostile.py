"""A hostile-input campaign: the CLI as a user runs it (`python -m banditlab ...` in subprocesses, tiny sizes, a
timeout each), fed inputs of the eight classes of docs/reliability.md, each outcome classified.

    clean          a bad input refused with exit code 2 and one line naming it, nothing written; or a legal
                   input handled right (the case's own check)
    silently wrong exit code 0 on an input that must be refused, or a wrong result with no word
    unclear        refused, but with several lines, a wrong exit code, or files left behind
    data lost      a folder or figure that was there is damaged or overwritten
    hang           still running at the timeout
    crash          a traceback, a signal, or the CLI's last net naming a library exception (exit 1, "failed:")

Run from the repository root (a checkout on PYTHONPATH, see docs/reliability.md):

    PYTHONPATH=$PWD:$PWD/.names OMP_NUM_THREADS=1 python experiments/hostile.py [--only WORD] [--jobs 2]

Prints one line per case and the counts per class and outcome; `--json FILE` keeps every case's record.
Deliberately left out: a real tmpfs (mounting needs root; the tests inject ENOSPC instead) and GPU paths.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

PY = sys.executable
SWEEP = "sweep --arms 5 --steps 30 --seeds 2 --baseline -0.1,0.1 --no-progress"
LLM = ("llm train --model tiny --steps 1 --group-size 2 --prompts-per-step 2 --max-new-tokens 4 --eval-n 0 "
       "--n-train 4 --no-progress")
EVAL = "llm eval --model tiny --n 2 --max-new-tokens 4"
GEN = "llm generate --model tiny --max-new-tokens 4"
BENCH = "llm bench --model tiny --steps 1 --warmup 0 --group-size 2 --prompts-per-step 2 --max-new-tokens 4"
REFUSE = "refuse"
LEGAL = {"--log-every 0", "--log-every 100000", "--lr 1e-320", "--n-train 0", "--micro-batch 0", "--threads 4096"}


@dataclass
class Case:
    cls: int                     # the class, 1..8
    name: str
    args: str = ""               # after `python -m banditlab`; {d} is the case's folder
    setup: Optional[Callable] = None
    expect: object = REFUSE      # REFUSE, or check(d, rc, out, err) -> (outcome, note)
    env: dict = field(default_factory=dict)
    timeout: float = 60
    runner: Optional[Callable] = None  # runner(d) -> (outcome, note) for multi-step cases (signals)


NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]  # permissions do not bind root


def cli(d: Path, args: str, env=None, timeout=60, wait_for=None, sig=None, as_nobody=False, raw=False):
    """(rc, stdout, stderr) of one CLI run in folder d; rc None on timeout. With wait_for/sig: send `sig` the
    moment the file `wait_for` appears. `as_nobody`: run as an unprivileged user, so read-only folders bind."""
    e = {**os.environ, **(env or {})}
    for k, v in (env or {}).items():
        if v is None:
            e.pop(k, None)
    words = shlex.split(args.format(d=d))
    argv = [PY, "-m", "banditlab", *(words if raw else override(words))]
    if as_nobody:
        home = Path(tempfile.gettempdir()) / "hostile-nobody-home"
        home.mkdir(exist_ok=True)
        os.chmod(home, 0o777)
        e.update(HOME=str(home), MPLCONFIGDIR=str(home))
        os.chmod(d, 0o777)
        argv = NOBODY + argv
    p = subprocess.Popen(argv, cwd=d, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    if wait_for is not None:
        t0 = time.time()
        while not Path(wait_for).exists() and p.poll() is None and time.time() - t0 < timeout:
            time.sleep(0.002)
        for s in sig if isinstance(sig, (list, tuple)) else [sig]:
            if p.poll() is None:
                p.send_signal(s)
                time.sleep(0.05)
    try:
        out, err = p.communicate(timeout=timeout)
        return p.returncode, out, err
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        return None, out, err


FLAGS = {"--no-progress", "--progress", "--offline", "--online", "--resume", "--greedy", "--absolute", "--offset",
         "--force", "--plot-only", "--synthetic-rollouts", "--tensorboard", "--interactive", "--all", "--list"}
REPEATABLE = {"--algo-arg", "--set"}


def override(argv: list[str]) -> list[str]:
    """A case's own option replaces the base command's (`SWEEP + " --steps 0"`): the earlier one and its value go.
    Cases about repeated options say "twice" and write their command out in full instead."""
    out, i = [], 0
    while i < len(argv):
        a = argv[i]
        later = a.startswith("--") and a not in REPEATABLE and a in argv[i + 1:]
        step = 1 if a in FLAGS or "=" in a else 2
        if not later:
            out += argv[i:i + step] if a.startswith("--") else [a]
        i += step if a.startswith("--") else 1
    return out



def snapshot(d: Path) -> set:
    return {str(p.relative_to(d)) for p in d.rglob("*")} if d.exists() else set()


def classify(rc, out, err, new_files, expect_refusal=True) -> tuple[str, str]:
    lines = [x for x in err.strip().splitlines() if x.strip()]
    first = lines[0][:140] if lines else ""
    if rc is None:
        return "hang", "timeout"
    if rc < 0 or rc >= 128 and rc != 130 or "Traceback" in err:
        return "crash", f"rc {rc}: {(lines or ['?'])[-1][:140]}"
    if rc == 1 and "failed:" in err:
        return "crash", first
    if rc == 0:
        return ("silently wrong", "accepted: " + (out.strip().splitlines() or [""])[-1][:120]) if expect_refusal \
            else ("clean", "ok")
    if rc == 2 and len(lines) == 1 and not new_files:
        return "clean", first
    why = [f"rc {rc}"] + ([f"{len(lines)} lines"] if len(lines) != 1 else []) + \
          ([f"wrote {sorted(new_files)[:3]}"] if new_files else [])
    return "unclear", ", ".join(why) + ": " + first


# ------------------------------------------------------------------------------------------------ fixtures
FIX: dict = {}


def fixtures(root: Path) -> None:
    """A finished sweep, a finished tiny LLM run and its offline dataset, shared (copied) by the cases."""
    for name, args in [("sweep", SWEEP + " --out {d}/sweep"), ("llm", LLM + " --out {d}/llm"),
                       ("off", LLM + " --offline --algo topr --offline-data {d}/offline.pt --out {d}/off")]:
        rc, out, err = cli(root, args, timeout=300)
        assert rc == 0, (name, err)
    FIX.update(sweep=root / "sweep", llm=root / "llm", offline=root / "offline.pt")


def copy(name: str, d: Path, to: str) -> Path:
    shutil.copytree(FIX[name], d / to) if FIX[name].is_dir() else shutil.copy(FIX[name], d / to)
    return d / to


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def crafted(path: Path, zip_format=True) -> None:
    import torch

    obj = {"step": 0, "policy": Payload(path.parent / "PWNED")}
    torch.save(obj, path) if zip_format else path.write_bytes(pickle.dumps(obj))


def write(rel: str, text, binary=False):
    def setup(d: Path):
        p = d / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(text) if binary else p.write_text(text)
    return setup


def chain(*fs):
    def setup(d):
        for f in fs:
            f(d)
    return setup


def no_marker(check=None):
    """A loader case: the payload must not have run, and the refusal is one line."""
    def expect(d, rc, out, err):
        if any(d.rglob("PWNED")):
            return "crash", "THE PAYLOAD RAN"
        return classify(rc, out, err, set())
    return expect


def ok_and(files: list[str], note="handled"):
    def expect(d, rc, out, err):
        if rc != 0:
            return classify(rc, out, err, set())
        missing = [f for f in files if not (d / f).exists()]
        return ("silently wrong", f"missing {missing}") if missing else ("clean", note)
    return expect


# ------------------------------------------------------------------------------------------------ runners
def same_as_fixture(d: Path, run: Path) -> tuple[str, str]:
    for f in ("summary.csv", "table.csv"):
        if not (run / f).exists() or (run / f).read_bytes() != (FIX["sweep"] / f).read_bytes():
            return "data lost", f"{f} differs from an uninterrupted run's"
    return "clean", "completed, outputs equal an uninterrupted run's"


def stop_lines(err: str) -> list[str]:
    """A stopped run's stderr lines, less the acknowledgement every first stop signal prints at once."""
    return [x for x in err.strip().splitlines() if x.strip() and "stopping at the next safe point" not in x]


def signal_at(target: str, sig) -> Callable:
    """Stop a sweep the moment `target` appears, then rerun: never a folder claiming completion wrongly."""
    def runner(d: Path):
        args = SWEEP + " --out {d}/r"
        rc, out, err = cli(d, args, wait_for=d / "r" / target, sig=sig)
        run = d / "r"
        if (run / "DONE").exists():
            return same_as_fixture(d, run)
        if rc not in (130, -signal.SIGKILL, -signal.SIGHUP) or (rc == 130 and len(stop_lines(err)) != 1):
            return "unclear", f"stopped with rc {rc}: {err.strip()[-140:]}"
        rc, out, err = cli(d, args)
        if rc != 0 or not (run / "DONE").exists():
            return "data lost", f"rerun rc {rc}: {err.strip()[-140:]}"
        return same_as_fixture(d, run)
    return runner


def sweep_after(edit: Callable, expect_ok=True) -> Callable:
    """Edit a finished sweep's folder, rerun the same command: it completes or refuses in one line."""
    def runner(d: Path):
        run = copy("sweep", d, "r")
        edit(run)
        rc, out, err = cli(d, SWEEP + " --out {d}/r")
        if rc == 0:
            return same_as_fixture(d, run) if expect_ok else ("silently wrong", "accepted")
        return classify(rc, out, err, set())
    return runner


def llm_metrics(edit: Callable, expect_ok: bool) -> Callable:
    def runner(d: Path):
        run = copy("llm", d, "r")
        p = run / "metrics.jsonl"
        p.write_text(edit(p.read_text()))
        (run / "DONE").unlink(missing_ok=True)
        rc, out, err = cli(d, LLM + " --out {d}/r --resume")
        if expect_ok:
            if rc != 0:
                return classify(rc, out, err, set())
            return ("clean", "resumed and completed") if (run / "DONE").exists() else ("silently wrong", "no DONE")
        return classify(rc, out, err, set())
    return runner


def llm_signal(sig) -> Callable:
    def runner(d: Path):
        args = LLM.replace("--steps 1", "--steps 3") + " --out {d}/r"
        rc, out, err = cli(d, args, wait_for=d / "r" / "metrics.jsonl", sig=sig)
        if (d / "r" / "DONE").exists():
            return "clean", "finished before the signal"
        if rc != 130 or len(stop_lines(err)) != 1:
            return "unclear", f"stopped with rc {rc}: {err.strip()[-140:]}"
        rc, out, err = cli(d, args + " --resume")
        ok = rc == 0 and (d / "r" / "DONE").exists()
        return ("clean", "stopped in one line, resumed") if ok else ("data lost", f"resume rc {rc}: {err[-140:]}")
    return runner


REPRO_TOML = 'V = "0.0:0.9:3"\nexact_steps = 20\nsampled_steps = 20\nsampled_seeds = 2\nbatch = 8\nlr = 1.0\n'
REPRO = "reproduce asymre-limit --configs {d}/cfg --figures {d}/fig --no-progress"


def repro_signal(sig) -> Callable:
    def runner(d: Path):
        write("cfg/asymre-limit.toml", REPRO_TOML)(d)
        rc, out, err = cli(d, REPRO, wait_for=d / "fig" / "data" / "asymre-limit", sig=sig, timeout=120)
        rc2, out2, err2 = cli(d, REPRO, timeout=120)
        data = d / "fig" / "data" / "asymre-limit"
        if rc2 != 0 or not (data / "DONE").exists() or not (d / "fig" / "asymre-limit.png").exists():
            return "data lost", f"first rc {rc}, rerun rc {rc2}: {err2.strip()[-140:]}"
        return "clean", f"first rc {rc}; rerun completed"
    return runner


def demo_twice(a: str, b: str) -> Callable:
    def runner(d: Path):
        r1 = cli(d, f"demo --steps 50 --out {{d}}/{a}")
        before = {p.name: p.read_bytes() for p in d.rglob("*.png")}
        r2 = cli(d, f"demo --steps 50 --out {{d}}/{b} --lr 0.5")
        if r1[0] != 0 or r2[0] != 0:
            return classify(r1[0] or r2[0], "", r1[2] + r2[2], set())
        lost = [p.name for p in d.rglob("*.png") if p.name in before and p.read_bytes() != before[p.name]]
        return ("data lost", f"{lost} overwritten") if lost else ("clean", "two figures")
    return runner


def readonly(rel: str) -> Callable:
    def setup(d: Path):
        (d / rel).mkdir(parents=True, exist_ok=True)
        os.chmod(d / rel, 0o555)
    return setup


def fifo(rel: str) -> Callable:
    return lambda d: os.mkfifo(d / rel)


def symlink(rel: str, target: str) -> Callable:
    return lambda d: os.symlink(target.format(d=d), d / rel)


def copied(name: str, to: str) -> Callable:
    return lambda d: copy(name, d, to)


def crafted_at(name: str, to: str, file: str, zip_format=True) -> Callable:
    def setup(d):
        if name:
            copy(name, d, to)
            (d / to / "DONE").unlink(missing_ok=True)
        crafted(d / to / file if name else d / file, zip_format)
    return setup


def adapter_bin(d: Path):
    import torch

    copy("llm", d, "r")
    a = d / "r" / "adapter"
    for f in a.glob("adapter_model.*"):
        f.unlink()
    torch.save({"x": Payload(a / "PWNED")}, a / "adapter_model.bin")


def model_folder_bin(d: Path):
    import torch

    m = d / "m"
    m.mkdir()
    (m / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 8, "intermediate_size": 16,
                                               "num_attention_heads": 2, "num_hidden_layers": 1, "vocab_size": 32}))
    torch.save({"x": Payload(m / "PWNED")}, m / "pytorch_model.bin")


def bandit(text: str) -> Callable:
    return write("b.toml", text)


def cfg(text: str, name="c.toml") -> Callable:
    return write(name, text)


BIG_Q = json.dumps({"question": "1+" * 500_000 + "1", "answer": "500001"}) + "\n"


def cases() -> list[Case]:
    C = []
    add = lambda *a, **k: C.append(Case(*a, **k))  # noqa: E731
    # ---------------------------------------------------------------------------- 1. loading runs code
    for z in (True, False):
        t = "zip" if z else "raw pickle"
        add(1, f"sweep state.pt crafted ({t})", SWEEP + " --out {d}/r", crafted_at("sweep", "r", "state.pt", z),
            no_marker())
        add(1, f"llm checkpoint.pt crafted ({t})", LLM + " --out {d}/r --resume",
            crafted_at("llm", "r", "checkpoint.pt", z), no_marker())
        add(1, f"--offline-data crafted ({t})", LLM + " --offline --algo topr --offline-data {d}/x.pt --out {d}/n",
            crafted_at("", "", "x.pt", z), no_marker())
    add(1, "merge of a shard whose state.pt is crafted", "merge {d}/r {d}/r2 --out {d}/m",
        chain(crafted_at("sweep", "r", "state.pt"), copied("sweep", "r2")), no_marker())
    add(1, "llm eval --adapter with a crafted adapter_model.bin", EVAL + " --adapter {d}/r/adapter", adapter_bin,
        no_marker())
    add(1, "llm generate --adapter with a crafted adapter_model.bin", GEN + " --adapter {d}/r/adapter hi",
        adapter_bin, no_marker())
    add(1, "--model folder with a crafted pytorch_model.bin", "llm eval --model {d}/m --n 1 --max-new-tokens 2",
        model_folder_bin, no_marker())
    add(1, "plot on a sweep whose state.pt is crafted", "plot {d}/r", crafted_at("sweep", "r", "state.pt"),
        lambda d, rc, o, e: ("crash", "THE PAYLOAD RAN") if any(d.rglob("PWNED")) else
        ("clean", "plot does not read state.pt") if rc == 0 else classify(rc, o, e, set()))
    add(1, "--offline-data: a torch file of the wrong shape (a bare tensor)",
        LLM + " --offline --algo topr --offline-data {d}/x.pt --out {d}/n",
        lambda d: __import__("torch").save(__import__("torch").zeros(3), d / "x.pt"))
    add(1, "--offline-data: a zip that is not a torch file", LLM + " --offline --algo topr --offline-data {d}/x.pt "
        "--out {d}/n", lambda d: shutil.make_archive(str(d / "z"), "zip", d) and os.rename(d / "z.zip", d / "x.pt"))
    # ---------------------------------------------------------------------------- 2. complete or not
    for target in ("summary.csv", "table.csv", "sweep.png", "steps.parquet"):
        add(2, f"SIGTERM when {target} appears", runner=signal_at(target, signal.SIGTERM))
    add(2, "SIGINT twice when summary.csv appears", runner=signal_at("summary.csv", [signal.SIGINT, signal.SIGINT]))
    add(2, "SIGKILL when summary.csv appears", runner=signal_at("summary.csv", signal.SIGKILL))
    add(2, "SIGKILL when DONE appears", runner=signal_at("DONE", signal.SIGKILL))
    add(2, "SIGHUP when summary.csv appears", runner=signal_at("summary.csv", signal.SIGHUP))
    add(2, "finished sweep, table.csv deleted, rerun", runner=sweep_after(lambda r: (r / "table.csv").unlink()))
    add(2, "finished sweep, DONE and table.csv deleted, rerun",
        runner=sweep_after(lambda r: [(r / f).unlink() for f in ("DONE", "table.csv")]))
    add(2, "DONE deleted, empty summary.csv, rerun",
        runner=sweep_after(lambda r: [(r / "DONE").unlink(), (r / "summary.csv").write_text("")]))
    add(2, "DONE deleted, state.pt truncated, rerun",
        runner=sweep_after(lambda r: [(r / "DONE").unlink(), (r / "state.pt").write_bytes(
            (r / "state.pt").read_bytes()[:100])], expect_ok=False))
    add(2, "llm resume: truncated last metrics line", runner=llm_metrics(lambda t: t + '{"step": 9, "lo', True))
    add(2, "llm resume: damaged middle metrics line",
        runner=llm_metrics(lambda t: "{garbage\n" + t, False))
    add(2, "llm resume: empty metrics.jsonl", runner=llm_metrics(lambda t: "", True))
    add(2, "llm SIGTERM when metrics.jsonl appears, then resume", runner=llm_signal(signal.SIGTERM))
    add(2, "llm SIGINT when metrics.jsonl appears, then resume", runner=llm_signal(signal.SIGINT))
    add(2, "reproduce SIGTERM when its data folder appears, rerun", runner=repro_signal(signal.SIGTERM), timeout=240)
    add(2, "reproduce SIGKILL when its data folder appears, rerun", runner=repro_signal(signal.SIGKILL), timeout=240)
    # ---------------------------------------------------------------------------- 3. unknown / contradictory
    add(3, "bandit TOML typo key mue", "sweep --bandit {d}/b.toml --out {d}/r", bandit("means=[0,1]\nmue=[0.5,0.5]\n"))
    add(3, "bandit TOML typo key noize", "sweep --bandit {d}/b.toml --out {d}/r", bandit("means=[0,1]\nnoize='none'\n"))
    add(3, "bandit TOML mu and logits", "sweep --bandit {d}/b.toml --out {d}/r",
        bandit("means=[0,1]\nmu=[0.5,0.5]\nlogits=[0,0]\n"))
    add(3, "bandit TOML boolean mean", "sweep --bandit {d}/b.toml --out {d}/r", bandit("means=[0,true]\n"))
    add(3, "bandit TOML means and mu of different lengths", "sweep --bandit {d}/b.toml --out {d}/r",
        bandit("means=[0,1,0.5]\nmu=[0.5,0.5]\n"))
    add(3, "bandit TOML mu not summing to 1", "sweep --bandit {d}/b.toml --out {d}/r", bandit("means=[0,1]\nmu=[0.5,0.6]\n"))
    add(3, "bandit TOML negative mu", "sweep --bandit {d}/b.toml --out {d}/r", bandit("means=[0,1]\nmu=[-0.5,1.5]\n"))
    add(3, "bandit TOML means as a string", "sweep --bandit {d}/b.toml --out {d}/r", bandit('means="0,1"\n'))
    add(3, "bandit TOML one arm", "sweep --bandit {d}/b.toml --out {d}/r", bandit("means=[0.5]\n"))
    add(3, "bandit TOML empty means", "sweep --bandit {d}/b.toml --out {d}/r", bandit("means=[]\n"))
    add(3, "bandit TOML nested list means", "sweep --bandit {d}/b.toml --out {d}/r", bandit("means=[[0,1],[1,0]]\n"))
    add(3, "bandit TOML context weight negative", "sweep --bandit {d}/b.toml --out {d}/r",
        bandit("[[context]]\nmeans=[0,1]\nweight=-1\n[[context]]\nmeans=[1,0]\nweight=2\n"))
    add(3, "bandit TOML contexts with different arm counts", "sweep --bandit {d}/b.toml --out {d}/r",
        bandit("[[context]]\nmeans=[0,1]\n[[context]]\nmeans=[1,0,0.5]\n"))
    add(3, "bandit TOML unknown key in a context", "sweep --bandit {d}/b.toml --out {d}/r",
        bandit("[[context]]\nmeans=[0,1]\nmus=[0.5,0.5]\n"))
    add(3, "--bandit FILE with --arms", "sweep --bandit {d}/b.toml --arms 3 --out {d}/r", bandit("means=[0,1]\n"))
    add(3, "--bandit FILE with --mu", "sweep --bandit {d}/b.toml --mu 0.5,0.5 --out {d}/r", bandit("means=[0,1]\n"))
    add(3, "--bandit FILE with --bandit-seed", "sweep --bandit {d}/b.toml --bandit-seed 3 --out {d}/r",
        bandit("means=[0,1]\n"))
    add(3, "--bandit FILE with --contexts", "sweep --bandit {d}/b.toml --contexts 2 --out {d}/r", bandit("means=[0,1]\n"))
    add(3, "--rewards and --mu of different lengths", SWEEP.replace("--arms 5 ", "") + " --rewards 0,1,0.5 --mu 0.5,0.5 --out {d}/r")
    add(3, "--mu without --rewards", SWEEP + " --mu 0.2,0.2,0.2,0.2,0.2 --out {d}/r")
    add(3, "--rewards with a NaN", SWEEP.replace("--arms 5 ", "") + " --rewards 0,nan,1 --out {d}/r")
    add(3, "--rewards empty item", SWEEP.replace("--arms 5 ", "") + " --rewards 0,,1 --out {d}/r")
    add(3, "--mu with inf", SWEEP.replace("--arms 5 ", "") + " --rewards 0,1 --mu inf,0 --out {d}/r")
    add(3, "--behavior fixed,on-policy", SWEEP + " --behavior fixed,on-policy --out {d}/r")
    add(3, "--behavior lag:5,lag:7", SWEEP + " --behavior lag:5,lag:7 --out {d}/r")
    add(3, "--behavior mix:0.5,mix:0.2", SWEEP + " --behavior mix:0.5,mix:0.2 --out {d}/r")
    add(3, "--behavior lag:x", SWEEP + " --behavior lag:x --out {d}/r")
    add(3, "--behavior bogus", SWEEP + " --behavior bogus --out {d}/r")
    add(3, "--behavior mix:0.5:sideways", SWEEP + " --behavior mix:0.5:sideways --out {d}/r")
    add(3, "--baseline 0,0 duplicate", SWEEP.replace("--baseline -0.1,0.1", "--baseline 0,0") + " --out {d}/r")
    add(3, "--baseline 0.1,0.10 duplicate by value", SWEEP.replace("--baseline -0.1,0.1", "--baseline 0.1,0.10") + " --out {d}/r")
    add(3, "--baseline range with NUM 0", SWEEP.replace("--baseline -0.1,0.1", "--baseline 0:1:0") + " --out {d}/r")
    add(3, "--baseline range a:b:c:d", SWEEP.replace("--baseline -0.1,0.1", "--baseline 0:1:2:3") + " --out {d}/r")
    add(3, "--baseline nan", SWEEP.replace("--baseline -0.1,0.1", "--baseline nan") + " --out {d}/r")
    add(3, "--baseline empty", SWEEP.replace("--baseline -0.1,0.1", "--baseline ''") + " --out {d}/r")
    add(3, "--algo-arg offset=5 in a sweep", SWEEP + " --algo-arg offset=5 --out {d}/r")
    add(3, "--algo-arg unknown key", SWEEP + " --algo topr --algo-arg a_pso=0 --out {d}/r")
    add(3, "--algo-arg twice", SWEEP + " --algo topr --algo-arg a_neg=0 --algo-arg a_neg=0.5 --out {d}/r")
    add(3, "--algo-arg without =", SWEEP + " --algo topr --algo-arg a_neg --out {d}/r")
    add(3, "--algo-arg bool for a float", SWEEP + " --algo topr --algo-arg a_neg=true --out {d}/r")
    add(3, "--algo-arg string for a bool", SWEEP + " --algo asymre --algo-arg std_norm=maybe --out {d}/r")
    add(3, "--algo unknown", SWEEP + " --algo reinfroce --out {d}/r")
    add(3, "--mode bogus", SWEEP + " --mode bogus --out {d}/r")
    add(3, "--noise bogus", SWEEP + " --noise poisson --out {d}/r")
    add(3, "--dtype float16", SWEEP + " --dtype float16 --out {d}/r")
    add(3, "--baseline-ref bogus", SWEEP + " --baseline-ref median --out {d}/r")
    add(3, "--shard 3/2", SWEEP + " --shard 3/2 --out {d}/r")
    add(3, "--shard 0/2", SWEEP + " --shard 0/2 --out {d}/r")
    add(3, "--shard 1/0", SWEEP + " --shard 1/0 --out {d}/r")
    add(3, "--shard 1/2/3", SWEEP + " --shard 1/2/3 --out {d}/r")
    add(3, "--sigma with bernoulli noise", SWEEP + " --sigma 0.5 --out {d}/r")
    add(3, "config TOML unknown key", SWEEP + " --config {d}/c.toml --out {d}/r", cfg("stepz = 10\n"))
    add(3, "config TOML key beside [sweep]", SWEEP + " --config {d}/c.toml --out {d}/r", cfg("seed=1\n[sweep]\nsteps=10\n"))
    add(3, "config TOML [train] table given to sweep", SWEEP + " --config {d}/c.toml --out {d}/r", cfg("[train]\nsteps=10\n"))
    add(3, "config TOML batch as a float", SWEEP + " --config {d}/c.toml --out {d}/r", cfg("batch = 10.5\n"))
    add(3, "config TOML algo_args as a number", SWEEP + " --config {d}/c.toml --out {d}/r", cfg("algo_args = 5\n"))
    add(3, "config TOML dash and underscore", SWEEP + " --config {d}/c.toml --out {d}/r", cfg("log-every=1\nlog_every=2\n"))
    add(3, "config TOML nested unknown table", SWEEP + " --config {d}/c.toml --out {d}/r", cfg("[sweep.extra]\nx=1\n"))
    add(3, "config TOML out key pointing elsewhere", SWEEP + " --config {d}/c.toml", cfg('out = "{d}/r"\nbogus=1\n'))
    add(3, "llm config TOML unknown key", LLM + " --config {d}/c.toml --out {d}/r", cfg("[train]\nlora_rr = 4\n"))
    add(3, "llm --lora-targets bogus", LLM + " --lora-targets q_proj,bogus_proj --out {d}/r")
    add(3, "llm --lora-targets repeated", LLM + " --lora-targets q_proj,q_proj --out {d}/r")
    add(3, "llm --lora-targets empty", LLM + " --lora-targets '' --out {d}/r")
    add(3, "llm --resume on a missing folder", LLM + " --out {d}/nope --resume")
    add(3, "llm --resume on a sweep folder", LLM + " --out {d}/r --resume", copied("sweep", "r"))
    add(3, "sweep --out on an llm folder", SWEEP + " --out {d}/r", copied("llm", "r"))
    add(3, "llm --algo-arg unknown", LLM + " --algo topr --algo-arg bogus=1 --out {d}/r")
    add(3, "llm --algo-arg offset with --baseline-offset", LLM + " --baseline-offset 0.1 --algo-arg offset=0.2 --out {d}/r")
    add(3, "llm --dataset bogus", LLM + " --dataset mnist --out {d}/r")
    add(3, "llm --reward bogus", LLM + " --reward vibes --out {d}/r")
    add(3, "llm --schedule bogus", LLM + " --schedule zigzag --out {d}/r")
    add(3, "llm --agg bogus", LLM + " --agg token-median --out {d}/r")
    add(3, "llm --offline without --offline-data (legal: OUT/offline.pt)", LLM + " --offline --algo topr --out {d}/r",
        expect=ok_and(["r/DONE", "r/offline.pt"]))
    add(3, "llm --epochs without --offline", LLM + " --epochs 3 --out {d}/r")
    add(3, "llm --offline-data without --offline", LLM + " --offline-data {d}/x.pt --out {d}/r")
    add(3, "JSONL row with an unknown field", LLM + " --dataset gsm8k --data-path {d}/d.jsonl --out {d}/r",
        write("d.jsonl", '{"question": "1+1?", "answer": "#### 2", "anwser": "3"}\n' * 4))
    add(3, "JSONL row with a boolean answer", LLM + " --dataset gsm8k --data-path {d}/d.jsonl --out {d}/r",
        write("d.jsonl", '{"question": "1+1?", "answer": true}\n' * 4))
    add(3, "JSONL row that is a list", LLM + " --dataset gsm8k --data-path {d}/d.jsonl --out {d}/r",
        write("d.jsonl", '[1, 2]\n' * 4))
    add(3, "JSONL duplicate key in a row", LLM + " --dataset gsm8k --data-path {d}/d.jsonl --out {d}/r",
        write("d.jsonl", '{"question": "1+1?", "question": "2+2?", "answer": "#### 4"}\n' * 4))
    add(3, "JSONL with NaN literal answer", LLM + " --dataset gsm8k --data-path {d}/d.jsonl --out {d}/r",
        write("d.jsonl", '{"question": "1+1?", "answer": NaN}\n' * 4))
    add(3, "llm eval --dataset bogus", EVAL + " --dataset mnist")
    add(3, "llm eval --backend bogus", EVAL + " --backend onnx")
    add(3, "llm bench --set unknown key", BENCH + " --set lora_rr=4 --json {d}/b.json")
    add(3, "llm bench --set without =", BENCH + " --set lora_r --json {d}/b.json")
    add(3, "llm bench --set lora_r=abc", BENCH + " --set lora_r=abc --json {d}/b.json")
    add(3, "reproduce unknown id", "reproduce nope --figures {d}/fig")
    add(3, "reproduce config with a typo key", REPRO, cfg(REPRO_TOML + "exact_step = 5\n", "cfg/asymre-limit.toml"))
    add(3, "reproduce config with a wrong type", REPRO, cfg(REPRO_TOML.replace("lr = 1.0", 'lr = "1"'),
                                                              "cfg/asymre-limit.toml"))
    add(3, "reproduce --plot-only and --force", REPRO + " --plot-only --force",
        cfg(REPRO_TOML, "cfg/asymre-limit.toml"))
    # ---------------------------------------------------------------------------- 4. legal type, no meaning
    for algo, arg in [("ppo", "eps_low=-1"), ("topr", "a_pos=2"), ("red-weight", "temp=0"), ("red-weight", "temp=-1"),
                      ("asymre", "std_eps=-1"), ("rec", "coef=-1"), ("gspo", "eps_high=nan"), ("sapo", "tau_pos=0"),
                      ("m2po", "m2_threshold=-1"), ("ppo", "dual_clip=0.5"), ("grpo-tis", "mismatch_cap=0"),
                      ("topr", "a_neg=-1")]:
        add(4, f"--algo {algo} --algo-arg {arg}", SWEEP + f" --algo {algo} --algo-arg {arg} --out {{d}}/r")
    for opt in ["--seed -1", "--threads 1000000", "--sigma inf --noise gaussian", "--sigma nan --noise gaussian",
                "--lr nan", "--lr -1", "--lr 0", "--steps 0", "--steps -5", "--seeds 0", "--batch 0", "--arms 1",
                "--arms 0", "--contexts 0", "--support-eps 2", "--low 1 --high 0", "--log-every 0",
                "--log-every 100000", "--low nan", "--high inf", "--bandit-seed -3", "--behavior mix:2",
                "--behavior lag:0", "--behavior delay:-1", "--lr 1e-320"]:
        legal = opt in LEGAL  # declared legal: the default, a final step always logged, an honest "nothing learned"
        add(4, f"sweep {opt}" + (" (legal)" if legal else ""), SWEEP + f" {opt} --out {{d}}/r",
            expect=ok_and(["r/DONE"]) if legal else REFUSE)
    add(4, "config checkpoint_seconds = -1", SWEEP + " --config {d}/c.toml --out {d}/r", cfg("checkpoint_seconds = -1\n"))
    add(4, "config sigma = inf", SWEEP + " --config {d}/c.toml --out {d}/r", cfg("noise='gaussian'\nsigma = inf\n"))
    for opt in ["--temperature 1e-45", "--seed -1", "--lora-r 1000000000", "--threads 1000000", "--threads 4096", "--top-p 0",
                "--top-p 1.5", "--warmup -1", "--grad-clip -1", "--lora-dropout 1.5", "--difficulty 0",
                "--epochs 0", "--n-train 0", "--sync-interval 0", "--group-size 1", "--max-new-tokens 0",
                "--lr 10", "--lr nan", "--weight-decay -1", "--lora-alpha 0", "--eval-every -1", "--micro-batch 0"]:
        legal = opt in LEGAL  # --n-train 0: all problems (arithmetic: 1000)
        add(4, f"llm train {opt}" + (" (legal)" if legal else ""), LLM + f" {opt} --out {{d}}/r",
            expect=ok_and(["r/DONE"]) if legal else REFUSE)
    for opt in ["--lr 1e308", "--lr 0", "--steps 0", "--steps -5", "--below nan", "--rewards 0,nan,1",
                "--mu 0.5,0.6,0.1", "--mu 1,0,0", "--rewards 0,1", "--above inf"]:
        add(4, f"demo {opt}", f"demo {opt} --out {{d}}/f/demo")
    add(4, "llm eval --n -1", EVAL + " --n -1")
    add(4, "llm eval --threads 1000000", EVAL + " --threads 1000000")
    add(4, "llm generate --temperature 1e-45", GEN + " --temperature 1e-45 hi")
    add(4, "llm generate --temperature nan", GEN + " --temperature nan hi")
    add(4, "llm generate --seed -1", GEN + " --seed -1 hi")
    add(4, "llm generate --threads 1000000", GEN + " --threads 1000000 hi")
    add(4, "llm bench --steps 0", BENCH.replace("--steps 1", "--steps 0") + " --json {d}/b.json")
    add(4, "llm bench --set lora_r=0", BENCH + " --set lora_r=0 --json {d}/b.json")
    # ---------------------------------------------------------------------------- 5. unbounded work
    add(5, "sweep --config on a FIFO", SWEEP + " --config {d}/f --out {d}/r", fifo("f"), timeout=30)
    add(5, "sweep --config /dev/zero", SWEEP + " --config /dev/zero --out {d}/r", timeout=30)
    add(5, "sweep --bandit /dev/zero", SWEEP.replace("--arms 5 ", "") + " --bandit /dev/zero --out {d}/r", timeout=30)
    add(5, "sweep --bandit on a FIFO", SWEEP.replace("--arms 5 ", "") + " --bandit {d}/f --out {d}/r", fifo("f"), timeout=30)
    add(5, "llm --data-path on a FIFO", LLM + " --dataset gsm8k --data-path {d}/f --out {d}/r", fifo("f"), timeout=30)
    add(5, "llm --config /dev/urandom", LLM + " --config /dev/urandom --out {d}/r", timeout=30)
    add(5, "llm --offline-data on a FIFO", LLM + " --offline --algo topr --offline-data {d}/f --out {d}/r",
        fifo("f"), timeout=30)
    add(5, "llm eval --test-path on a FIFO", EVAL + " --dataset gsm8k --test-path {d}/f", fifo("f"), timeout=30)
    add(5, "symlink config to /dev/zero", SWEEP + " --config {d}/c.toml --out {d}/r", symlink("c.toml", "/dev/zero"),
        timeout=30)
    add(5, "a 1,000,001-character question", LLM + " --dataset gsm8k --data-path {d}/d.jsonl --out {d}/r",
        write("d.jsonl", BIG_Q * 4), timeout=30)
    add(5, "llm eval on a 1,000,001-character question", EVAL + " --dataset gsm8k --test-path {d}/d.jsonl",
        write("d.jsonl", BIG_Q * 2), timeout=30)
    add(5, "llm generate a 100,000-character prompt", GEN + " " + shlex.quote("x" * 100_000), timeout=30)
    add(5, "sweep --arms 10^9", SWEEP.replace("--arms 5", "--arms 1000000000") + " --out {d}/r", timeout=30)
    add(5, "sweep --seeds 10^9", SWEEP.replace("--seeds 2", "--seeds 1000000000") + " --out {d}/r", timeout=30)
    add(5, "sweep --batch 10^12", SWEEP + " --batch 1000000000000 --out {d}/r", timeout=30)
    add(5, "sweep --baseline 0:1:10^8", SWEEP.replace("--baseline -0.1,0.1", "--baseline 0:1:100000000") + " --out {d}/r",
        timeout=30)
    add(5, "sweep --steps 10^15", SWEEP.replace("--steps 30", "--steps 1000000000000000") + " --out {d}/r", timeout=30)
    add(5, "sweep --contexts 10^7", SWEEP + " --contexts 10000000 --out {d}/r", timeout=30)
    add(5, "sweep delay history 10^6 × 10^4 arms", SWEEP.replace("--arms 5", "--arms 10000") +
        " --behavior lag:2,delay:1000000 --out {d}/r", timeout=30)
    add(5, "llm --n-train 10^8", LLM.replace("--n-train 4", "--n-train 100000000") + " --out {d}/r", timeout=30)
    add(5, "llm --group-size 10^9", LLM.replace("--group-size 2", "--group-size 1000000000") + " --out {d}/r", timeout=30)
    add(5, "llm --max-new-tokens 10^9", LLM.replace("--max-new-tokens 4", "--max-new-tokens 1000000000") +
        " --out {d}/r", timeout=30)
    add(5, "llm --steps 10^12", LLM.replace("--steps 1", "--steps 1000000000000") + " --out {d}/r", timeout=30)
    add(5, "llm eval --n 10^9 arithmetic", EVAL.replace("--n 2", "--n 1000000000"), timeout=30)
    add(5, "llm generate --n 10^9", GEN + " --n 1000000000 hi", timeout=30)
    add(5, "llm generate --max-new-tokens 10^9", GEN.replace("--max-new-tokens 4", "--max-new-tokens 1000000000") + " hi",
        timeout=30)
    add(5, "llm bench --prompt-tokens 10^9", BENCH + " --synthetic-rollouts --prompt-tokens 1000000000 --json {d}/b.json",
        timeout=30)
    add(5, "demo --steps 10^12", "demo --steps 1000000000000 --out {d}/f/demo", timeout=30)
    add(5, "a 70 MiB config", SWEEP + " --config {d}/c.toml --out {d}/r", cfg("# " + "x" * (70 * 2**20) + "\n"), timeout=30)
    add(5, "a TOML nested 100,000 deep", SWEEP + " --config {d}/c.toml --out {d}/r", cfg("x = " + "[" * 100000 + "]" * 100000),
        timeout=30)
    # ---------------------------------------------------------------------------- 6. numerical garbage
    def diverged(d, rc, out, err):
        if rc != 0:
            return classify(rc, out, err, set())
        import pandas as pd

        s = pd.read_csv(d / "r" / "summary.csv")  # theory_* is empty where no closed form exists; KL may be inf
        cols = ["final_expected_reward", "entropy", "p_best", "min_logit", "final_loss"]
        bad = s[cols].map(lambda v: v != v or abs(v) == float("inf")).any(axis=1)
        if (bad & ~s["diverged"].astype(bool)).any():
            return "silently wrong", "non-finite numbers without diverged"
        return "clean", f"{int(s['diverged'].sum())} of {len(s)} runs flagged diverged" if s["diverged"].any() else \
            "finite, not flagged"
    for name, opt in [("exact mode lr 1e6 rewards ±1e6", "--mode exact --rewards -1000000,1000000 --lr 1000000"),
                      ("sampled lr 1e6 gaussian sigma 1e6", "--noise gaussian --sigma 1000000 --lr 1000000"),
                      ("low -1e6 high 1e6 lr 1e6", "--low -1000000 --high 1000000 --lr 1000000"),
                      ("exact mode sigma 1e6", "--mode exact --noise gaussian --sigma 1000000"),
                      ("lr 1e6 float32", "--lr 1000000 --dtype float32 --low -1000000 --high 1000000"),
                      ("tiny lr 1e-300", "--lr 1e-300")]:
        add(6, f"sweep {name}", SWEEP.replace("--arms 5 ", "" if "rewards" in opt else "--arms 5 ") +
            f" {opt} --out {{d}}/r", expect=diverged)
    add(6, "bandit TOML means 1e308", "sweep --bandit {d}/b.toml --out {d}/r", bandit("means=[-1e308,1e308]\n"))
    add(6, "--rewards ±1e308", SWEEP.replace("--arms 5 ", "") + " --rewards -1e308,1e308 --out {d}/r")
    add(6, "--algo-arg offset=1e308 in llm", LLM + " --algo-arg offset=1e308 --out {d}/r")
    add(6, "demo --lr 10 (the top of its range)", "demo --lr 10 --steps 100 --out {d}/f/demo",
        expect=ok_and(["f/demo.png"]))
    def llm_flag(d, rc, out, err):
        if rc != 0:
            return classify(rc, out, err, set())
        rows = [json.loads(x) for x in (d / "r" / "metrics.jsonl").read_text().splitlines() if x.strip()]
        nonfinite = [k for r in rows for k, v in r.items() if isinstance(v, float) and not (abs(v) < float("inf"))
                     and "accuracy" not in k]  # no evaluation (--eval-n 0): accuracy is NaN by design
        return ("silently wrong", f"non-finite {nonfinite[:3]} unflagged") if nonfinite and not any(
            "diverged" in r or "finite" in str(r) for r in rows) else ("clean", "finite or flagged")
    add(6, "llm lr 1 with red-weight temp 1e-3", LLM + " --lr 1 --algo red-weight --algo-arg temp=0.001 --out {d}/r",
        expect=llm_flag)
    # ---------------------------------------------------------------------------- 7. messages
    add(7, "sweep --out under a read-only folder", SWEEP + " --out {d}/ro/r", readonly("ro"))
    add(7, "sweep --out is a file", SWEEP + " --out {d}/f", write("f", "x"))
    add(7, "sweep --out under a file", SWEEP + " --out {d}/f/r", write("f", "x"))
    add(7, "sweep --out with a NUL-free 5000-char path", SWEEP + " --out {d}/" + "a" * 5000)
    add(7, "sweep --out 300 levels deep", SWEEP + " --out {d}/" + "/".join(["a"] * 300))
    add(7, "sweep --out a 300-byte name", SWEEP + " --out {d}/" + "b" * 300)
    add(7, "sweep --config is a folder", SWEEP + " --config {d} --out {d}/r")
    add(7, "sweep --config missing", SWEEP + " --config {d}/nope.toml --out {d}/r")
    add(7, "sweep --config empty file (valid TOML)", SWEEP + " --config {d}/c.toml --out {d}/r", cfg(""),
        expect=ok_and(["r/DONE"]))
    add(7, "sweep --config not UTF-8", SWEEP + " --config {d}/c.toml --out {d}/r", write("c.toml", b"\xff\xfe=1", True))
    add(7, "sweep --config a symlink loop", SWEEP + " --config {d}/c.toml --out {d}/r", symlink("c.toml", "{d}/c.toml"))
    add(7, "sweep --config unreadable (chmod 000)", SWEEP + " --config {d}/c.toml --out {d}/r",
        chain(cfg("steps=10\n"), lambda d: os.chmod(d / "c.toml", 0)))
    add(7, "sweep --bandit empty file", SWEEP.replace("--arms 5 ", "") + " --bandit {d}/b.toml --out {d}/r", bandit(""))
    add(7, "sweep --bandit is a folder", SWEEP.replace("--arms 5 ", "") + " --bandit {d} --out {d}/r")
    add(7, "unicode run folder", SWEEP + " --out {d}/résultats-π-実験", expect=ok_and(["résultats-π-実験/DONE"]))
    add(7, "run folder through a symlink", SWEEP + " --out {d}/link/r", lambda d: (d / "real").mkdir() or
        os.symlink(d / "real", d / "link"), expect=ok_and(["real/r/DONE"]))
    add(7, "HOME unset, llm train", LLM + " --out {d}/r", env={"HOME": None, "BANDITLAB_CACHE": "/tmp/bl-cache"},
        expect=ok_and(["r/DONE"]))
    add(7, "HOME unset, llm eval", EVAL, env={"HOME": None, "BANDITLAB_CACHE": "/tmp/bl-cache"}, expect=ok_and([]))
    add(7, "HOME unset and no cache, sweep", SWEEP + " --out {d}/r", env={"HOME": None}, expect=ok_and(["r/DONE"]))
    add(7, "llm eval --adapter missing", EVAL + " --adapter {d}/nope")
    add(7, "llm eval --adapter an empty folder", EVAL + " --adapter {d}/a", lambda d: (d / "a").mkdir())
    add(7, "llm eval --adapter a sweep folder", EVAL + " --adapter {d}/r", copied("sweep", "r"))
    add(7, "llm eval --model missing path", "llm eval --model {d}/nope --n 1")
    add(7, "llm eval --model a text file", "llm eval --model {d}/m.gguf --n 1", write("m.gguf", "not gguf"))
    add(7, "llm eval --model an empty folder", "llm eval --model {d}/m --n 1", lambda d: (d / "m").mkdir())
    add(7, "llm eval --test-path empty file", EVAL + " --dataset gsm8k --test-path {d}/d.jsonl", write("d.jsonl", ""))
    add(7, "llm train --data-path empty file", LLM + " --dataset gsm8k --data-path {d}/d.jsonl --out {d}/r",
        write("d.jsonl", ""))
    add(7, "llm train --data-path truncated parquet", LLM + " --dataset gsm8k --data-path {d}/d.parquet --out {d}/r",
        write("d.parquet", b"PAR1\x00\x00", True))
    add(7, "llm train --data-path is a folder", LLM + " --dataset gsm8k --data-path {d} --out {d}/r")
    add(7, "llm train --out is a file", LLM + " --out {d}/f", write("f", "x"))
    add(7, "llm train --out under a read-only folder", LLM + " --out {d}/ro/r", readonly("ro"))
    add(7, "llm --device cuda:7 on a CPU machine", LLM + " --device cuda:7 --out {d}/r")
    add(7, "llm --device tpu", LLM + " --device tpu --out {d}/r")
    add(7, "llm eval --device cuda", EVAL + " --device cuda")
    add(7, "llm eval --dtype float8", EVAL + " --dtype float8")
    add(7, "merge of an unsharded folder with a truncated parquet", "merge {d}/r {d}/r2 --out {d}/m",
        chain(copied("sweep", "r"), copied("sweep", "r2"), lambda d: (d / "r" / "steps.parquet").write_bytes(b"PAR1")))
    add(7, "merge of a non-sweep folder", "merge {d}/r {d}/r2 --out {d}/m", chain(copied("llm", "r"), copied("sweep", "r2")))
    add(7, "merge the same folder twice", "merge {d}/r {d}/r --out {d}/m", copied("sweep", "r"))
    add(7, "merge into an existing folder", "merge {d}/r --out {d}/r", copied("sweep", "r"))
    add(7, "merge of an unsharded finished sweep with itself copied", "merge {d}/r {d}/r2 --out {d}/m",
        chain(copied("sweep", "r"), copied("sweep", "r2")))
    add(7, "plot an empty folder", "plot {d}/e", lambda d: (d / "e").mkdir())
    add(7, "plot a file", "plot {d}/f", write("f", "x"))
    add(7, "plot with a damaged summary.csv", "plot {d}/r",
        chain(copied("sweep", "r"), lambda d: (d / "r" / "summary.csv").write_text("a,b\n1")))
    add(7, "plot with a damaged config.json", "plot {d}/r",
        chain(copied("sweep", "r"), lambda d: (d / "r" / "config.json").write_text("{")))
    add(7, "plot into a read-only sweep folder", "plot {d}/r",
        chain(copied("sweep", "r"), lambda d: os.chmod(d / "r", 0o555)))
    add(7, "plot llm --out under a read-only folder", "plot {d}/r --out {d}/ro/curves", chain(copied("llm", "r"),
        readonly("ro")))
    add(7, "plot llm with an empty metrics.jsonl", "plot {d}/r",
        chain(copied("llm", "r"), lambda d: (d / "r" / "metrics.jsonl").write_text("")))
    add(7, "reproduce --figures read-only", REPRO, chain(cfg(REPRO_TOML, "cfg/asymre-limit.toml"), readonly("fig")))
    add(7, "reproduce --figures is a file", REPRO, chain(cfg(REPRO_TOML, "cfg/asymre-limit.toml"), write("fig", "x")))
    add(7, "reproduce --configs missing", "reproduce asymre-limit --configs {d}/nope --figures {d}/fig")
    add(7, "demo --out under a read-only folder", "demo --steps 50 --out {d}/ro/demo", readonly("ro"))
    add(7, "demo --html into a folder", "demo --steps 50 --html {d}", expect=REFUSE)
    add(7, "llm bench --json into a read-only folder", BENCH + " --json {d}/ro/b.json", readonly("ro"))
    add(7, "llm bench --json is a folder", BENCH + " --json {d}")
    add(7, "llm generate with no prompt", "llm generate --model tiny")
    add(7, "unknown option", SWEEP + " --stepz 3 --out {d}/r")
    add(7, "algos with an unknown option", "algos --bogus")
    add(7, "algos with an extra argument", "algos topr")
    add(7, "algos --references (legal)", "algos --references", expect=lambda d, rc, o, e:
        ("clean", "the parity table") if rc == 0 and "|" in o and not e.strip() else classify(rc, o, e, set()))
    add(3, "algos --references given twice", "algos --references --references")
    add(3, "--steps given twice", SWEEP + " --steps 3 --out {d}/r")
    add(3, "--progress and --no-progress", SWEEP + " --progress --out {d}/r")
    add(3, "llm --lr given twice, one with =", LLM + " --lr 0.1 --lr=0.2 --out {d}/r")
    add(3, "llm eval --n given twice", EVAL + " --n 3")
    add(3, "demo --lr given twice", "demo --lr 1 --lr 2 --out {d}/f/demo")
    # ---------------------------------------------------------------------------- 8. names
    add(8, "demo --out v1.0 then v1.1", runner=demo_twice("v1.0", "v1.1"))
    add(8, "demo --out run.a then run.b", runner=demo_twice("run.a", "run.b"))
    add(8, "demo --out x.v1.png then x.v2.png", runner=demo_twice("x.v1.png", "x.v2.png"))
    add(8, "plot llm --out into a folder that does not exist yet", "plot {d}/r --out {d}/new/deeper/curves",
        copied("llm", "r"), expect=ok_and(["new/deeper/curves.png"]))
    add(8, "llm bench --json into a folder that does not exist yet", BENCH + " --json {d}/new/b.json",
        expect=ok_and(["new/b.json"]))
    add(8, "demo --out a trailing-slash folder", "demo --steps 50 --out {d}/f/", expect=lambda d, rc, o, e:
        classify(rc, o, e, set()) if rc else ("clean", str(sorted(x.name for x in d.rglob('*.png')))))
    add(8, "plot llm --out curves.v1 and curves.v2", runner=lambda d: plot_twice(d))
    add(8, "sweep --out a folder of unrelated files", SWEEP + " --out {d}/u", write("u/notes.txt", "mine"))
    add(8, "reproduce --figures the same as a sweep folder", REPRO.replace("{d}/fig", "{d}/r"),
        chain(cfg(REPRO_TOML, "cfg/asymre-limit.toml"), copied("sweep", "r")),
        expect=lambda d, rc, o, e: ("data lost", "sweep files changed") if rc == 0 and not (d / "r" / "summary.csv").exists()
        else classify(rc, o, e, set()) if rc else ("clean", "wrote beside, nothing overwritten"))
    C += round4()
    return C


# ------------------------------------------------------------------------------------------------ round 4
# The classes of the current reliability issue (not those of the section headers above):
#   1 outputs never replace what they should not      5 JSON: non-finite numbers, repeated keys, deep nesting
#   2 every file read goes through the safe reader    6 text that cannot be encoded (surrogates, non-UTF-8)
#   3 duplicate values however written                7 one schema per concept; meaningless options; bounded work
#   4 adapters checked against what they load         8 a full disk for every writer, and the folder resumes
# Every round-4 case is named "r4: ...": `--only r4:` (or `--round 4`) runs them alone.
NEW: dict = {}  # case folder -> the files a plain case's command left (for expects that need them)
XFF = os.fsdecode(b"\xff")  # a byte that is not UTF-8, as Python holds it (a surrogate; passed back as the byte)
THEORY = "theory --arms 5 --baseline -0.1,0.1"


def either(files: list[str]):
    """A legal-but-odd input: handled (exit 0 and `files` there) or refused cleanly; never a crash."""
    def expect(d, rc, out, err):
        if rc == 0:
            missing = [f for f in files if not os.path.lexists(d / f)]
            return ("silently wrong", f"exit 0 but missing {missing}") if missing else ("clean", "handled")
        return classify(rc, out, err, NEW.get(d, set()))
    return expect


def kept(*checks, legal=False):
    """An output case: every check(d) -> problem or None must pass (else data lost); then a refusal is classified
    as usual (legal: exit 0 is right too)."""
    def expect(d, rc, out, err):
        for ch in checks:
            problem = ch(d)
            if problem:
                return "data lost", problem + f" (rc {rc}: {(err.strip().splitlines() or [''])[-1][:100]})"
        if legal and rc == 0:
            return "clean", "handled, nothing replaced"
        return classify(rc, out, err, NEW.get(d, set()))
    return expect


def is_fifo(rel):
    return lambda d: None if os.path.lexists(d / rel) and __import__("stat").S_ISFIFO(os.lstat(d / rel).st_mode) \
        else f"{rel} is no longer a FIFO"


def is_link(rel, precious=None, text="precious\n"):
    def check(d):
        if not os.path.islink(d / rel):
            return f"the symlink {rel} was replaced"
        if precious and (d / precious).read_text() != text:
            return f"{precious} (the link's target) was overwritten"
    return check


def precious(rel, text="precious\n"):
    return write(rel, text)


def adapter_edit(cfg_edit=None, tensors_edit=None, raw_tensors=None):
    """A copy of the fixture run's adapter in {d}/a, its config and/or tensors edited."""
    def setup(d):
        from safetensors.torch import load_file, save_file

        shutil.copytree(FIX["llm"] / "adapter", d / "a")
        if cfg_edit:
            c = json.loads((d / "a" / "adapter_config.json").read_text())
            text = cfg_edit(c)
            (d / "a" / "adapter_config.json").write_text(text if isinstance(text, str) else json.dumps(c))
        if tensors_edit:
            t = load_file(d / "a" / "adapter_model.safetensors")
            t = tensors_edit(t) or t
            save_file(t, d / "a" / "adapter_model.safetensors")
        if raw_tensors is not None:
            (d / "a" / "adapter_model.safetensors").write_bytes(raw_tensors)
    return setup


def set_key(k, v):
    def edit(c):
        c[k] = v
    return edit


def shards(d: Path):
    for i in (1, 2):
        rc, out, err = cli(d, SWEEP + f" --shard {i}/2 --out {{d}}/s{i}")
        assert rc == 0, err


def edit_json(rel, fn):
    def setup(d):
        p = d / rel
        p.write_text(fn(p.read_text()))
    return setup


def mount_tmpfs(where: Path, kb: int) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kb}k", "tmpfs", str(where)],
                          capture_output=True).returncode == 0


def fill(where: Path):
    """Take every free byte of the file system at `where`."""
    fd = os.open(where / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)


def full_disk(cmd: str, kb: int, done: list[str], rerun: str = None, pre=None, filled=False, env=None):
    """Run a writer with its output on a `kb` KiB tmpfs (optionally filled first): it must end with the one
    "disk is full" line (exit 1) and no temporary file left; after the disk grows (remount, 64 MiB) the same
    command (or `rerun`) must complete: `done` files there."""
    def runner(d: Path):
        mnt = d / "full"
        if not mount_tmpfs(mnt, kb):
            return "case error", "cannot mount a tmpfs here (root needed): skipped"
        try:
            if pre:
                pre(d)
            if filled:
                fill(mnt)
            rc, out, err = cli(d, cmd, env=env)
            lines = [x for x in err.strip().splitlines() if x.strip()]
            tmp = [str(p.relative_to(d)) for p in mnt.rglob("*.tmp*")]
            if rc == 0:
                return "clean", f"fit on the {kb} KiB disk (not exercised)"
            if rc is None:
                return "hang", "timeout on the full disk"
            if not (rc == 1 and len(lines) == 1 and "disk is full" in err):
                o, n = classify(rc, out, err, set())
                return ("unclear" if o == "clean" else o), f"full disk: {n}"
            if tmp:
                return "unclear", f"disk-full line, but temporary files left: {tmp[:3]}"
            (mnt / "filler").unlink(missing_ok=True)
            subprocess.run(["mount", "-o", "remount,size=65536k", str(mnt)], check=True)
            rc2, out2, err2 = cli(d, rerun or cmd, env=env)
            missing = [f for f in done if not (d / f).exists()]
            if rc2 != 0 or missing:
                return "data lost", f"after the disk grew: rc {rc2}, missing {missing}: {err2.strip()[-140:]}"
            return "clean", "disk-full line, then the rerun completed"
        finally:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
    return runner


def cache_on_full_disk(d: Path):
    mnt = d / "full"
    if not mount_tmpfs(mnt, 64):
        return "case error", "cannot mount a tmpfs here (root needed): skipped"
    try:
        (mnt / "cache").mkdir()
        fill(mnt)
        rc, out, err = cli(d, SWEEP + " --out {d}/r", env={"BANDITLAB_CACHE": str(mnt / "cache")})
        if rc == 0 and (d / "r" / "DONE").exists():
            return "clean", "the kernel memo could not be written; the sweep completed"
        return classify(rc, out, err, set())
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def round4() -> list[Case]:
    C = []

    def add(cls, name, *a, **k):
        C.append(Case(cls, "r4: " + name, *a, **k))
    SW = SWEEP + " --out {d}/r"
    NOARMS = SWEEP.replace("--arms 5 ", "")
    BASE = lambda b: SWEEP.replace("--baseline -0.1,0.1", f"--baseline {b}") + " --out {d}/r"  # noqa: E731
    GSM = LLM + " --dataset gsm8k --data-path {d}/d.jsonl --out {d}/r"
    ROW = '{"question": "1+1?", "answer": "#### 2"}\n'
    # ---------------------------------------------------------------- 1. outputs never replace what they should not
    add(1, "sweep: summary.csv inside --out is a FIFO", SW,
        chain(lambda d: (d / "r").mkdir(), fifo("r/summary.csv")), kept(is_fifo("r/summary.csv")))
    add(1, "sweep: sweep.png inside --out a symlink to a file outside", SW,
        chain(precious("keep.png"), lambda d: (d / "r").mkdir(), symlink("r/sweep.png", "{d}/keep.png")),
        kept(is_link("r/sweep.png", "keep.png")))
    add(1, "sweep: --out itself a symlink to /dev/null", SW, symlink("r", "/dev/null"), kept(is_link("r")))
    add(1, "sweep: state.pt inside --out a dangling symlink", SW,
        chain(lambda d: (d / "r").mkdir(), symlink("r/state.pt", "{d}/nowhere.pt")),
        kept(is_link("r/state.pt"), lambda d: "the link's target was created" if (d / "nowhere.pt").exists() else None))
    unfinished = lambda d: [copy("sweep", d, "r"), (d / "r" / "DONE").unlink()]  # noqa: E731
    add(1, "sweep rerun of an unfinished run: summary.csv a FIFO", SW,
        chain(unfinished, lambda d: (d / "r" / "summary.csv").unlink(), fifo("r/summary.csv")),
        kept(is_fifo("r/summary.csv")), timeout=60)
    add(1, "sweep rerun of an unfinished run: sweep.png a symlink to a file outside", SW,
        chain(unfinished, precious("keep.png"), lambda d: (d / "r" / "sweep.png").unlink(),
              symlink("r/sweep.png", "{d}/keep.png")), kept(is_link("r/sweep.png", "keep.png")))
    add(1, "llm train: metrics.jsonl inside --out is a FIFO", LLM + " --out {d}/r",
        chain(lambda d: (d / "r").mkdir(), fifo("r/metrics.jsonl")), kept(is_fifo("r/metrics.jsonl")), timeout=60)
    add(1, "llm train: OUT/adapter a symlink to a folder outside", LLM + " --out {d}/r",
        chain(precious("mine/notes.txt"), lambda d: (d / "r").mkdir(), symlink("r/adapter", "{d}/mine")),
        kept(is_link("r/adapter"), lambda d: "files written into the linked folder" if
             sorted(p.name for p in (d / "mine").iterdir()) != ["notes.txt"] else None))
    add(1, "llm bench --json a symlink to a file", BENCH + " --json {d}/b.json",
        chain(precious("keep.json"), symlink("b.json", "{d}/keep.json")), kept(is_link("b.json", "keep.json")))
    add(1, "plot llm --out whose .png is a FIFO", "plot {d}/r --out {d}/c",
        chain(copied("llm", "r"), fifo("c.png")), kept(is_fifo("c.png")), timeout=60)
    add(1, "plot sweep: RUN_DIR/sweep.png a symlink to a file outside", "plot {d}/r",
        chain(copied("sweep", "r"), precious("keep.png"), lambda d: (d / "r" / "sweep.png").unlink(),
              symlink("r/sweep.png", "{d}/keep.png")), kept(is_link("r/sweep.png", "keep.png")))
    add(1, "demo --out whose .pdf is a FIFO", "demo --steps 50 --out {d}/f/demo",
        chain(lambda d: (d / "f").mkdir(), fifo("f/demo.pdf")), kept(is_fifo("f/demo.pdf")), timeout=60)
    add(1, "reproduce: FIGURES/ID.png a symlink to a file outside", REPRO,
        chain(cfg(REPRO_TOML, "cfg/asymre-limit.toml"), precious("keep.png"), lambda d: (d / "fig").mkdir(),
              symlink("fig/asymre-limit.png", "{d}/keep.png")), kept(is_link("fig/asymre-limit.png", "keep.png")),
        timeout=120)
    add(1, "merge --out: a new folder's parent is a symlink to /dev/null", "merge {d}/s1 {d}/s2 --out {d}/n/m",
        chain(shards, symlink("n", "/dev/null")), kept(is_link("n")))
    add(1, "BANDITLAB_CACHE/kernels.json a symlink to a file outside", SW,
        chain(precious("keep.json", "{}"), lambda d: (d / "cache").mkdir(),
              symlink("cache/kernels.json", "{d}/keep.json")),
        kept(is_link("cache/kernels.json", "keep.json", "{}"), legal=True), env={"BANDITLAB_CACHE": "{d}/cache"})
    # ---------------------------------------------------------------- 2. every file read through the safe reader
    add(2, "BANDITLAB_CACHE/kernels.json nested 100,000 deep (a memo counts as none)", SW,
        write("cache/kernels.json", "[" * 100000 + "]" * 100000), expect=ok_and(["r/DONE"]),
        env={"BANDITLAB_CACHE": "{d}/cache"})
    add(2, "BANDITLAB_CACHE/kernels.json not UTF-8, with a NaN", SW,
        write("cache/kernels.json", b'{"exp-torch.float64": NaN, "\xff": 1}', True), expect=ok_and(["r/DONE"]),
        env={"BANDITLAB_CACHE": "{d}/cache"})
    add(2, "BANDITLAB_CACHE is a FIFO", SW, fifo("c"), env={"BANDITLAB_CACHE": "{d}/c"}, timeout=30)
    add(2, "BANDITLAB_CACHE is a 5000-character path", SW, env={"BANDITLAB_CACHE": "/tmp/" + "c" * 5000})
    add(2, "BANDITLAB_PROGRESS_SECONDS=nan", SWEEP.replace(" --no-progress", "") + " --progress --out {d}/r",
        env={"BANDITLAB_PROGRESS_SECONDS": "nan"})
    add(2, "adapter_config.json is a FIFO", EVAL + " --adapter {d}/a",
        chain(adapter_edit(), lambda d: (d / "a" / "adapter_config.json").unlink(), fifo("a/adapter_config.json")),
        timeout=30)
    add(2, "adapter_model.safetensors a symlink to /dev/zero", EVAL + " --adapter {d}/a",
        chain(adapter_edit(), lambda d: (d / "a" / "adapter_model.safetensors").unlink(),
              symlink("a/adapter_model.safetensors", "/dev/zero")), timeout=30)
    add(2, "llm train --data-path /proc/self/environ (size 0 on stat)", LLM.replace("--n-train 4", "--n-train 2") +
        " --dataset gsm8k --data-path /proc/self/environ --out {d}/r", timeout=30)
    add(2, "plot: a run's config.json is a FIFO", "plot {d}/r",
        chain(copied("sweep", "r"), lambda d: (d / "r" / "config.json").unlink(), fifo("r/config.json")), timeout=30)
    add(2, "llm resume: metrics.jsonl a symlink to /dev/zero", LLM + " --out {d}/r --resume",
        chain(copied("llm", "r"), lambda d: (d / "r" / "DONE").unlink(), lambda d: (d / "r" / "metrics.jsonl").unlink(),
              symlink("r/metrics.jsonl", "/dev/zero")), timeout=30)
    # ---------------------------------------------------------------- 3. duplicates however written
    add(3, "--baseline 0,-0.0 (one value written two ways)", BASE("0,-0.0"))
    add(3, "--baseline 0,1e-17 (the same V after V^mu + offset)", BASE("0,1e-17"))
    add(3, "--absolute --baseline 0.5,5e-1", BASE("0.5,5e-1") + " --absolute")
    add(3, "config baseline = \"0.1,0.1\"", SWEEP.replace(" --baseline -0.1,0.1", "") + " --config {d}/c.toml --out {d}/r",
        cfg('baseline = "0.1,0.1"\n'))
    add(3, "theory --baseline 0.2,0.2", THEORY.replace("-0.1,0.1", "0.2,0.2"))
    add(3, "theory --baseline 0.5:0.5:3", THEORY.replace("-0.1,0.1", "0.5:0.5:3"))
    add(3, "reproduce config V = \"0.3,0.3\"", REPRO, cfg(REPRO_TOML.replace('"0.0:0.9:3"', '"0.3,0.3"'),
                                                        "cfg/asymre-limit.toml"))
    add(3, "--behavior lag:5,lag:5", SWEEP + " --behavior lag:5,lag:5 --out {d}/r")
    add(3, "llm bench --set lora_r=4 and --set lora_r=8", BENCH + " --set lora_r=4 --set lora_r=8 --json {d}/b.json")
    add(3, "llm bench --set group_size=4 with --group-size 2", BENCH + " --set group_size=4 --json {d}/b.json")
    add(3, "llm --lora-targets 'q_proj, q_proj' (a space)", LLM + " --lora-targets 'q_proj, q_proj' --out {d}/r")
    add(3, "merge the same shard by two paths (a symlink)", "merge {d}/s1 {d}/s1b {d}/s2 --out {d}/m",
        chain(shards, symlink("s1b", "{d}/s1")))
    # ---------------------------------------------------------------- 4. adapters checked against what they load
    add(4, "adapter r = true (a boolean rank)", EVAL + " --adapter {d}/a", adapter_edit(set_key("r", True)))
    add(4, "adapter r = 4 while the tensors have rank 8", EVAL + " --adapter {d}/a", adapter_edit(set_key("r", 4)))
    add(4, "adapter peft_type lowercase lora", EVAL + " --adapter {d}/a", adapter_edit(set_key("peft_type", "lora")))
    add(4, "adapter lora_alpha 1e300 (an absurd scale)", EVAL + " --adapter {d}/a",
        adapter_edit(set_key("lora_alpha", 1e300)))
    add(4, "adapter bias = all (no bias tensors)", EVAL + " --adapter {d}/a", adapter_edit(set_key("bias", "all")))
    add(4, "adapter target_modules a regex string '.*'", GEN + " --adapter {d}/a hi",
        adapter_edit(set_key("target_modules", ".*")))
    add(4, "adapter weights all NaN", EVAL + " --adapter {d}/a",
        adapter_edit(tensors_edit=lambda t: {k: v.fill_(float("nan")) for k, v in t.items()}))
    add(4, "adapter tensors as int8", EVAL + " --adapter {d}/a",
        adapter_edit(tensors_edit=lambda t: {k: v.to(__import__("torch").int8) for k, v in t.items()}))
    add(4, "adapter safetensors header length 2^62", EVAL + " --adapter {d}/a",
        adapter_edit(raw_tensors=(1 << 62).to_bytes(8, "little") + b"{}"))
    add(4, "adapter with one lora_B dropped and an extra unrelated tensor", EVAL + " --adapter {d}/a",
        adapter_edit(tensors_edit=lambda t: {**{k: v for i, (k, v) in enumerate(t.items()) if i != 1},
                                             "extra.weight": __import__("torch").zeros(2)}))
    # ---------------------------------------------------------------- 5. JSON: non-finite, repeated keys, deep
    add(5, "plot llm: the last metrics line, complete, with 1e999", "plot {d}/r",
        chain(copied("llm", "r"), edit_json("r/metrics.jsonl", lambda t: t.replace('"loss": ', '"loss": 1e999, "x": ', 1))))
    add(5, "plot sweep: config.json with a repeated key", "plot {d}/r",
        chain(copied("sweep", "r"), edit_json("r/config.json", lambda t: t.replace('"kind": "sweep"',
                                                                                   '"kind": "sweep", "kind": "llm-train"'))))
    add(5, "llm resume: config.json with lr Infinity", LLM + " --out {d}/r --resume",
        chain(copied("llm", "r"), lambda d: (d / "r" / "DONE").unlink(),
              edit_json("r/config.json", lambda t: t.replace('"lr": 0.0001', '"lr": Infinity'))))
    add(5, "llm resume: the last metrics line, complete, with -Infinity", LLM + " --out {d}/r --resume",
        chain(copied("llm", "r"), lambda d: (d / "r" / "DONE").unlink(),
              edit_json("r/metrics.jsonl", lambda t: t.replace('"loss": ', '"loss": -Infinity, "y": ', 1))))
    add(5, "merge: a shard's config.json with NaN", "merge {d}/s1 {d}/s2 --out {d}/m",
        chain(shards, edit_json("s1/config.json", lambda t: t.replace('"lr": 1.0', '"lr": NaN'))))
    add(5, "JSONL question nested 50,000 deep", GSM,
        write("d.jsonl", '{"question": ' + "[" * 50000 + "]" * 50000 + ', "answer": "#### 2"}\n' + ROW * 3))
    add(5, "JSONL answer an integer of 5000 digits", GSM,
        write("d.jsonl", '{"question": "big?", "answer": 1' + "0" * 5000 + '}\n' + ROW * 3))
    add(5, "llm eval --test-path JSONL with a UTF-8 BOM", EVAL + " --dataset gsm8k --test-path {d}/d.jsonl",
        write("d.jsonl", b"\xef\xbb\xbf" + ROW.encode() * 2, True), expect=either([]))
    # ---------------------------------------------------------------- 6. text that cannot be encoded
    add(6, "llm generate: a prompt with a non-UTF-8 byte", GEN + f" 'what is 1+1{XFF}'")
    add(6, "llm JSONL answer with a lone low surrogate \\udfff", GSM,
        write("d.jsonl", '{"question": "1+1?", "answer": "#### 2\\udfff"}\n' * 4))
    add(6, "sweep --out with a non-UTF-8 byte in its name", SWEEP + f" --out {{d}}/r{XFF}", expect=either([f"r{XFF}/DONE"]))
    add(6, "sweep --bandit path with a non-UTF-8 byte", NOARMS + f" --bandit {{d}}/b{XFF}.toml --out {{d}}/r",
        write(f"b{XFF}.toml", "means=[0,1]\n"), expect=either(["r/DONE"]))
    add(6, "sweep --config path with a non-UTF-8 byte", SWEEP + f" --config {{d}}/c{XFF}.toml --out {{d}}/r",
        write(f"c{XFF}.toml", "steps=10\n"), expect=either(["r/DONE"]))
    add(6, "llm train --data-path with a non-UTF-8 byte", LLM + f" --dataset gsm8k --data-path {{d}}/d{XFF}.jsonl"
        " --out {d}/r", write(f"d{XFF}.jsonl", ROW * 4), expect=either(["r/DONE"]))
    add(6, "demo --html path with a non-UTF-8 byte", f"demo --steps 50 --html {{d}}/p{XFF}.html",
        expect=either([f"p{XFF}.html"]))
    add(6, "plot llm --out with a non-UTF-8 byte", f"plot {{d}}/r --out {{d}}/c{XFF}", copied("llm", "r"),
        expect=either([f"c{XFF}.png"]))
    # ---------------------------------------------------------------- 7. one schema; meaningless options; bounds
    add(7, "config: rewards and arms together", NOARMS + " --config {d}/c.toml --out {d}/r",
        cfg('rewards = "0,0.5,1"\narms = 3\n'))
    add(7, "config: sigma with Bernoulli noise", SWEEP + " --config {d}/c.toml --out {d}/r", cfg("sigma = 0.5\n"))
    add(7, "llm config: epochs without offline", LLM + " --config {d}/c.toml --out {d}/r", cfg("[train]\nepochs = 3\n"))
    add(7, "bandit file: means 2e6 (past the ±1e6 of --rewards)", NOARMS + " --bandit {d}/b.toml --out {d}/r",
        bandit("means=[0,2000000]\n"))
    add(7, "bandit file: gaussian sigma 1e7 (past --sigma's 1e6)", NOARMS + " --bandit {d}/b.toml --out {d}/r",
        bandit("means=[0,1]\nnoise='gaussian'\nsigma=10000000\n"))
    add(7, "theory --contexts 3 with --rewards", "theory --rewards 0,0.5,1 --contexts 3 --baseline 0")
    add(7, "sweep --mode exact --seeds 5 (seeds mean nothing)", SWEEP.replace("--seeds 2", "--seeds 5") +
        " --mode exact --out {d}/r")
    add(7, "sweep --noise none --low 0.2 --high 3 (the drawn means' range: a note)", SWEEP +
        " --noise none --low 0.2 --high 3 --out {d}/r",
        expect=lambda d, rc, out, err: ("clean", "ran, with the note") if rc == 0 and "note: --low/--high" in err
        else ("silently wrong", f"rc {rc}, no note"))
    add(7, "sweep --mode exact --baseline-ref group", SWEEP + " --mode exact --baseline-ref group --out {d}/r")
    add(7, "llm generate --greedy --temperature 0.5", GEN + " --greedy --temperature 0.5 hi")
    add(7, "llm eval --dataset gsm8k --difficulty 5", EVAL + " --dataset gsm8k --test-path {d}/d.jsonl --difficulty 5",
        write("d.jsonl", ROW * 2))
    add(7, "llm bench --layers 1 without --arch", BENCH + " --layers 1 --json {d}/b.json")
    add(7, "llm bench --prompt-tokens 8 without --synthetic-rollouts", BENCH + " --prompt-tokens 8 --json {d}/b.json")
    add(7, "llm train --offline --sync-interval 5", LLM + " --offline --algo topr --sync-interval 5 --out {d}/r")
    add(7, "theory --arms 100000 --baseline 0:1:100000 (10^10 work)", "theory --arms 100000 --baseline 0:1:100000",
        timeout=30)
    add(7, "sweep --mode exact --arms 100000 --contexts 100000", SWEEP.replace("--arms 5", "--arms 100000") +
        " --mode exact --contexts 100000 --out {d}/r", timeout=30)
    add(7, "llm generate 2000 prompts × --n 4096", GEN + " --n 4096 " + " ".join(["hi"] * 2000), timeout=30)
    add(7, "llm bench --warmup 10^9", BENCH.replace("--warmup 0", "--warmup 1000000000") + " --json {d}/b.json",
        timeout=30)
    add(7, "llm train --eval-n 10^9 --eval-every 1", LLM.replace("--eval-n 0", "--eval-n 1000000000") +
        " --eval-every 1 --out {d}/r", timeout=30)
    # ---------------------------------------------------------------- 8. a full disk for every writer
    add(8, "full disk: sweep --out, then resume", runner=full_disk(SWEEP + " --out {d}/full/r", 120, ["full/r/DONE"]))
    add(8, "full disk: llm train --out, then the same command", runner=full_disk(
        LLM + " --out {d}/full/r", 100, ["full/r/DONE"]), timeout=120)  # the disk-full line: "the same command"
    add(8, "full disk: llm train --offline data file", runner=full_disk(
        LLM + " --offline --algo topr --offline-data {d}/full/off.pt --out {d}/r", 64, ["r/DONE", "full/off.pt"],
        filled=True), timeout=120)
    add(8, "full disk: llm bench --json", runner=full_disk(BENCH + " --json {d}/full/b.json", 64, ["full/b.json"],
                                                          filled=True))
    add(8, "full disk: demo --out", runner=full_disk("demo --steps 50 --out {d}/full/demo", 64, ["full/demo.png"],
                                                      filled=True))
    add(8, "full disk: demo --html", runner=full_disk("demo --steps 50 --html {d}/full/p.html", 64, ["full/p.html"],
                                                       filled=True))
    add(8, "full disk: plot llm --out", runner=full_disk("plot {d}/r --out {d}/full/c", 64, ["full/c.png"],
                                                         pre=copied("llm", "r"), filled=True))
    add(8, "full disk: reproduce --figures, then rerun", runner=full_disk(
        REPRO.replace("{d}/fig", "{d}/full/fig"), 120, ["full/fig/asymre-limit.png",
                                                        "full/fig/data/asymre-limit/DONE"],
        pre=cfg(REPRO_TOML, "cfg/asymre-limit.toml")), timeout=240)
    add(8, "full disk: merge --out, then rerun", runner=full_disk("merge {d}/s1 {d}/s2 --out {d}/full/m", 120,
                                                                  ["full/m/DONE"], pre=shards), timeout=120)
    add(8, "full disk: BANDITLAB_CACHE on a full disk (the kernel memo)", runner=cache_on_full_disk)
    return C


def plot_twice(d: Path):
    copy("llm", d, "r")
    a = cli(d, "plot {d}/r --out {d}/c/curves.v1")
    b = cli(d, "plot {d}/r --out {d}/c/curves.v2")
    if a[0] or b[0]:
        return classify(a[0] or b[0], "", a[2] + b[2], set())
    pngs = sorted(p.name for p in (d / "c").glob("*.png"))
    return ("clean", str(pngs)) if len(pngs) == 2 else ("data lost", f"only {pngs}")


# ------------------------------------------------------------------------------------------------ main
def run_case(c: Case, root: Path) -> dict:
    d = Path(tempfile.mkdtemp(prefix="case-", dir=root))
    t0 = time.time()
    try:
        if c.runner:
            outcome, note = c.runner(d)
        else:
            if c.setup:
                c.setup(d)
            before = snapshot(d)
            env = {k: (v.format(d=d) if isinstance(v, str) else v) for k, v in c.env.items()}
            rc, out, err = cli(d, c.args, env, c.timeout, as_nobody="read-only" in c.name or "chmod" in c.name,
                               raw="twice" in c.name)
            new = snapshot(d) - before
            NEW[d] = new
            if c.expect == REFUSE:
                outcome, note = classify(rc, out, err, new)
                if any(d.rglob("PWNED")):
                    outcome, note = "crash", "THE PAYLOAD RAN"
            else:
                outcome, note = c.expect(d, rc, out, err)
    except Exception as e:  # a broken case, not a finding
        outcome, note = "case error", f"{type(e).__name__}: {e}"
    finally:
        for p in [d, *d.rglob("*")]:  # read-only folders from the setups
            try:
                os.chmod(p, 0o755) if p.is_dir() and not p.is_symlink() else None
            except OSError:
                pass
    safe = lambda x: x.encode("utf-8", "backslashreplace").decode()  # noqa: E731  (notes may hold surrogates)
    return dict(cls=c.cls, name=safe(c.name), outcome=outcome, note=safe(note), seconds=round(time.time() - t0, 1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="run the cases whose name contains this")
    ap.add_argument("--cls", type=int, help="run one class")
    ap.add_argument("--round", type=int, choices=[4], help="run only this round's cases (round 4: names 'r4: ...')")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--json", help="write every case's record here")
    ap.add_argument("--rerun", help="a previous --json: rerun its cases that were not clean, the cases it lacks, "
                                    "and every --sample-th clean one")
    ap.add_argument("--sample", type=int, default=8)
    a = ap.parse_args()
    todo = [c for c in cases() if (not a.only or a.only in c.name) and (not a.cls or c.cls == a.cls)
            and (not a.round or c.name.startswith(f"r{a.round}: "))]
    if a.rerun:
        prev = {r["name"]: r["outcome"] for r in json.loads(Path(a.rerun).read_text())}
        clean = [c for c in todo if prev.get(c.name) == "clean"]
        todo = [c for c in todo if prev.get(c.name) != "clean"] + clean[::a.sample]
    root = Path(tempfile.mkdtemp(prefix="hostile-"))
    os.chmod(root, 0o755)
    fixtures(root)
    with ThreadPoolExecutor(a.jobs) as pool:
        records = []
        for r in pool.map(lambda c: run_case(c, root), todo):
            print(f"[{r['cls']}] {r['outcome']:<14} {r['name']}: {r['note']}", flush=True)
            records.append(r)
    print(f"\n{len(records)} cases")
    for k in range(1, 9):
        n = Counter(r["outcome"] for r in records if r["cls"] == k)
        print(f"class {k}: " + ", ".join(f"{v} {o}" for o, v in sorted(n.items())))
    print("all: " + ", ".join(f"{v} {o}" for o, v in sorted(Counter(r["outcome"] for r in records).items())))
    if a.json:
        Path(a.json).write_text(json.dumps(records, indent=1, ensure_ascii=False))
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
