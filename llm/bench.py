"""`banditlab llm bench`: what one training step costs on this device, before renting one.

    banditlab llm bench --model smollm2 --prompts-per-step 8 --group-size 8        # real generation and training
    banditlab llm bench --config experiments/llm/asymre-math-llama31-8b.toml --arch llama-3.1-8b --synthetic-rollouts
    banditlab llm bench --arch smollm2-135m --layers 2 --synthetic-rollouts --max-new-tokens 16   # seconds, on a CPU

It builds the trainer of `banditlab llm train` (`llm.train.Trainer`, the same objective registry and `train_step`),
runs `--warmup` untimed steps and `--steps` timed ones, and reports seconds per step, generation tokens/s (when it
generates), training tokens/s (completion tokens through forward + backward + optimizer), peak memory (CUDA: the
allocator's max allocated and max reserved since the first warm-up step; CPU: the process's peak resident set, model
loading included; both with what is held after loading, before the first step) and whether the step fits (a CUDA
out-of-memory error is caught: fits = false). The result is printed and written as JSON.

`--arch NAME` builds a published architecture with random weights (llm/archs: no download); `--layers N` keeps its
widths and drops layers (for a CPU). `--synthetic-rollouts` skips generation and trains on random token ids: every
completion has the full `--max-new-tokens` (the real run's worst case) after a prompt of `--prompt-tokens`, and each
group is half +1, half −1 rewards, so every objective has a gradient. Random weights generate nonsense, so `--arch`
needs `--synthetic-rollouts`. Deliberately left out: the vLLM backend (the config's `backend` is replaced by
transformers and the report says so), evaluation, checkpoints.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import tempfile
from pathlib import Path

import torch

from banditlab.errors import UsageError

GB = 2**30


def synthetic_trainer(cfg, prompt_tokens: int, echo):
    """A Trainer whose rollouts are random full-length completions; everything after the rollouts is the real
    `train_step`."""
    from .generation import Rollouts
    from .grading import REWARDS
    from .train import Trainer

    class SyntheticTrainer(Trainer):
        def rollouts(self, idx):
            c = self.cfg
            n, G, T = len(idx) * c.group_size, c.group_size, c.max_new_tokens
            g = torch.Generator().manual_seed(c.seed * 1_000_003 + self.step)
            vocab = self.model.get_input_embeddings().num_embeddings
            ids = lambda cols: torch.randint(3, vocab, (n, cols), generator=g)
            ones = lambda cols: torch.ones(n, cols, dtype=torch.long)
            r = Rollouts(ids(prompt_tokens), ones(prompt_tokens), ids(T), ones(T), torch.zeros(n, T), [""] * n)
            half = torch.arange(G) < (G + 1) // 2
            correct = torch.cat([half[torch.randperm(G, generator=g)] for _ in idx]).tolist()
            hi, lo = REWARDS[c.reward]
            rewards = torch.tensor([hi if x else lo for x in correct], dtype=torch.float)
            return r, rewards, correct, self._groups(len(idx))

    return SyntheticTrainer(cfg, echo=echo)


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(l.split(":", 1)[1].strip() for l in lines if l.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "cpu"


def peak_memory(device: str) -> dict:
    if device.startswith("cuda"):
        return {"cuda_max_allocated_gb": torch.cuda.max_memory_allocated() / GB,
                "cuda_max_reserved_gb": torch.cuda.max_memory_reserved() / GB}
    return {"cpu_peak_rss_gb": _peak_rss_kb() * 1024 / GB}


def _peak_rss_kb() -> int:
    """This process's own peak resident size: /proc/self/status's VmHWM, which exec resets. ru_maxrss (the
    fallback off Linux) keeps the high-water mark of the process that forked this one (a test runner, a shell
    of several GB) across exec, so a child of a large process would report the parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def loaded_memory(device: str) -> dict:
    """Memory held once the model, adapter and optimizer exist (before any step): the steps' own share is the
    peak minus this."""
    if device.startswith("cuda"):
        return {"cuda_allocated_after_load_gb": torch.cuda.memory_allocated() / GB}
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return {"cpu_rss_after_load_gb": pages * os.sysconf("SC_PAGE_SIZE") / GB}
    except (OSError, ValueError, IndexError):
        return {}


def _oom(err: BaseException) -> str:
    text = " ".join(str(err).split())[:200]
    return text if "out of memory" in text.lower() else f"CUDA out of memory: {text}"


