"""AsymRE's δV trend on GSM8K with SmolLM2-135M-Instruct on one GPU: screening, concurrent runs, figure, table.

`banditlab reproduce llm-asymre-gsm8k`, with its config beside it (llm-asymre-gsm8k.toml); docs/llm-gsm8k.md
has the design, the budget and the device commands. Three stages, each a set of jobs run as separate processes
(`jobs` at once on the one GPU; `jobs = 0` runs them one after another in this process):

1. screening (llm/screen.py): π₀'s successes in k samples on GSM8K train problems (the training pool:
   0 < successes < k) and test problems (the held-out "solvable" set), time-boxed and resumable, plus π₀'s greedy
   pass@1 on the full test split. The result, pool.json, is committed beside the config so later runs skip it.
2. runs: every (seed, method) trains with llm.train.Trainer on the pool (behaviour refreshed every
   `sync_interval` steps, greedy pass@1 on the solvable set every `eval_every` steps), then measures greedy
   pass@1 on the full test split. A run folder with DONE is skipped; any other is restarted whole (checkpoints
   do not travel back from a device call), or resumed where its checkpoint is still on disk.
3. the figure and the table read only the files (`--plot-only` redraws them).

Every job is a dict written to jobs/NAME.json and executed by `python THIS_FILE worker jobs/NAME.json`.
Deliberately left out: several adapters in one process (one process per run is simpler and isolates failures).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from banditlab.runfolder import atomic_write, is_complete, mark_complete, unmark

ROOT = Path(__file__).resolve().parents[2]
PACKED_OUT = ("checkpoint.pt", "checkpoint.pt.tmp", "adapter", ".lock", "offline.pt")  # never leave the device


def data_file(name: str) -> Path:
    """A data path: absolute, under the repository, or under $BANDITLAB_SHARED/data or ../shared/data."""
    from banditlab.errors import UsageError

    roots = [Path(name), ROOT / name]
    if os.environ.get("BANDITLAB_SHARED"):
        roots.append(Path(os.environ["BANDITLAB_SHARED"]) / "data" / name)
    roots.append(ROOT.parent / "shared" / "data" / name)
    for p in roots:
        if p.is_file():
            return p
    raise UsageError(f"llm-asymre-gsm8k: data file {name} not found (set BANDITLAB_SHARED to the folder holding "
                     "data/gsm8k)")


def _slug(label: str) -> str:
    text = label.replace("−", "m").replace("+", "p").replace("δV", "dV")
    return "-".join("".join(ch if ch.isascii() and ch.isalnum() else " " for ch in text).split())


# ------------------------------------------------------------------------------------------ the jobs
def job_screen(job: dict) -> None:
    """Screen one split with π₀ (pass@k at T = 1), or measure π₀'s greedy pass@1 on the full test split."""
    from banditlab_llm.data import load_problems

    problems = load_problems("gsm8k", job["split"], job["path"], job.get("n"))  # before torch: a bad file fails fast
    from banditlab_llm.generation import HFBackend
    from banditlab_llm.grading import Grader
    from banditlab_llm.models import load_model, resolve_device
    from banditlab_llm.screen import screen

    device, dtype = resolve_device("auto", "auto")
    model, tok = load_model(job["model"], dtype, device, 0)
    grader, out = Grader(), Path(job["out"])
    if job["kind"] == "greedy":
        backend = HFBackend(model, tok, job["batch"])
        acc = _greedy(backend, tok, grader, problems, job["max_new_tokens"])
        _write_json(out, {"full_test_accuracy": acc, "n": len(problems), "device": device})
        return
    backend = HFBackend(model, tok, job["batch_problems"] * job["k"])
    screen(backend, tok, grader, problems, out, job["k"], job["max_new_tokens"], job["temperature"],
           job["batch_problems"], deadline=time.time() + job["seconds"])
    (out.parent / f"{out.stem}.done").write_text("time box over or split done\n")


def _greedy(backend, tok, grader, problems, max_new_tokens: int) -> float:
    from banditlab_llm.data import build_prompt

    r = backend.generate([build_prompt(tok, p.question) for p in problems], 1, max_new_tokens, greedy=True)
    ok = [x for x in grader.correct(r.texts, [p.answer for p in problems]) if x is not None]
    return sum(ok) / max(1, len(ok))


