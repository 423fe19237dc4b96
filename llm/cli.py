"""`banditlab llm ...`: train, evaluate and sample causal LMs with the banditlab objectives."""

from __future__ import annotations

import os
import sys
from typing import List, Optional

import typer

from banditlab.errors import UsageError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="LoRA training of LLMs on GSM8K / MATH.")
O = typer.Option


@app.callback()
def main(verbose: bool = O(False, "--verbose", help="let third-party progress bars and warnings through "
                                                  "(also BANDITLAB_DEBUG=1)")):
    if verbose:
        os.environ["BANDITLAB_DEBUG"] = "1"
    from banditlab.progress import silence_third_party

    silence_third_party()


def _need_llm_extra() -> None:
    """One line instead of a ModuleNotFoundError when the `llm` extra is missing."""
    import importlib.util

    missing = [m for m in ("transformers", "peft", "math_verify") if importlib.util.find_spec(m) is None]
    if missing:
        raise UsageError(f"banditlab llm needs the llm extra ({', '.join(missing)} missing): "
                         "pip install torch==2.13.0 -e '.[llm]'")


def _h(name: str) -> str:
    from .config import option_help

    return option_help(name)


@app.command()
def train(
    model: Optional[str] = O(None, help=_h("model")), dataset: Optional[str] = O(None, help=_h("dataset")),
    data_path: Optional[str] = O(None, help=_h("data_path")), test_path: Optional[str] = O(None, help=_h("test_path")),
    difficulty: Optional[int] = O(None, help=_h("difficulty")), n_train: Optional[int] = O(None, help=_h("n_train")),
    algo: Optional[str] = O(None, help=_h("algo") + " (see `banditlab algos`)"),
    algo_args: Optional[List[str]] = O(None, "--algo-arg", help="objective parameter key=value (repeatable)"),
    baseline_offset: Optional[float] = O(None, help=_h("baseline_offset")),
    group_size: Optional[int] = O(None, help=_h("group_size")),
    prompts_per_step: Optional[int] = O(None, help=_h("prompts_per_step")),
    steps: Optional[int] = O(None, help=_h("steps")),
    sync_interval: Optional[int] = O(None, help=_h("sync_interval")),
    sync_offset: Optional[int] = O(None, help=_h("sync_offset")),
    offline: Optional[bool] = O(None, "--offline/--online", help=_h("offline")),
    offline_data: Optional[str] = O(None, help=_h("offline_data")),
    epochs: Optional[int] = O(None, help=_h("epochs")),
    max_new_tokens: Optional[int] = O(None, help=_h("max_new_tokens")),
    temperature: Optional[float] = O(None, help=_h("temperature")), top_p: Optional[float] = O(None, help=_h("top_p")),
    lr: Optional[float] = O(None, help=_h("lr")), schedule: Optional[str] = O(None, help=_h("schedule")),
    warmup: Optional[int] = O(None, help=_h("warmup")), weight_decay: Optional[float] = O(None, help=_h("weight_decay")),
    grad_clip: Optional[float] = O(None, help=_h("grad_clip")),
    micro_batch: Optional[int] = O(None, help=_h("micro_batch")),
    grad_checkpointing: Optional[str] = O(None, help=_h("grad_checkpointing")),
    lora_r: Optional[int] = O(None, help=_h("lora_r")), lora_alpha: Optional[int] = O(None, help=_h("lora_alpha")),
    lora_dropout: Optional[float] = O(None, help=_h("lora_dropout")),
    lora_targets: Optional[str] = O(None, help=_h("lora_targets")),
    agg: Optional[str] = O(None, help=_h("agg")), reward: Optional[str] = O(None, help=_h("reward")),
    eval_every: Optional[int] = O(None, help=_h("eval_every")), eval_n: Optional[int] = O(None, help=_h("eval_n")),
    eval_train_n: Optional[int] = O(None, help=_h("eval_train_n")),
    eval_max_new_tokens: Optional[int] = O(None, help=_h("eval_max_new_tokens")),
    seed: Optional[int] = O(None, help=_h("seed")), device: Optional[str] = O(None, help=_h("device")),
    dtype: Optional[str] = O(None, help=_h("dtype")), backend: Optional[str] = O(None, help=_h("backend")),
    gen_batch_size: Optional[int] = O(None, help=_h("gen_batch_size")),
    threads: Optional[int] = O(None, help=_h("threads")),
    checkpoint_every: Optional[int] = O(None, help=_h("checkpoint_every")),
    tensorboard: Optional[bool] = O(None, "--tensorboard", help=_h("tensorboard")),
    out: Optional[str] = O(None, help="run folder (default: runs/llm-ALGO-TIME)"),
    resume: bool = O(False, "--resume", help="continue the run in --out from its checkpoint"),
    config: Optional[str] = O(None, help="TOML file (experiments/llm/*.toml); the command line wins"),
    progress: bool = O(True, "--progress/--no-progress", help="show a progress bar"),
):
    """Train a LoRA adapter off-policy with a registry objective; metrics to OUT/metrics.jsonl."""
    _need_llm_extra()
    from .train import Trainer, check_resume, config_from

    opts = {k: v for k, v in locals().items() if k not in ("config", "resume", "progress")}
    cfg = config_from(opts, config)
    check_resume(cfg, resume)
    from banditlab.progress import enabled

    out = Trainer(cfg, progress=progress and enabled(), echo=typer.echo).run(resume=resume)
    if os.environ.get("RANK", "0") == "0":  # one line from a multi-process run
        typer.echo(f"metrics: {out}/metrics.jsonl, adapter: {out}/adapter")


