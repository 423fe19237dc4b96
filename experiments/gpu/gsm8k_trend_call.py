"""One device call of the GSM8K δV trend (docs/llm-gsm8k.md): screening and runs until a deadline, packed to $OUT.

On the device, from the repository root, with .gpu/b carried (and .gpu/a carried by the call just before):
    bash experiments/gpu/gsm8k_trend_call.sh 1      # part 1: screening, then seed 0 of every method
    bash experiments/gpu/gsm8k_trend_call.sh 2      # part 2 (and 3, ...): every seed; finished runs are skipped
Between two calls, on the machine that started them: python experiments/gpu/gsm8k_trend_collect.py FILES_AT

State between calls lives in figures/data/llm-asymre-gsm8k/ of the working tree (untracked files travel with it):
screening files, pool.json, and the runs' config.json, metrics.jsonl, final.json and DONE. A run without DONE
restarts whole (no checkpoint travels back). Every 30 s and at the end the data folder, without checkpoints and
adapters, is packed into $OUT/gsm8k-trend-partP.tar.gz, so a call cut off still returns what it finished; at the
deadline the running processes are killed. The table goes to the log; with every run done, the figure and the
table land in $OUT too.
`--rehearse` runs the same on CPU with the tiny model at tiny sizes (tests/test_gsm8k_trend.py).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tarfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kit  # noqa: E402  (gives the uninstalled checkout the import name banditlab_llm)

ROOT = Path(__file__).resolve().parents[2]
NAME = "llm-asymre-gsm8k"


_MOD = None


def experiment_module():
    """experiments/reproduce/llm-asymre-gsm8k.py (a file name with hyphens: loaded by path), once."""
    global _MOD
    if _MOD is None:
        path = ROOT / "experiments" / "reproduce" / f"{NAME}.py"
        spec = importlib.util.spec_from_file_location("llm_asymre_gsm8k", path)
        _MOD = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(_MOD)
    return _MOD


def rehearsal_config(cfg: dict) -> dict:
    """The shipped config at CPU sizes: the tiny model, the shipped GSM8K slices, 2 methods × 2 seeds, 2 steps."""
    cfg = {**cfg, "seeds": [0, 1], "jobs": 0, "pool_file": "", "final_eval_n": 6, "final_eval_batch": 6,
           "train_file": "tests/data/gsm8k/train-sample.jsonl", "test_file": "tests/data/gsm8k/test-sample.jsonl"}
    cfg["screen"] = {**cfg["screen"], "k": 2, "train_seconds": 60, "test_seconds": 60, "batch_problems": 8,
                     "max_problems": 8, "keep": "all"}  # the random tiny model solves nothing: keep every problem
    cfg["train"] = {**cfg["train"], "model": "tiny", "group_size": 2, "prompts_per_step": 2, "steps": 2,
                    "sync_interval": 2, "max_new_tokens": 6, "eval_every": 1, "eval_n": 4, "gen_batch_size": 8}
    cfg["methods"] = {k: v for k, v in cfg["methods"].items() if k in ("AsymRE δV = −0.1", "AsymRE δV = +0.1")}
    return cfg


def pack(data: Path, dest: Path) -> None:
    """data/ without checkpoints, adapters and locks, as a .tar.gz written atomically."""
    skip = set(experiment_module().PACKED_OUT)
    tmp = dest.with_suffix(".tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        tar.add(data, arcname=data.name, filter=lambda t: None if Path(t.name).name in skip else t)
    os.replace(tmp, dest)


def draw(cfg: dict, data: Path, out: Path) -> list[Path]:
    """The figure (PNG, PDF) and the table (Markdown) of whatever runs are in `data`, into `out`."""
    from banditlab.plots import save, style

    out.mkdir(parents=True, exist_ok=True)
    plt = style(seaborn=True)
    fig = experiment_module().plot_llm_asymre_gsm8k(cfg, data, out / NAME, plt)
    made = save(fig, out / NAME)
    plt.close(fig)
    return made + [out / f"{NAME}.md"]


def run_span(data: Path, runs: list[dict], since: float) -> tuple[int, float, float]:
    """(n, span, busy) of the runs finished after `since`: span from the first one's start (config.json) to the
    last one's end (DONE), busy the sum of their own wall times. busy / span is how many runs the GPU carried at
    once, span / n the seconds per finished run: the measure of `--jobs` (compare a call with --jobs 1)."""
    ends = [((data / r["folder"] / "config.json").stat().st_mtime,
             (data / r["folder"] / "DONE").stat().st_mtime) for r in runs
            if (data / r["folder"] / "DONE").exists() and (data / r["folder"] / "DONE").stat().st_mtime >= since]
    if not ends:
        return 0, 0.0, 0.0
    return len(ends), max(e for _, e in ends) - min(s for s, _ in ends), sum(e - s for s, e in ends)


def main(argv=None) -> int:
    kit.expose_llm_package()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", type=int, required=True, help="1: screening + the first seed; 2, 3, ...: every seed")
    ap.add_argument("--deadline-s", type=float, default=510, help="seconds from start until running jobs are killed")
    ap.add_argument("--out", default=os.environ.get("OUT", "runs/gsm8k-trend"), help="where the packed results go")
    ap.add_argument("--data", default=f"figures/data/{NAME}", help="the experiment's data folder")
    ap.add_argument("--jobs", type=int, default=None, help="runs at once (default: the config's `jobs`)")
    ap.add_argument("--configs", default=None, help="folder with an alternative llm-asymre-gsm8k.toml (lr ablation)")
    ap.add_argument("--rehearse", action="store_true", help="CPU, tiny model, tiny sizes")
    a = ap.parse_args(argv)
    t0 = time.time()
    from banditlab.errors import RunFailed, UsageError
    from banditlab.reproduce import CONFIGS, load_config

    out, data = Path(a.out), Path(a.data)
    out.mkdir(parents=True, exist_ok=True)
    log = (out / f"gsm8k-trend-part{a.part}.log").open("a")

    def echo(msg):
        line = f"[{time.time() - t0:6.1f} s] {msg}"
        print(line, flush=True)
        log.write(line + "\n")
        log.flush()

    cfg = load_config(NAME, Path(a.configs) if a.configs else CONFIGS)
    cfg = rehearsal_config(cfg) if a.rehearse else cfg
    if a.jobs is not None:
        cfg["jobs"] = a.jobs
    seeds = cfg["seeds"][:1] if a.part == 1 else cfg["seeds"]
    dest = out / f"gsm8k-trend-part{a.part}.tar.gz"
    echo(f"part {a.part}: seeds {seeds}, {cfg['jobs']} jobs at once, deadline {a.deadline_s:.0f} s")
    try:
        done = experiment_module().run_experiment(cfg, data, seeds=seeds, deadline=t0 + a.deadline_s,
                                                  on_progress=lambda: pack(data, dest), echo=echo)
    except (UsageError, RunFailed) as err:
        echo(f"error: {err}")
        done = False
    complete = done and seeds == cfg["seeds"]
    if complete:
        (data / "DONE").write_text("complete\n")
    if data.exists():
        pack(data, dest)
    runs = json.loads((data / "runs.json").read_text()) if (data / "runs.json").exists() else []
    finished = sum((data / r["folder"] / "DONE").exists() for r in runs)
    echo(f"{finished}/{len(cfg['seeds']) * len(cfg['methods'])} runs done; packed into {dest.name}")
    if finished:  # the table always; the figure once every run is done (collect --draw shows a partial one)
        if complete:
            for f in draw(cfg, data, out):
                echo(f"drew {f.name}")
        echo("\n" + experiment_module().table_markdown(cfg, data))
    n, span, busy = run_span(data, runs, since=t0)
    if n:
        echo(f"{n} runs finished in this call in {span:.0f} s: {span / n:.0f} s per run, {busy / span:.2f} runs at "
             f"once on average ({cfg['jobs']} jobs)")
    (out / f"gsm8k-trend-part{a.part}.json").write_text(json.dumps(
        {"part": a.part, "complete": complete, "runs_done": finished, "seconds": time.time() - t0,
         "jobs": cfg["jobs"], "runs_finished_here": n, "run_stage_seconds": span, "run_seconds_sum": busy}, indent=1))
    log.close()
    return 0 if done else 3


if __name__ == "__main__":
    sys.exit(main())
