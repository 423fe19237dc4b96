"""`banditlab llm ...`: train, evaluate and sample causal LMs with the banditlab objectives."""

from __future__ import annotations

import os
from typing import Optional

import typer

from banditlab.cli.options import Controls, command, make
from banditlab.errors import UsageError
from banditlab.plumbing.threads import LLMThreadsOption, use_threads

from .config import (BENCH_TRAIN_OPTIONS, EVAL_TOKENS_MAX, GENERATE_TOKENS_MAX, BenchConfig, EvalConfig,
                     GenerateConfig, ResumeOption, TrainConfig, check_options, check_work)

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="LoRA training of LLMs on generated arithmetic (the default dataset), GSM8K or MATH-500.")
O = typer.Option


@app.callback()
def main(verbose: bool = O(False, "--verbose", help="let third-party progress bars and warnings through "
                                                  "(also BANDITLAB_DEBUG=1)")):
    if verbose:
        os.environ["BANDITLAB_DEBUG"] = "1"
    from banditlab.plumbing.progress import silence_third_party

    silence_third_party()


def _need_llm_extra() -> None:
    """One line instead of a ModuleNotFoundError when the `llm` extra is missing."""
    import importlib.util

    missing = [m for m in ("transformers", "peft", "math_verify") if importlib.util.find_spec(m) is None]
    if missing:
        raise UsageError(f"banditlab llm needs the llm extra ({', '.join(missing)} missing): "
                         "pip install torch==2.13.0 -e '.[llm]'")


@command(app, TrainConfig, Controls, ResumeOption)
def train(options: dict, controls: dict, resume_option: dict):
    """Train a LoRA adapter off-policy with a registry objective; metrics to OUT/metrics.jsonl."""
    _need_llm_extra()
    from .train import Trainer, check_out, config_from

    ctl, resume = make(Controls, controls), make(ResumeOption, resume_option).resume
    cfg = config_from(options, ctl.config or None)
    check_out(cfg, resume)
    out = Trainer(cfg, progress=ctl.progress, echo=typer.echo).run(resume=resume)  # sets the threads
    if os.environ.get("RANK", "0") == "0":  # one line from a multi-process run
        typer.echo(f"metrics: {out}/metrics.jsonl, adapter: {out}/adapter")


def _load(model: str, adapter: Optional[str], device: str, dtype: str, threads: int = 0):
    """(model, tokenizer, device) for eval/generate, with an optional trained adapter; one-line errors."""
    from .models import ModelError, load_model, resolve_device

    use_threads(threads, elements=None)
    try:
        dev, dt = resolve_device(device, dtype)
        m, tok = load_model(model, dt, dev)
    except ModelError as err:
        raise UsageError(str(err)) from None
    if adapter:
        from .models import load_adapter

        try:
            m = load_adapter(m, adapter).to(dev)
        except ModelError as err:
            raise UsageError(str(err)) from None
    return m, tok, dev