def job_train(job: dict) -> None:
    """One (seed, method) run on the pool, then greedy pass@1 of its final policy on the full test split."""
    from banditlab_llm.data import load_problems
    from banditlab_llm.generation import HFBackend
    from banditlab_llm.train import Trainer, config_from

    out = Path(job["train"]["out"])
    resume = (out / "checkpoint.pt").exists()
    if not resume and out.exists():
        shutil.rmtree(out)  # a run cut off on a device: its partial metrics are replaced by a whole run
    tr = Trainer(config_from(job["train"], None), echo=print)
    tr.run(resume=resume)
    unmark(out)  # the run folder is complete once final.json exists too
    full = load_problems("gsm8k", "test", job["full_test"], job["final_eval_n"])
    tr.backend = HFBackend(tr.model, tr.tok, job["final_eval_batch"])
    acc = _greedy(tr.backend, tr.tok, tr.grader, full, tr.cfg.eval_max_new_tokens or tr.cfg.max_new_tokens)
    _write_json(out / "final.json", {"full_test_accuracy": acc, "n": len(full), "step": tr.step})
    mark_complete(out)


def _write_json(path: Path, obj) -> None:
    atomic_write(path, json.dumps(obj, indent=1))


def worker(job_file: str) -> None:
    job = json.loads(Path(job_file).read_text())
    (job_train if job["kind"] == "train" else job_screen)(job)


def launch(jobs: dict[str, dict], data: Path, parallel: int, deadline: float, tick=None, on_progress=None,
           echo=print) -> list[str]:
    """Run the jobs ({name: job}), `parallel` processes at once (0: in this process); at `deadline` the running
    processes are killed. Returns the names of the jobs that did not finish (failed, killed or not started)."""
    folder, logs = data / "jobs", data / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    logs.mkdir(exist_ok=True)
    queue, running, failed = list(jobs), {}, []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // max(1, parallel))))}
    last_pack = time.time()
    while queue or running:
        while queue and len(running) < max(1, parallel) and time.time() < deadline:
            name = queue.pop(0)
            _write_json(folder / f"{name}.json", jobs[name])
            if parallel == 0:
                worker(str(folder / f"{name}.json"))
                tick and tick()
                continue
            log = open(logs / f"{name}.log", "w")
            running[name] = (subprocess.Popen([sys.executable, __file__, "worker", str(folder / f"{name}.json")],
                                              stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT), log)
            echo(f"started {name}")
        if time.time() >= deadline:
            for name, (p, log) in running.items():
                p.kill()
                p.wait()
                log.close()
                echo(f"killed {name} at the deadline")
            return failed + list(running) + queue
        for name, (p, log) in list(running.items()):
            if p.poll() is not None:
                log.close()
                del running[name]
                echo(f"{name}: {'done' if p.returncode == 0 else f'FAILED (exit {p.returncode}), see {log.name}'}")
                if p.returncode:
                    failed.append(name)
                tick and tick()
        if on_progress and time.time() - last_pack > 30:
            on_progress()
            last_pack = time.time()
        time.sleep(0.5 if running else 0)
    return failed