def run_bench(cfg, **kw) -> dict:
    """Warm-up and timed `train_step`s of `cfg` on its device; the result as a dict (see the module docstring).
    Without `cfg.out` the run folder is a temporary one, removed afterwards."""
    if cfg.out:
        return _bench(cfg, **kw)
    with tempfile.TemporaryDirectory(prefix="banditlab-bench-") as tmp:
        cfg.out = tmp
        return _bench(cfg, **kw)


def _bench(cfg, *, warmup: int = 1, steps: int = 3, synthetic: bool = False, prompt_tokens: int = 256,
           echo=print) -> dict:
    cfg.steps, cfg.eval_n, cfg.eval_train_n, cfg.checkpoint_every = warmup + steps, 0, 0, 10**7
    if cfg.offline and not synthetic and not cfg.n_train:  # the offline dataset: only the prompts the bench uses
        cfg.n_train = cfg.prompts_per_step * (warmup + steps)
    res = {"fits": True, "error": None, "warmup_steps": warmup, "timed_steps": steps, "synthetic_rollouts": synthetic,
           "prompt_tokens": prompt_tokens if synthetic else None}
    from .train import Trainer

    trainer, rows, done = None, [], 0
    try:
        trainer = synthetic_trainer(cfg, prompt_tokens, echo) if synthetic else Trainer(cfg, echo=echo)
        res.update(describe(trainer), after_load=loaded_memory(trainer.device))
        if trainer.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats(trainer.device)
        for done in range(warmup + steps):
            logs = trainer.train_step()
            if done >= warmup:
                rows.append(logs)
    except torch.cuda.OutOfMemoryError as err:
        res.update(fits=False, error=_oom(err), failed_at=f"step {done + 1}" if trainer else "loading the model")
    res["peak_memory"] = peak_memory(trainer.device if trainer else "cuda")  # no trainer: the load ran out of CUDA memory
    res.update(summarise(rows, synthetic, cfg))
    return res


def describe(trainer) -> dict:
    m = trainer.model
    dtype = next(m.parameters()).dtype
    return {"device": trainer.device, "device_name": device_name(trainer.device), "dtype": str(dtype).split(".")[-1],
            "parameters": sum(p.numel() for p in m.parameters()),
            "trainable_parameters": sum(p.numel() for p in m.parameters() if p.requires_grad),
            "torch": torch.__version__, "transformers": __import__("transformers").__version__}


def summarise(rows: list[dict], synthetic: bool, cfg) -> dict:
    """Per-step means of the timed rows, and the lists of what was measured and what was skipped."""
    out = {"seconds_per_step": None, "train_tokens_per_s": None, "gen_tokens_per_s": None,
           "measured": [], "skipped": []}
    if rows:
        secs = sum(r["step_seconds"] for r in rows)
        # a step's token count is a whole number, logged as a rate and seconds: rounded back to it
        train_tok = sum(round(r["train_tokens_per_s"] * r["train_seconds"]) for r in rows)
        out["seconds_per_step"] = secs / len(rows)
        out["train_tokens_per_s"] = train_tok / max(sum(r["train_seconds"] for r in rows), 1e-9)
        out["completion_tokens_per_step"] = train_tok / len(rows)
        out["measured"] += ["seconds per step", "training tokens/s", "peak memory"]
        gen_secs = sum(r["gen_seconds"] for r in rows)
        if not synthetic and not cfg.offline:
            gen_tok = sum(round(r["gen_tokens_per_s"] * r["gen_seconds"]) for r in rows)
            out["gen_tokens_per_s"] = gen_tok / max(gen_secs, 1e-9)
            out["measured"].append("generation tokens/s (sampling, transformers backend)")
    if synthetic:
        out["skipped"].append(f"generation (--synthetic-rollouts: random ids, completions of the full "
                              f"{cfg.max_new_tokens} tokens)")
    elif cfg.offline:
        out["skipped"].append("generation tokens/s (offline: the dataset is generated once, in the warm-up)")
    out["skipped"] += ["evaluation", "checkpoints"]
    return out