@command(app, EvalConfig, name="eval")
def evaluate(options: dict):
    """Greedy pass@1 of a model (plus an optional trained adapter) on a test split, in batched greedy passes."""
    import time

    _need_llm_extra()
    from .data import DataError, build_prompt, load_problems
    from .generation import make_backend
    from .grading import Grader

    c = make(EvalConfig, options)
    model, adapter, dataset, n, max_new_tokens = c.model, c.adapter or None, c.dataset, c.n, c.max_new_tokens
    if c.backend not in ("transformers", "vllm"):
        raise UsageError(f"--backend: expected transformers or vllm, got {c.backend!r}")
    check_options(c, options)
    if n == 0 and dataset == "arithmetic":
        raise UsageError("--n 0 means the whole split, and arithmetic problems are generated: give a count ≥ 1")
    if dataset == "arithmetic":  # generated: counted before generating them
        check_work([("--n", n), ("--max-new-tokens", max_new_tokens)], EVAL_TOKENS_MAX, "llm eval")
    try:
        problems = load_problems(dataset, "test", c.test_path or None, n or None, c.seed, c.difficulty)
    except DataError as err:
        raise UsageError(str(err)) from None
    check_work([("--n" if n else "--n 0 (the whole split)", len(problems)), ("--max-new-tokens", max_new_tokens)],
               EVAL_TOKENS_MAX, "llm eval")
    m, tok, dev = _load(model, adapter, c.device, c.dtype, c.threads)
    prompts = [build_prompt(tok, p.question) for p in problems]
    if c.backend == "vllm" and adapter is None:
        from .models import add_lora

        m = add_lora(m)  # vLLM serves the base model; an adapter-less PEFT wrapper keeps one code path
    engine = make_backend(c.backend, model, m, tok, dev, max_new_tokens, c.batch_size)
    if c.backend == "vllm":
        try:
            engine.sync(None, 0, slot="eval") if adapter else None
            t0 = time.perf_counter()
            r = engine.generate(prompts, 1, max_new_tokens, greedy=True, slot="eval")
            seconds = time.perf_counter() - t0
        finally:
            engine.close()
    else:
        from banditlab.plumbing.progress import Bar

        t0 = time.perf_counter()
        with Bar(f"eval, {len(prompts)} problems", total=1, unit="tokens") as bar:
            r = engine.generate(prompts, 1, max_new_tokens, greedy=True, bar=bar)
        seconds = time.perf_counter() - t0
    grader = Grader()
    ok = grader.correct(r.texts, [p.answer for p in problems])
    grader.close()
    scored = [x for x in ok if x is not None]
    tokens = int(r.completion_mask.sum())
    typer.echo(f"pass@1 = {sum(scored) / max(1, len(scored)):.3f} on {len(scored)} problems "
               f"({len(ok) - len(scored)} unparsable golds skipped); {tokens} tokens in {seconds:.1f} s "
               f"= {tokens / max(seconds, 1e-9):.0f} tokens/s on {dev}")


@command(app, GenerateConfig)
def generate(options: dict):
    """Sample completions (with their per-token behaviour log-probs summed) for ad-hoc questions."""
    _need_llm_extra()
    from .data import DataError, build_prompt, check_length
    from .generation import HFBackend

    c = make(GenerateConfig, options)
    check_options(c, options)
    for i, q in enumerate(c.prompt, 1):
        try:
            check_length(q)
        except DataError as err:
            raise UsageError(f"QUESTION {i}: {err}") from None
    check_work([("QUESTION", len(c.prompt)), ("--n", c.n), ("--max-new-tokens", c.max_new_tokens)],
               GENERATE_TOKENS_MAX, "llm generate")
    m, tok, _ = _load(c.model, c.adapter or None, c.device, c.dtype, c.threads)
    r = HFBackend(m, tok).generate([build_prompt(tok, q) for q in c.prompt], c.n, c.max_new_tokens, c.temperature,
                                   seed=c.seed, greedy=c.greedy, with_logprobs=True)
    for i, text in enumerate(r.texts):
        typer.echo(f"[{i}] log μ = {float(r.logprobs[i].sum()):.2f}: {text}")


@command(app, BenchConfig, (TrainConfig, BENCH_TRAIN_OPTIONS), LLMThreadsOption, (Controls, ("config",)))
def bench(options: dict, train_options: dict, threads: dict, controls: dict):
    """Time warm-up + N training steps of the real trainer on this device: s/step, tokens/s, peak memory, fits."""
    from dataclasses import asdict

    _need_llm_extra()
    from .bench import bench_config, report_lines, run_bench, write_json

    b = make(BenchConfig, options)
    check_options(b, {**options, **train_options})
    from banditlab.plumbing.folder import default_name
    from banditlab.plumbing.safeio import writable_target

    json_path = writable_target(b.json_out or default_name("llm-bench", suffix=".json"), "--json")
    if threads:  # --threads given: the trainer sets them (llm.train.Trainer)
        train_options["threads"] = make(LLMThreadsOption, threads).threads
    cfg, label, notes = bench_config(train_options, make(Controls, controls).config or None, b.arch or None,
                                     b.layers, b.sets, b.synthetic_rollouts)
    res = run_bench(cfg, warmup=b.warmup, steps=b.steps, synthetic=b.synthetic_rollouts,
                    prompt_tokens=b.prompt_tokens, echo=lambda *_: None)
    res.update(label=label, notes=notes, config=asdict(cfg))
    lines = report_lines(res, cfg, label) + [f"note: {n}" for n in notes]
    path = write_json(res, json_path)
    for line in lines + [f"json: {path}"]:
        typer.echo(line)