# ------------------------------------------------------------------------------------------ the stages
def ensure_pool(cfg: dict, data: Path, deadline: float, tick=None, echo=print) -> dict | None:
    """data/pool.json: copied from the committed pool file, or made by screening (None if the deadline came first)."""
    from banditlab.errors import RunFailed, UsageError
    from banditlab_llm.screen import pool_of, read_counts

    path, model, sc = data / "pool.json", cfg["train"]["model"], cfg["screen"]
    committed = ROOT / cfg["pool_file"] if cfg.get("pool_file") else None
    if not path.exists() and committed is not None and committed.is_file():
        shutil.copyfile(committed, path)
    if not path.exists():
        base = {"model": model, "temperature": cfg["train"]["temperature"],
                "max_new_tokens": cfg["train"]["max_new_tokens"]}
        jobs = {f"screen-{s}": {**base, "kind": "screen", "split": s, "k": sc["k"],
                                "out": str(data / f"screen-{s}.jsonl"),
                                "path": str(data_file(cfg[f"{s}_file"])), "seconds": sc[f"{s}_seconds"],
                                "batch_problems": sc["batch_problems"], "n": sc["max_problems"] or None}
                for s in ("train", "test") if not (data / f"screen-{s}.done").exists()}
        if not (data / "pi0-full-test.json").exists():
            jobs["pi0-full-test"] = {**base, "kind": "greedy", "split": "test", "out": str(data / "pi0-full-test.json"),
                                     "path": str(data_file(cfg["test_file"])), "n": cfg["final_eval_n"],
                                     "batch": cfg["final_eval_batch"]}
        left = launch(jobs, data, min(cfg["jobs"], len(jobs)), deadline, tick, echo=echo)
        if left:
            if time.time() < deadline:
                raise RunFailed(f"llm-asymre-gsm8k: screening job {left[0]} failed; see {data / 'logs'}")
            return None
        counts = {s: read_counts(data / f"screen-{s}.jsonl") for s in ("train", "test")}
        pool = {**base, "k": sc["k"], "keep": sc["keep"], "made": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "files": {"train": cfg["train_file"], "test": cfg["test_file"]},
                **{s: pool_of(counts[s], sc["k"], sc["keep"]) for s in ("train", "test")},
                "pi0_full_test": json.loads((data / "pi0-full-test.json").read_text())}
        _write_json(path, pool)
    pool = json.loads(path.read_text())
    if pool["model"] != model:
        raise UsageError(f"llm-asymre-gsm8k: {path} screened model {pool['model']!r}, the config trains {model!r}")
    for s in ("train", "test"):
        p = pool[s]
        echo(f"pool {s}: {len(p['index'])} of {p['screened']} screened problems (π₀ pass@{pool['k']} rate "
             f"{p['mean_pass_rate_screened']:.3f} screened, {p['mean_pass_rate_pool']:.3f} in the pool)")
        if not p["index"]:
            raise UsageError(f"llm-asymre-gsm8k: the {s} pool is empty: screen more problems (screen.{s}_seconds)")
    return pool


def pool_files(cfg: dict, data: Path, pool: dict) -> dict[str, Path]:
    """The pool's train and held-out problems as JSONL files (rows of the GSM8K files, ids = original indices)."""
    out = {}
    for s in ("train", "test"):
        rows = Path(data_file(cfg[f"{s}_file"])).read_text().splitlines()
        out[s] = data / f"pool-{s}.jsonl"
        out[s].write_text("".join(json.dumps({**json.loads(rows[i]), "id": f"{s}-{i}"}) + "\n"
                                  for i in pool[s]["index"]))
    return out


def run_jobs(cfg: dict, data: Path, files: dict, seeds) -> dict[str, dict]:
    """The unfinished (seed, method) runs as jobs, seed-major (an interrupted grid still has whole seeds)."""
    jobs, index = {}, []
    for seed in seeds:
        for label, spec in cfg["methods"].items():
            name = f"{_slug(label)}-s{seed}"
            index.append({"method": label, "seed": seed, "folder": name})
            algo = [a for a in spec[1:] if not a.startswith("--")]
            over = dict(a[2:].split("=", 1) for a in spec[1:] if a.startswith("--"))  # e.g. "--lr=1e-3"
            over = {k.replace("-", "_"): float(v) for k, v in over.items()}
            if is_complete(data / name):
                continue
            train = {**cfg["train"], **over, "seed": seed, "algo": spec[0], "algo_args": algo, "out": str(data / name),
                     "data_path": str(files["train"]), "test_path": str(files["test"])}
            jobs[name] = {"kind": "train", "train": train, "full_test": str(data_file(cfg["test_file"])),
                          "final_eval_n": cfg["final_eval_n"], "final_eval_batch": cfg["final_eval_batch"]}
    old = json.loads((data / "runs.json").read_text()) if (data / "runs.json").exists() else []
    seen = {r["folder"] for r in index}
    _write_json(data / "runs.json", [r for r in old if r["folder"] not in seen] + index)
    return jobs


def run_experiment(cfg: dict, data: Path, tick=None, seeds=None, deadline: float = float("inf"), on_progress=None,
                   echo=print) -> bool:
    """Screening, then the runs of `seeds` (default: all); True when every run of those seeds is DONE."""
    from banditlab.errors import RunFailed

    data.mkdir(parents=True, exist_ok=True)
    if cfg["train"]["model"] != "tiny":  # a GGUF is dequantised into the cache here, once, not by racing jobs
        from banditlab_llm.models import model_folder

        model_folder(cfg["train"]["model"])
    pool = ensure_pool(cfg, data, deadline, tick, echo)
    if pool is None:
        return False
    jobs = run_jobs(cfg, data, pool_files(cfg, data, pool), cfg["seeds"] if seeds is None else seeds)
    left = launch(jobs, data, cfg["jobs"], deadline, tick, on_progress, echo)
    failed = [n for n in left if not is_complete(data / n) and (data / "logs" / f"{n}.log").exists()
              and time.time() < deadline]
    if failed:
        raise RunFailed(f"llm-asymre-gsm8k: {len(failed)} run(s) failed, first {failed[0]}; see {data / 'logs'}")
    return not left