def _load(model: str, adapter: Optional[str], device: str, dtype: str, threads: int = 0):
    """(model, tokenizer, device) for eval/generate, with an optional trained adapter; one-line errors."""
    from .models import ModelError, cpu_threads, load_model, resolve_device

    if threads < 0:
        raise UsageError(f"--threads: must be ≥ 0, got {threads}")
    cpu_threads(threads)
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


@app.command("eval")
def evaluate(
    model: str = O("tiny", help="model spec: tiny | smollm2 | PATH.gguf | folder | hub name"),
    adapter: Optional[str] = O(None, help="a run's adapter folder (OUT/adapter)"),
    dataset: str = O("arithmetic", help="gsm8k | math | arithmetic"),
    test_path: Optional[str] = O(None, help="local test JSONL (default: the hub)"),
    n: int = O(64, help="test problems (0: the whole split)"),
    max_new_tokens: int = O(256, help="generation budget per problem"),
    difficulty: int = O(2, help="arithmetic operands per problem"), seed: int = O(0, help="arithmetic seed"),
    device: str = O("auto", help="auto | cpu | cuda | cuda:N"),
    dtype: str = O("auto", help="auto (bf16 on CUDA, float32 on CPU) | float32 | bfloat16"),
    batch_size: int = O(0, help="sequences per generate() call (0: from the device's free memory)"),
    backend: str = O("transformers", help="transformers | vllm (the vllm extra; needs a model folder)"),
    threads: int = O(0, help="torch CPU threads (0: half the cores, at least 1)"),
):
    """Greedy pass@1 of a model (plus an optional trained adapter) on a test split, in batched greedy passes."""
    import time

    _need_llm_extra()
    from .data import DataError, build_prompt, load_problems
    from .generation import HFBackend
    from .grading import Grader

    from .config import check_options

    check_options({"--n": ("eval_n", n), "--max-new-tokens": ("max_new_tokens", max_new_tokens),
                   "--batch-size": ("gen_batch_size", batch_size), "--difficulty": ("difficulty", difficulty),
                   "--seed": ("seed", seed), "--threads": ("threads", threads)})
    if n == 0 and dataset == "arithmetic":
        raise UsageError("--n 0 means the whole split, and arithmetic problems are generated: give a count ≥ 1")
    try:
        problems = load_problems(dataset, "test", test_path, n or None, seed, difficulty)
    except DataError as err:
        raise UsageError(str(err)) from None
    if backend not in ("transformers", "vllm"):
        raise UsageError(f"--backend: expected transformers or vllm, got {backend!r}")
    m, tok, dev = _load(model, adapter, device, dtype, threads)
    prompts = [build_prompt(tok, p.question) for p in problems]
    if backend == "vllm":
        from .train import make_vllm_backend

        if adapter is None:  # vLLM serves the base model; an adapter-less PEFT wrapper keeps one code path
            from .models import add_lora

            m = add_lora(m)
        engine = make_vllm_backend(model, m, tok, m.peft_config["default"].r, next(m.parameters()).dtype, dev, 0,
                                   max_new_tokens)
        try:
            engine.sync(None, 0, slot="eval") if adapter else None
            t0 = time.perf_counter()
            r = engine.generate(prompts, 1, max_new_tokens, greedy=True, slot="eval")
            seconds = time.perf_counter() - t0
        finally:
            engine.close()
    else:
        from banditlab.progress import Bar

        t0 = time.perf_counter()
        with Bar(f"eval, {len(prompts)} problems", total=1, unit="tokens") as bar:
            r = HFBackend(m, tok, batch_size).generate(prompts, 1, max_new_tokens, greedy=True, bar=bar)
        seconds = time.perf_counter() - t0
    grader = Grader()
    ok = grader.correct(r.texts, [p.answer for p in problems])
    grader.close()
    scored = [x for x in ok if x is not None]
    tokens = int(r.completion_mask.sum())
    typer.echo(f"pass@1 = {sum(scored) / max(1, len(scored)):.3f} on {len(scored)} problems "
               f"({len(ok) - len(scored)} unparsable golds skipped); {tokens} tokens in {seconds:.1f} s "
               f"= {tokens / max(seconds, 1e-9):.0f} tokens/s on {dev}")


