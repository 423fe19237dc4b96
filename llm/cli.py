"""`banditlab llm ...`: train, evaluate and sample causal LMs with the banditlab objectives."""

from __future__ import annotations

import sys
from typing import List, Optional

import typer

from banditlab.errors import UsageError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="LoRA training of LLMs on GSM8K / MATH.")
O = typer.Option


@app.command()
def train(
    model: Optional[str] = O(None, help="tiny | smollm2 | PATH.gguf | folder | hub name [default: tiny]"),
    dataset: Optional[str] = O(None, help="gsm8k | math | arithmetic [default: arithmetic]"),
    data_path: Optional[str] = O(None, help="local train JSONL (default: the hub)"),
    test_path: Optional[str] = O(None, help="local test JSONL (default: the hub)"),
    difficulty: Optional[int] = O(None, help="arithmetic operands per problem [default: 2]"),
    n_train: Optional[int] = O(None, help="first n train problems (0: all)"),
    algo: Optional[str] = O(None, help="objective from `banditlab algos` [default: asymre]"),
    algo_args: Optional[List[str]] = O(None, "--algo-arg", help="objective parameter key=value (repeatable)"),
    baseline_offset: Optional[float] = O(None, help="δV: the baseline is group mean + δV"),
    group_size: Optional[int] = O(None, help="G samples per prompt [default: 8]"),
    prompts_per_step: Optional[int] = O(None, help="prompts per step [default: 4]"),
    steps: Optional[int] = O(None, help="optimizer steps [default: 50]"),
    sync_interval: Optional[int] = O(None, help="behaviour refresh every N steps (1: on-policy)"),
    sync_offset: Optional[int] = O(None, help="behaviour is π from K steps before the refresh"),
    offline: Optional[bool] = O(None, "--offline/--online", help="one dataset from π₀ (TOPR)"),
    epochs: Optional[int] = O(None, help="passes over the offline dataset"),
    max_new_tokens: Optional[int] = O(None), temperature: Optional[float] = O(None), top_p: Optional[float] = O(None),
    lr: Optional[float] = O(None, help="AdamW learning rate [default: 1e-4]"),
    schedule: Optional[str] = O(None, help="constant | linear | cosine"), warmup: Optional[int] = O(None),
    grad_clip: Optional[float] = O(None), micro_batch: Optional[int] = O(None, help="prompts per backward"),
    lora_r: Optional[int] = O(None), lora_alpha: Optional[int] = O(None), agg: Optional[str] = O(None),
    reward: Optional[str] = O(None, help="pm1 | 01"), eval_every: Optional[int] = O(None),
    eval_n: Optional[int] = O(None), seed: Optional[int] = O(None), device: Optional[str] = O(None),
    dtype: Optional[str] = O(None), backend: Optional[str] = O(None, help="transformers | vllm"),
    tensorboard: Optional[bool] = O(None, "--tensorboard"),
    out: Optional[str] = O(None, help="run folder"), resume: bool = O(False, "--resume", help="continue --out"),
    config: Optional[str] = O(None, help="TOML file (experiments/llm/*.toml); the command line wins"),
    progress: bool = O(True, "--progress/--no-progress"),
):
    """Train a LoRA adapter off-policy with a registry objective; metrics to OUT/metrics.jsonl."""
    from .train import Trainer, config_from

    opts = {k: v for k, v in locals().items() if k not in ("config", "resume", "progress")}
    cfg = config_from(opts, config)
    out = Trainer(cfg, progress=progress and sys.stderr.isatty(), echo=typer.echo).run(resume=resume)
    typer.echo(f"metrics: {out}/metrics.jsonl, adapter: {out}/adapter")


@app.command("eval")
def evaluate(
    model: str = O("tiny", help="model spec"), adapter: Optional[str] = O(None, help="a run's adapter folder"),
    dataset: str = O("arithmetic"), test_path: Optional[str] = O(None), n: int = O(64, help="test problems"),
    max_new_tokens: int = O(256), difficulty: int = O(2), seed: int = O(0),
):
    """Greedy pass@1 of a model (plus an optional trained adapter) on a test split."""
    from .data import DataError, build_prompt, load_problems
    from .generation import HFBackend
    from .grading import Grader
    from .models import ModelError, load_model

    try:
        problems = load_problems(dataset, "test", test_path, n, seed, difficulty)
        m, tok = load_model(model)
    except (DataError, ModelError) as err:
        raise UsageError(str(err)) from None
    if adapter:
        from peft import PeftModel

        try:
            m = PeftModel.from_pretrained(m, adapter)
        except (OSError, ValueError) as err:
            raise UsageError(f"--adapter: cannot load {adapter}: {str(err).splitlines()[0][:120]}") from None
    r = HFBackend(m, tok).generate([build_prompt(tok, p.question) for p in problems], 1, max_new_tokens, greedy=True)
    ok = Grader().correct(r.texts, [p.answer for p in problems])
    scored = [x for x in ok if x is not None]
    typer.echo(f"pass@1 = {sum(scored) / max(1, len(scored)):.3f} on {len(scored)} problems "
               f"({len(ok) - len(scored)} unparsable golds skipped)")


@app.command()
def generate(
    prompt: List[str] = typer.Argument(..., help="questions"), model: str = O("tiny"),
    adapter: Optional[str] = O(None), n: int = O(1, help="samples per prompt"), max_new_tokens: int = O(128),
    temperature: float = O(1.0), greedy: bool = O(False, "--greedy"), seed: int = O(0),
):
    """Sample completions (with their per-token behaviour log-probs summed) for ad-hoc questions."""
    from .data import build_prompt
    from .generation import HFBackend
    from .models import ModelError, load_model

    try:
        m, tok = load_model(model)
    except ModelError as err:
        raise UsageError(str(err)) from None
    if adapter:
        from peft import PeftModel

        m = PeftModel.from_pretrained(m, adapter)
    r = HFBackend(m, tok).generate([build_prompt(tok, q) for q in prompt], n, max_new_tokens, temperature,
                                   seed=seed, greedy=greedy)
    for i, text in enumerate(r.texts):
        typer.echo(f"[{i}] log μ = {float(r.logprobs[i].sum()):.2f}: {text}")