def run(cfg, data: Path, tick):
    import torch

    if not torch.cuda.is_available():
        print("llm-asymre-gsm8k: no CUDA device here; the experiment is sized for one H100 (two calls of ~9 min, "
              "docs/llm-gsm8k.md) and on this CPU it runs for many hours (Ctrl-C stops it; the same command goes on)")
    run_experiment(cfg, data, tick, echo=lambda msg: print(msg) if msg.startswith("pool") else None)


# ------------------------------------------------------------------------------------------ figure and table
def llm_metrics(data: Path):
    """Every run's metrics (finished or partial) as one tidy frame: method, seed, step, metric columns."""
    import pandas as pd

    rows = []
    for r in json.loads((data / "runs.json").read_text()):
        f = data / r["folder"] / "metrics.jsonl"
        if f.exists():
            for line in f.read_text().splitlines():
                try:
                    rows.append({**json.loads(line), "method": r["method"], "seed": r["seed"]})
                except json.JSONDecodeError:  # a line cut off when a device call ended
                    continue
    return pd.DataFrame(rows)


def runs_train_config(cfg: dict, data: Path) -> dict:
    """The training options the runs in `data` used (their config.json; a rehearsal shrinks the config's), or the
    config's own when no run has started."""
    for r in json.loads((data / "runs.json").read_text()):
        f = data / r["folder"] / "config.json"
        if f.exists():
            return json.loads(f.read_text())["config"]
    return cfg["train"]


def table(cfg: dict, data: Path):
    """Per method, over seeds: mean and 95 % bootstrap CI of the held-out and full-test greedy pass@1 at the end,
    the train reward over the last quarter of the steps, and the smallest token ratio of the run."""
    import numpy as np
    import pandas as pd

    from banditlab.stats import bootstrap_ci

    df, pool = llm_metrics(data), json.loads((data / "pool.json").read_text())
    rows = []
    for m in [m for m in cfg["methods"] if m in set(df.method)]:
        g = df[df.method == m]
        per_seed = []
        for seed, s in g.groupby("seed"):
            fin = data / f"{_slug(m)}-s{seed}" / "final.json"
            last = s.step.max()
            per_seed.append({"held_out": s[s.test_accuracy.notna()].sort_values("step").test_accuracy.iloc[-1]
                             if "test_accuracy" in s and s.test_accuracy.notna().any() else np.nan,
                             "full_test": json.loads(fin.read_text())["full_test_accuracy"] if fin.exists() else np.nan,
                             "reward": s[s.step > 0.75 * last].reward_mean.mean() if "reward_mean" in s else np.nan,
                             "ratio_min": s.ratio_min.min() if "ratio_min" in s else np.nan,
                             "steps": last, "done": (fin.parent / "DONE").exists()})
        ps = pd.DataFrame(per_seed)
        row = {"method": m, "seeds": len(ps), "done": int(ps.done.sum()), "steps": int(ps.steps.max())}
        for k in ("held_out", "full_test", "reward"):
            row[k], row[f"{k}_lo"], row[f"{k}_hi"] = bootstrap_ci(ps[k])
        row["ratio_min"] = float(ps.ratio_min.min())
        rows.append(row)
    return pd.DataFrame(rows), pool


