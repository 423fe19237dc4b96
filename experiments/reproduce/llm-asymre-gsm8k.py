"""AsymRE's δV trend on GSM8K with SmolLM2-135M-Instruct, offline (μ = π₀), every run in one process.

`banditlab reproduce llm-asymre-gsm8k`, with its config beside it (llm-asymre-gsm8k.toml); docs/llm-gsm8k.md has
the design and the device calls (experiments/gpu/gsm8k_trend_call.sh runs `run_experiment` under a deadline).
Stages, each streaming its results into the output folder as it goes:

1. screening (llm/screen.py): k samples at T = 1 from π₀ for train problems in index order, for a share of the
   time left (screen-train.jsonl, one line per problem); the samples of the problems with 0 < successes < k are
   kept: they are the training data (μ = π₀, generated once). The same for test problems (screen-test.jsonl): the
   held-out solvable set.
2. training (llm/multirun.py): every method × seed is a LoRA adapter of the one model, trained in lockstep on
   the pool; greedy pass@1 of every run on the held-out set in one batched pass at `evals` points. The steps are
   as many as the deadline allows, measured from the first evaluation and the first step (metrics.jsonl: one
   line per run per step, one per run per evaluation).
3. π₀'s greedy pass@1 on the full test split, when `full_test_seconds` are left (summary.json).
The figure and the table read only the files (`--plot-only` redraws them). summary.json holds the machine, the
versions, the timings, the pool and the plan; table.md the comparison at the last evaluation every run reached.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

from banditlab.plumbing.folder import atomic_write

ROOT = Path(__file__).resolve().parents[2]
FILES = ("log.txt", "screen-train.jsonl", "screen-test.jsonl", "metrics.jsonl", "summary.json", "table.md")


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


def versions() -> dict:
    import importlib.metadata as md

    import torch

    out = {"python": sys.version.split()[0], "torch": torch.__version__, "cuda": torch.version.cuda}
    for name in ("transformers", "peft", "math-verify", "gguf"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    out["device_name"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    return out


class Stream:
    """The output folder: log lines, metrics lines and the summary, each written as soon as it exists."""

    def __init__(self, out: Path, echo=print):
        self.out, self._echo, self.t0 = out, echo, time.time()
        out.mkdir(parents=True, exist_ok=True)
        for f in FILES:
            (out / f).unlink(missing_ok=True)
        self.summary: dict = {"started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "stage": "start"}

    def echo(self, msg: str) -> None:
        line = f"[{time.time() - self.t0:6.1f} s] {msg}"
        self._echo(line)
        with (self.out / "log.txt").open("a") as f:
            f.write(line + "\n")

    def metrics(self, rows: list[dict]) -> None:
        with (self.out / "metrics.jsonl").open("a") as f:
            f.write("".join(json.dumps(r) + "\n" for r in rows))

    def save(self, **kw) -> None:
        self.summary.update(kw, elapsed_s=round(time.time() - self.t0, 1))
        atomic_write(self.out / "summary.json", json.dumps(self.summary, indent=1, default=str) + "\n")


def _screen(ctx, split: str, problems, until: float, keep_rows: bool):
    """Screen one split until `until`; (counts, [(problem index, rollouts of its k samples, correct)])."""
    from banditlab_llm.screen import screen

    cfg, sc = ctx["cfg"], ctx["cfg"]["screen"]
    kept = []

    def keep(idx, r, ok):
        for j, i in enumerate(idx):
            rows = list(range(j * sc["k"], (j + 1) * sc["k"]))
            good = sum(bool(ok[x]) for x in rows)
            if keep_rows and (sc["keep"] == "all" or 0 < good < sc["k"]):
                kept.append((i, r.select(rows), [ok[x] for x in rows]))

    t = time.time()
    counts = screen(ctx["backend"], ctx["tok"], ctx["grader"], problems, ctx["out"] / f"screen-{split}.jsonl",
                    sc["k"], cfg["train"]["max_new_tokens"], cfg["train"]["temperature"], sc["batch_problems"],
                    deadline=until, echo=ctx["stream"].echo, on_batch=keep)
    ctx["stream"].save(**{f"screen_{split}_seconds": round(time.time() - t, 1)})
    return counts, kept


def offline_data(kept, tok, model, cfg, device):
    """The pool's samples as one `Offline` dataset: ±1 rewards (nan: unparsable gold), log μ = log π₀."""
    import torch

    from banditlab_llm.multirun import Offline, behaviour_logprobs, join_rollouts

    r = join_rollouts([x[1] for x in kept], tok.pad_token_id)
    rewards = torch.tensor([math.nan if c is None else (1.0 if c else -1.0) for x in kept for c in x[2]])
    chunk = max(1, cfg["train"]["micro_batch"] or cfg["train"]["prompts_per_step"] * cfg["screen"]["k"])
    logmu = behaviour_logprobs(model, r, cfg["train"]["temperature"], chunk, device)
    return Offline(r, rewards, logmu, cfg["screen"]["k"])