@app.command()
def generate(
    prompt: List[str] = typer.Argument(..., help="questions"),
    model: str = O("tiny", help="model spec: tiny | smollm2 | PATH.gguf | folder | hub name"),
    adapter: Optional[str] = O(None, help="a run's adapter folder (OUT/adapter)"),
    n: int = O(1, help="samples per prompt"), max_new_tokens: int = O(128, help="generation budget"),
    temperature: float = O(1.0, help="sampling temperature (> 0)"),
    greedy: bool = O(False, "--greedy", help="argmax decoding instead of sampling"),
    seed: int = O(0, help="sampling seed"), device: str = O("auto", help="auto | cpu | cuda | cuda:N"),
    dtype: str = O("auto", help="auto | float32 | bfloat16"),
    threads: int = O(0, help="torch CPU threads (0: half the cores, at least 1)"),
):
    """Sample completions (with their per-token behaviour log-probs summed) for ad-hoc questions."""
    _need_llm_extra()
    from .data import DataError, build_prompt, check_length
    from .generation import HFBackend

    from .config import check_options

    check_options({"--n": ("group_size", n), "--max-new-tokens": ("max_new_tokens", max_new_tokens),
                   "--temperature": ("temperature", temperature), "--seed": ("seed", seed),
                   "--threads": ("threads", threads)})
    for i, q in enumerate(prompt, 1):
        try:
            check_length(q)
        except DataError as err:
            raise UsageError(f"PROMPT {i}: {err}") from None
    m, tok, _ = _load(model, adapter, device, dtype, threads)
    r = HFBackend(m, tok).generate([build_prompt(tok, q) for q in prompt], n, max_new_tokens, temperature,
                                   seed=seed, greedy=greedy, with_logprobs=True)
    for i, text in enumerate(r.texts):
        typer.echo(f"[{i}] log μ = {float(r.logprobs[i].sum()):.2f}: {text}")