def report_lines(res: dict, cfg, label: str) -> list[str]:
    mem = res.get("peak_memory", {})
    memtxt = (f"peak CUDA memory {mem['cuda_max_allocated_gb']:.2f} GB allocated, "
              f"{mem['cuda_max_reserved_gb']:.2f} GB reserved" if "cuda_max_allocated_gb" in mem else
              f"peak RSS {mem['cpu_peak_rss_gb']:.2f} GB (the process, model loading included)"
              if "cpu_peak_rss_gb" in mem else "peak memory not measured")
    shape = (f"{cfg.prompts_per_step} prompts × G {cfg.group_size}, "
             + (f"{res['prompt_tokens']} prompt + {cfg.max_new_tokens} completion tokens"
                if res["synthetic_rollouts"] else f"≤ {cfg.max_new_tokens} new tokens")
             + f", micro-batch {cfg.micro_batch or 'all'} sequence(s) of {cfg.prompts_per_step * cfg.group_size}, "
             f"{cfg.algo}")
    lines = [f"llm bench: {label} on {res.get('device', cfg.device)} ({res.get('device_name', '?')}, "
             f"{res.get('dtype', '?')}): {shape}"]
    if res["fits"]:
        gen = f", generation {res['gen_tokens_per_s']:.0f} tokens/s" if res["gen_tokens_per_s"] is not None else ""
        lines.append(f"measured: {res['timed_steps']} timed step(s) after {res['warmup_steps']} warm-up: "
                     f"{res['seconds_per_step']:.3f} s/step, training {res['train_tokens_per_s']:.0f} tokens/s{gen}, "
                     f"{memtxt}; fits: yes")
    else:
        lines.append(f"fits: no: {res['error']} at {res.get('failed_at', '?')}; {memtxt}")
    lines.append("skipped: " + "; ".join(res["skipped"]))
    return lines


def write_json(res: dict, path: str | Path) -> Path:
    from banditlab.plumbing.folder import atomic_write

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(res, indent=2, default=str) + "\n")
    return path


# the training options that the bench sets itself (`_bench`), so a --set of them would mean nothing
BENCH_SETS_ITSELF = {"steps": "--warmup + --steps", "eval_n": "no evaluation", "eval_train_n": "no evaluation",
                     "eval_every": "no evaluation", "eval_max_new_tokens": "no evaluation",
                     "checkpoint_every": "no checkpoints"}


def parse_sets(sets: list[str], given: dict) -> dict:
    """The `--set KEY=VALUE` options as {field: value} (each value read as TOML, else as text). Refused in one line:
    a malformed one, an unknown key, a key given twice, a key whose own option (in `given`, the training options
    given on the command line) is given too, and a key the bench sets itself (BENCH_SETS_ITSELF)."""
    import tomllib

    from .config import TrainConfig, spelling

    extra = {}
    for s in sets or []:
        key, eq, value = s.partition("=")
        key = key.strip().replace("-", "_")
        if not eq or not key:
            raise UsageError(f"--set: expected KEY=VALUE, got {s!r}")
        if key not in TrainConfig.__dataclass_fields__:
            raise UsageError(f"--set: unknown training option {key!r}")
        if key in extra:
            raise UsageError(f"--set: {key} is given twice")
        if given.get(key) is not None:
            raise UsageError(f"{spelling(TrainConfig, key)} and --set {key}: the same option given twice; give one")
        if key in BENCH_SETS_ITSELF:
            raise UsageError(f"--set {key}: the bench sets it ({BENCH_SETS_ITSELF[key]})")
        try:
            extra[key] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            extra[key] = value
    return extra


def bench_config(options: dict, config_file: str | None, arch: str | None, layers: int, sets: list[str],
                 synthetic: bool = False):
    """The TrainConfig of a bench: CLI options over `--set KEY=VALUE` (parse_sets) over the TOML file over the
    defaults, with `--arch` as the model spec and the transformers backend; synthetic rollouts read no data set (the
    trainer gets generated arithmetic prompts, which it never uses). Returns (cfg, label, notes)."""
    from .train import config_from

    extra = parse_sets(sets, options)
    cfg = config_from({**extra, **{k: v for k, v in options.items() if v is not None}}, config_file)
    notes = []
    if arch:
        if options.get("model"):
            raise UsageError("--arch and --model: give one (--arch builds random weights of a named architecture)")
        from .archs import parse

        try:
            parse(arch)
        except ValueError as err:
            raise UsageError(f"--arch: {err}") from None
        if ":" in arch and layers:
            raise UsageError("--layers and NAME:layers=N: give the depth once")
        if cfg.model != "tiny":  # a config file's model
            notes.append(f"model {cfg.model!r} replaced by arch:{arch} with random weights")
        cfg.model = f"arch:{arch}" + (f":layers={layers}" if layers else "")
    if synthetic and (cfg.dataset, cfg.data_path) != ("arithmetic", ""):
        notes.append(f"dataset {cfg.dataset} not read (synthetic rollouts)")
        cfg.dataset, cfg.data_path, cfg.test_path, cfg.n_train = "arithmetic", "", "", 0
    if cfg.backend != "transformers":
        notes.append(f"backend {cfg.backend} replaced by transformers")
        cfg.backend = "transformers"
    return cfg, cfg.model + (" (random weights)" if arch else ""), notes