def run_experiment(cfg: dict, out: Path, deadline: float = math.inf, echo=print, device: str = "auto",
                   commit: str = "unknown") -> dict:
    """Screening, lockstep training of every run and the evaluations, all streamed into `out`, until `deadline`
    (a time.time() value); returns the summary."""
    import torch

    from banditlab.errors import RunFailed
    from banditlab.registry.objectives import parse_algo_args
    from banditlab_llm.data import build_prompt, load_problems
    from banditlab_llm.generation import HFBackend
    from banditlab_llm.grading import Grader
    from banditlab.plumbing.threads import use_threads
    from banditlab_llm.models import load_model, resolve_device
    from banditlab_llm.multirun import MultiRun, pass_at_1, sync
    from banditlab_llm.screen import pool_of

    st = Stream(Path(out), echo)
    tr, sc = cfg["train"], cfg["screen"]
    device, dtype = resolve_device(device, "auto")
    use_threads(0, elements=None)  # a language model's rule
    st.save(commit=commit, device=device, versions=versions(), config=cfg, deadline_in_s=round(deadline - time.time(), 1))
    st.echo(f"device {device} ({st.summary['versions']['device_name']}), {len(cfg['methods'])} methods × "
            f"{len(cfg['seeds'])} seeds, deadline in {deadline - time.time():.0f} s")
    splits = {s: load_problems("gsm8k", s, str(data_file(cfg[f"{s}_file"])), sc["max_problems"] or None)
              for s in ("train", "test")}  # before the model: a bad file fails fast
    t = time.time()
    model, tok = load_model(tr["model"], dtype, device, 0)
    st.save(stage="loaded", load_seconds=round(time.time() - t, 1))
    st.echo(f"loaded {tr['model']} in {time.time() - t:.1f} s")
    grader = Grader("pm1")
    ctx = {"cfg": cfg, "tok": tok, "grader": grader, "out": Path(out), "stream": st,
           "backend": HFBackend(model, tok, min(tr["gen_batch"], sc["batch_problems"] * sc["k"]))}
    left = deadline - time.time()
    counts, kept = _screen(ctx, "train", splits["train"], time.time() + sc["train_share"] * left, True)
    test_counts, _ = _screen(ctx, "test", splits["test"], time.time() + sc["test_share"] * left, False)
    pool = {"k": sc["k"], "keep": sc["keep"], "train": pool_of(counts, sc["k"], sc["keep"]),
            "test": pool_of(test_counts, sc["k"], sc["keep"])}
    st.save(stage="screened", pool=pool)
    for s in ("train", "test"):
        p = pool[s]
        st.echo(f"pool {s}: {len(p['index'])} of {p['screened']} screened problems (π₀ pass@{sc['k']} rate "
                f"{p['mean_pass_rate_screened']:.3f}; never {p['never']}, always {p['always']})")
        if not p["index"]:
            raise RunFailed(f"llm-asymre-gsm8k: the {s} pool is empty after {p['screened']} screened problems")
    data = offline_data(kept, tok, model, cfg, device)
    runs = [(label, seed, parse_algo_args(spec[0], list(spec[1:]))) for seed in cfg["seeds"]
            for label, spec in cfg["methods"].items()]
    mr = MultiRun(model, tok, runs, data, device, tr["lr"], tr["lora_r"], tr["lora_alpha"],
                  prompts_per_step=tr["prompts_per_step"], grad_clip=tr["grad_clip"], temperature=tr["temperature"],
                  micro_batch=tr["micro_batch"])
    held = [splits["test"][i] for i in pool["test"]["index"][: tr["eval_n"]]]
    prompts, golds = [build_prompt(tok, p.question) for p in held], [p.answer for p in held]

    probe_tokens = min(16, tr["max_new_tokens"])
    probe = mr.time_eval_modes(prompts[: max(1, tr["gen_batch"] // len(runs))], probe_tokens, tr["gen_batch"])
    mode = min((m for m in ("mixed", "sequential") if m in probe), key=probe.get, default=None)
    if mode is None:
        raise RunFailed(f"llm-asymre-gsm8k: neither evaluation mode runs: {probe}")
    st.save(eval_probe_seconds=probe, eval_mode=mode)
    said = ", ".join(f"{k} {v}" if isinstance(v, str) else f"{k} {v:.2f} s" for k, v in probe.items())
    st.echo(f"evaluation: {mode} ({said} for {probe_tokens} new tokens of {len(runs)} runs × "
            f"{min(len(prompts), max(1, tr['gen_batch'] // len(runs)))} problems)")

    def evaluate() -> float:
        sync()
        t = time.time()
        texts, tokens = mr.greedy(prompts, tr["max_new_tokens"], mode, tr["gen_batch"])
        sync()
        secs = time.time() - t
        rows = [{"kind": "eval", "method": run.label, "seed": run.seed, "step": mr.step,
                 "held_out_pass1": pass_at_1(grader, x, golds), "n": len(golds)} for run, x in zip(mr.runs, texts)]
        st.metrics(rows)
        st.echo(f"step {mr.step}: held-out pass@1 " + ", ".join(
            f"{lab} {sum(r['held_out_pass1'] for r in rows if r['method'] == lab) / len(cfg['seeds']):.3f}"
            for lab in cfg["methods"]) + f" ({secs:.1f} s, {tokens / max(secs, 1e-9):.0f} tokens/s)")
        st.save(last_eval={"step": mr.step, "seconds": round(secs, 2), "tokens": tokens,
                           "tokens_per_s": round(tokens / max(secs, 1e-9))})
        return time.time() - t

    def step() -> float:
        t = time.time()
        rows = mr.train_step()
        sync()
        secs = time.time() - t
        st.metrics([{"kind": "train", **r} for r in rows])
        tokens = sum(r["tokens"] for r in rows)
        st.save(stage="training", steps=mr.step, last_step={"seconds": round(secs, 2), "tokens": tokens,
                                                            "train_tokens_per_s": round(tokens / max(secs, 1e-9))})
        return secs

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    eval_s = evaluate()
    step_s = step()
    reserve = cfg["full_test_seconds"] + 5
    avail = deadline - time.time() - reserve - eval_s
    evals = max(2, tr["evals"])
    fit = (avail - (evals - 2) * eval_s) // step_s if math.isfinite(avail) else tr["max_steps"]
    steps = int(min(tr["max_steps"], max(1, 1 + fit)))
    every = max(1, math.ceil(steps / (evals - 1)))
    st.save(plan={"steps": steps, "eval_every": every, "first_eval_s": round(eval_s, 1), "first_step_s": round(step_s, 2)})
    st.echo(f"plan: {steps} steps, an evaluation every {every} (first evaluation {eval_s:.1f} s, first step of "
            f"{len(runs)} runs {step_s:.2f} s)")
    while True:
        if mr.step % every == 0 or mr.step == steps:
            eval_s = evaluate()
        if mr.step >= steps or time.time() + step_s + eval_s > deadline - reserve:
            if mr.step % every and mr.step != steps:
                evaluate()
            break
        step_s = step()
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None
    st.save(stage="trained", steps=mr.step, peak_memory_gb=peak)
    atomic_write(Path(out) / "table.md", table_markdown(cfg, Path(out)))
    st.echo("table:\n" + (Path(out) / "table.md").read_text())
    if cfg["full_test_seconds"] and time.time() + cfg["full_test_seconds"] <= deadline:
        t = time.time()
        cap = cfg.get("full_test_problems") or None  # a rehearsal's size; the shipped config has none
        full = (splits["test"] if not sc["max_problems"] and not cap
                else load_problems("gsm8k", "test", str(data_file(cfg["test_file"])), cap))
        with mr.model.disable_adapter():
            r = HFBackend(mr.model, tok, tr["gen_batch"]).generate([build_prompt(tok, p.question) for p in full], 1,
                                                                   tr["max_new_tokens"], greedy=True)
        acc = pass_at_1(grader, r.texts, [p.answer for p in full])
        secs = time.time() - t
        st.save(pi0_full_test={"pass_at_1": acc, "n": len(full), "seconds": round(secs, 1),
                               "tokens": int(r.completion_mask.sum())})
        st.echo(f"π₀ greedy pass@1 on the full test split: {acc:.4f} on {len(full)} problems in {secs:.1f} s")
    st.save(stage="done", complete=True)
    return st.summary


def run(cfg, data: Path, tick):
    import torch

    if not torch.cuda.is_available():
        print("llm-asymre-gsm8k: no CUDA device here; the experiment is sized for one GPU (docs/llm-gsm8k.md) and on "
              "this CPU it runs for hours")
    run_experiment(cfg, data, echo=lambda msg: None)


# ------------------------------------------------------------------------------------------ figure and table
def frames(data: Path):
    """(train rows, eval rows) of metrics.jsonl as frames (a last line cut off by a killed call is skipped)."""
    import pandas as pd

    rows = []
    for line in (data / "metrics.jsonl").read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    df = pd.DataFrame(rows)
    if df.empty:
        raise ValueError("no metrics")
    return df[df.kind == "train"], df[df.kind == "eval"]


def last_common_eval(ev, runs: int) -> int:
    """The last step at which every run has an evaluation."""
    counts = ev.groupby("step").size()
    full = counts[counts >= runs]
    if full.empty:
        raise ValueError("no evaluation reached by every run")
    return int(full.index.max())


def table_markdown(cfg: dict, data: Path) -> str:
    """Per method, at the last evaluation every run reached: held-out greedy pass@1 (mean and per seed), its
    change from step 0, and the entropy and smallest ratio of the last step."""
    summary = json.loads((data / "summary.json").read_text())
    cfg = summary.get("config", cfg)  # the methods and seeds the call ran (a rehearsal runs fewer)
    train, ev = frames(data)
    n_runs = len(cfg["methods"]) * len(cfg["seeds"])
    s = last_common_eval(ev, n_runs)
    pool = summary["pool"]
    lines = [f"Held-out greedy pass@1 at step {s} (the last evaluation every run reached), {len(cfg['seeds'])} seeds. "
             f"Pool: {len(pool['train']['index'])} train problems of {pool['train']['screened']} screened, "
             f"{len(pool['test']['index'])} held-out of {pool['test']['screened']} (0 < successes < {pool['k']} in "
             f"{pool['k']} samples of π₀ at T = 1, keep = {pool['keep']}).", "",
             "| method | pass@1, mean | per seed | change from π₀ | entropy (last step) | min π/μ (run) |",
             "|---|---|---|---|---|---|"]
    for m in cfg["methods"]:
        e = ev[ev.method == m]
        end, start = e[e.step == s].sort_values("seed"), e[e.step == 0]
        t = train[(train.method == m) & (train.step <= s)]
        last = t[t.step == t.step.max()] if len(t) else t
        ent = f"{last.entropy.mean():.3f}" if len(last) else "–"
        rmin = f"{t.ratio_min.min():.2g}" if len(t) else "–"
        lines.append(f"| {m} | {end.held_out_pass1.mean():.3f} | "
                     f"{', '.join(f'{x:.3f}' for x in end.held_out_pass1)} | "
                     f"{end.held_out_pass1.mean() - start.held_out_pass1.mean():+.3f} | {ent} | {rmin} |")
    return "\n".join(lines) + "\n"


COLORS = {"AsymRE δV = −0.3": "#08519c", "AsymRE δV = −0.1": "#4292c6", "AsymRE δV = 0": "#000000",
          "AsymRE δV = +0.1": "#ef3b2c"}
OTHERS = ["#41ab5d", "#ff7f00", "#984ea3", "#a65628"]


def plot_llm_asymre_gsm8k(cfg, data: Path, out: Path, plt):
    """Held-out pass@1, token entropy, smallest ratio π/μ and KL(μ‖π) per step, one line per method (mean over
    seeds, band = min–max over seeds); the table beside it as OUT.md."""
    from matplotlib.ticker import MaxNLocator

    from banditlab.plots import ratio_scale

    train, ev = frames(data)
    summary = json.loads((data / "summary.json").read_text())
    cfg = summary.get("config", cfg)  # the methods and seeds the call ran (a rehearsal runs fewer)
    others = iter(OTHERS)
    colors = {m: COLORS.get(m) or next(others) for m in cfg["methods"]}
    fig, axes = plt.subplots(1, 4, figsize=(22, 5.2), layout="constrained", sharex=True)
    panels = [(ev, "held_out_pass1", "held-out pass@1 (greedy)"), (train, "entropy", "token entropy of π (nats)"),
              (train, "ratio_min", r"smallest token ratio $\pi/\mu$ in the batch"),
              (train, "kl_behaviour", r"KL($\mu\,\|\,\pi$) per token (nats)")]
    for ax, (df, col, title) in zip(axes, panels):
        for m in cfg["methods"]:
            g = df[df.method == m]
            if g.empty:
                continue
            s = g.groupby("step")[col].agg(["mean", "min", "max"])
            n = g.seed.nunique()
            ax.plot(s.index, s["mean"], "o-" if col == "held_out_pass1" else "-", color=colors[m], lw=2, ms=4,
                    label=f"{m} ({n} seed{'s' * (n > 1)})")
            if n > 1:
                ax.fill_between(s.index, s["min"], s["max"], color=colors[m], alpha=0.15, lw=0)
        ax.set_title(title)
        ax.set_xlabel("step (offline: μ = π₀ throughout)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if col == "ratio_min":
            ratio_scale(ax, [y for line in ax.get_lines() for y in line.get_ydata()])
    axes[0].set_ylim(bottom=0)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=len(cfg["methods"]), fontsize=11)
    pool, tr = summary["pool"], summary["config"]["train"]
    fig.suptitle(f"AsymRE δV sweep on GSM8K, offline (μ = π₀), {tr['model']} + LoRA r {tr['lora_r']}, ±1 rewards: "
                 f"{len(pool['train']['index'])} train problems (0 < successes < {pool['k']} of π₀), "
                 f"{tr['prompts_per_step']} × {pool['k']} samples/step, lr {tr['lr']:g}; "
                 f"{summary['versions']['device_name']}; mean over seeds, band = min–max"
                 + ("" if summary.get("stage") == "done" else
                    f"\nPARTIAL: the call was cut off in stage '{summary.get('stage')}' after step "
                    f"{summary.get('steps', 0)}"), fontsize=12, color="black" if summary.get("stage") == "done"
                 else "#b30000")
    Path(f"{out}.md").write_text(table_markdown(cfg, data))
    return fig


CONFIG = "llm-asymre-gsm8k"
SIMS = 1
FIGURES = {"llm-asymre-gsm8k": ("AsymRE δV sweep on GSM8K, offline (SmolLM2, one GPU call)", plot_llm_asymre_gsm8k)}