@app.command()
def bench(
    model: Optional[str] = O(None, help="model spec: tiny | smollm2 | PATH.gguf | folder | hub name (default: tiny)"),
    arch: Optional[str] = O(None, help="a named architecture with random weights instead of --model: "
                                       "llama-3.1-8b | llama-3-8b | qwen2.5-1.5b | smollm2-135m (llm/archs)"),
    layers: int = O(0, help="with --arch: keep this many layers, every width unchanged (0: all; scales down for a CPU)"),
    config: Optional[str] = O(None, help="TOML file of `llm train` (experiments/llm/*.toml); the command line wins"),
    synthetic_rollouts: bool = O(False, "--synthetic-rollouts",
                                 help="skip generation: train on random ids, completions of the full --max-new-tokens"),
    prompt_tokens: int = O(256, help="with --synthetic-rollouts: prompt length in tokens"),
    warmup: int = O(1, help="untimed steps first"), steps: int = O(3, help="timed training steps"),
    algo: Optional[str] = O(None, help=_h("algo")), group_size: Optional[int] = O(None, help=_h("group_size")),
    prompts_per_step: Optional[int] = O(None, help=_h("prompts_per_step")),
    max_new_tokens: Optional[int] = O(None, help=_h("max_new_tokens")),
    micro_batch: Optional[int] = O(None, help=_h("micro_batch")),
    gen_batch_size: Optional[int] = O(None, help=_h("gen_batch_size")),
    dataset: Optional[str] = O(None, help=_h("dataset")), data_path: Optional[str] = O(None, help=_h("data_path")),
    device: Optional[str] = O(None, help=_h("device")), dtype: Optional[str] = O(None, help=_h("dtype")),
    seed: Optional[int] = O(None, help=_h("seed")),
    sets: Optional[List[str]] = O(None, "--set", help="any `llm train` option as KEY=VALUE (repeatable), e.g. "
                                                      "--set lora_r=64"),
    json_out: Optional[str] = O(None, "--json", help="where the JSON result goes (default: runs/llm-bench-TIME.json)"),
):
    """Time warm-up + N training steps of the real trainer on this device: s/step, tokens/s, peak memory, fits."""
    import time
    from dataclasses import asdict

    _need_llm_extra()
    from .bench import bench_config, report_lines, run_bench, write_json

    if steps < 1 or warmup < 0 or prompt_tokens < 1 or layers < 0:
        raise UsageError("--steps and --prompt-tokens must be ≥ 1, --warmup and --layers ≥ 0")
    from .config import check_options

    check_options({"--steps": ("steps", steps), "--warmup": ("warmup", warmup),
                   "--prompt-tokens": ("max_new_tokens", prompt_tokens)})  # a token count, the generation's bound
    if arch and not synthetic_rollouts:
        raise UsageError("--arch builds random weights, whose generations are nonsense: add --synthetic-rollouts")
    opts = dict(model=model, algo=algo, group_size=group_size, prompts_per_step=prompts_per_step,
                max_new_tokens=max_new_tokens, micro_batch=micro_batch, gen_batch_size=gen_batch_size,
                dataset=dataset, data_path=data_path, device=device, dtype=dtype, seed=seed)
    from banditlab.safeio import writable_target

    json_path = writable_target(json_out or f"runs/llm-bench-{time.strftime('%Y%m%d-%H%M%S')}.json", "--json")
    cfg, label, notes = bench_config(opts, config, arch, layers, sets, synthetic_rollouts)
    res = run_bench(cfg, warmup=warmup, steps=steps, synthetic=synthetic_rollouts, prompt_tokens=prompt_tokens,
                    echo=lambda *_: None)
    res.update(label=label, notes=notes, config=asdict(cfg))
    lines = report_lines(res, cfg, label) + [f"note: {n}" for n in notes]
    path = write_json(res, json_path)
    for line in lines + [f"json: {path}"]:
        typer.echo(line)