def table_markdown(cfg: dict, data: Path) -> str:
    t, pool = table(cfg, data)
    ci = lambda r, k: f"{r[k]:.3f} [{r[k + '_lo']:.3f}, {r[k + '_hi']:.3f}]" if r[k + "_lo"] == r[k + "_lo"] \
        else f"{r[k]:.3f} (one seed)"
    p0 = pool["pi0_full_test"]
    lines = [f"π₀ greedy pass@1 on the full test split ({p0['n']} problems): {p0['full_test_accuracy']:.3f} "
             f"(the start of every run: LoRA starts at B = 0). Pool: {len(pool['train']['index'])} train problems of "
             f"{pool['train']['screened']} screened, {len(pool['test']['index'])} held-out of "
             f"{pool['test']['screened']} (pass@{pool['k']}, keep = {pool['keep']}); π₀'s mean pass rate "
             f"{pool['train']['mean_pass_rate_pool']:.3f} on the train pool, {pool['test']['mean_pass_rate_pool']:.3f} "
             "on the held-out set.", "",
             "| method | seeds done | held-out pass@1 (end) | full-test pass@1 (end) | train reward (last ¼) "
             "| min π/μ |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['method']} | {r['done']}/{r['seeds']} | {ci(r, 'held_out')} | {ci(r, 'full_test')} | "
              f"{ci(r, 'reward')} | {r['ratio_min']:.2g} |" for r in t.to_dict("records")]
    return "\n".join(lines) + "\n\nMean over seeds [95 % bootstrap CI]; min π/μ is the smallest token ratio seen.\n"


COLORS = ["#08519c", "#4292c6", "#000000", "#ef3b2c", "#99000d", "#41ab5d", "#ff7f00"]


def plot_llm_asymre_gsm8k(cfg, data: Path, out: Path, plt):
    """Held-out pass@1, train reward, entropy and the smallest ratio over steps per method (figure), and the
    table beside it as OUT.md."""
    from matplotlib.ticker import MaxNLocator

    from banditlab.plots import ratio_scale

    df, pool = llm_metrics(data), json.loads((data / "pool.json").read_text())
    if df.empty:
        raise ValueError("no metrics yet")
    t = runs_train_config(cfg, data)
    labels = [m for m in cfg["methods"] if m in set(df.method)]
    colors = dict(zip(cfg["methods"], COLORS * 2))  # a method keeps its colour when others are missing
    fig, axes = plt.subplots(1, 4, figsize=(22, 5.2), layout="constrained")
    panels = [("test_accuracy", "held-out solvable pass@1 (greedy)"), ("reward_mean", "train reward (±1, mean)"),
              ("entropy", "token entropy of π (nats)"),
              ("ratio_min", r"smallest token ratio $\pi/\mu$ in the batch (grey: μ ← π)")]
    for ax, (col, title) in zip(axes, panels):
        for m in labels:
            g = df[(df.method == m) & df[col].notna()] if col in df else df.iloc[:0]
            if g.empty:
                continue
            s = g.groupby("step")[col].agg(["mean", "min", "max"])
            n = g.seed.nunique()
            ax.plot(s.index, s["mean"], "o-" if col == "test_accuracy" else "-", color=colors[m], lw=2, ms=4,
                    label=f"{m} ({n} seed{'s' * (n > 1)})")
            if n > 1:
                ax.fill_between(s.index, s["min"], s["max"], color=colors[m], alpha=0.12, lw=0)
        ax.set_title(title)
        ax.set_xlabel(f"step (μ ← π every {t['sync_interval']} steps)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if col == "ratio_min":  # grey lines: the steps whose batch came from a just-refreshed μ (ratio 1)
            ratio_scale(ax, [y for line in ax.get_lines() for y in line.get_ydata()])
            for x in range(1, int(df.step.max()) + 1, t["sync_interval"]):
                ax.axvline(x, color="0.55", ls=":", lw=1.2, zorder=0)
        if col == "test_accuracy":
            ax.set_ylim(bottom=0)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=len(labels), fontsize=11)
    k = pool["k"]
    rule = f"0 < successes < {k} in {k} samples" if pool["keep"] == "mixed" else "every screened problem (rehearsal)"
    fig.suptitle(f"AsymRE δV sweep on GSM8K, {t['model']} + LoRA, ±1 rewards: {len(pool['train']['index'])} train "
                 f"problems ({rule} from π₀), G = {t['group_size']} × {t['prompts_per_step']} prompts/step, lr "
                 f"{t['lr']:g}; mean over seeds, band = min–max", fontsize=13)
    Path(f"{out}.md").write_text(table_markdown(cfg, data))
    return fig


CONFIG = "llm-asymre-gsm8k"
SIMS = 3 + 21
FIGURES = {"llm-asymre-gsm8k": ("AsymRE δV sweep on GSM8K (SmolLM2, one GPU, 2 × 9 min)", plot_llm_asymre_gsm8k)}

if __name__ == "__main__" and sys.argv[1:2] == ["worker"]:
    worker(sys.argv[2])
