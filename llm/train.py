"""Off-policy LoRA training of a causal LM on math problems with the banditlab objective registry.

    banditlab llm train --model meta-llama/Llama-3.1-8B-Instruct --dataset math --algo asymre \\
        --baseline-offset -0.1 --sync-interval 250            # the AsymRE paper's setting, on a GPU
    banditlab llm train --model tiny --dataset arithmetic --steps 20   # seconds, on a CPU

The loop (`run_loop`, behind `Trainer.run` and `train`), one optimizer step at a time (`Trainer.train_step`):
    rollouts   refresh the behaviour snapshot μ if due; sample G completions for each of `prompts_per_step`
               prompts from μ, or read them from the offline dataset (llm/rollouts.py)
    rewards    grade them (llm/grading.py)
    advantage  log μ of every completion token (the snapshot) and everything that needs whole groups, once over
               the step's batch (`objectives.prepare`)
    loss       log π of the live adapter with the same function as log μ (`logprobs.token_logprobs`); the
               registry objective on the per-token `Batch`, one backward per micro-batch
    step       one AdamW step on the LoRA weights, the gradient norm clipped
    log        the metrics row (llm/metrics.py), an evaluation when due, a checkpoint when due (llm/checkpoint.py)
Nothing here is a policy-gradient formula: that lives in banditlab/registry/objectives.py alone. The behaviour
policy's staleness (--sync-interval, --sync-offset, --offline) is the bandit simulator's `--behavior lag:N,delay:K`
(llm/rollouts.py); resume and extension are llm/checkpoint.py's.

Data parallel when launched with several processes (torchrun / accelerate launch): see llm/distributed.py.
Memory: `--grad-checkpointing` (llm/models.enable_checkpointing) and log-probs computed a chunk of tokens at a
time (`token_logprobs`); llm/memory.py estimates a step's peak. Deliberately left out: KL penalties to a reference
model (none of the three papers uses one), and packing. Micro-batches: `--micro-batch` sequences per forward and
backward, cut anywhere, inside a prompt's group too. The advantage (group means and standard deviations, RED-Drop's
choices), the objective's row weights and the whole batch's denominators are computed once over the step's batch
(`objectives.prepare`) and each micro-batch is a slice of it (`objectives.select`), so the accumulated gradient
equals the full-batch gradient for every objective and aggregation. M2PO is the exception: its mask ranks the
current log-ratios of the batch it is given, so it is exact only with one micro-batch (`--micro-batch 0`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from banditlab.errors import UsageError
from banditlab.plumbing.folder import Cadence, Interrupted, default_name
from banditlab.plumbing.threads import use_threads
from banditlab.registry.objectives import Batch

from . import checkpoint
from .checkpoint import check_out, extension, length_only  # noqa: F401  (re-exported)
from .config import TIMING_KEYS, TrainConfig, check_installed, validate  # noqa: F401  (re-exported)
from .logprobs import token_logprobs
from .metrics import MetricsLog, evaluate, read_metrics, report, step_metrics  # noqa: F401  (read_metrics re-exported)
from .models import lora_params, lora_state, use_lora
from .rollouts import Behaviour, batch_indices, from_offline, generate_offline, groups, sample
from .rollouts import offline_from_dict, offline_source


def build_objective(cfg: TrainConfig):
    from banditlab.registry.objectives import parse_algo_args

    try:
        obj = parse_algo_args(cfg.algo, list(cfg.algo_args))
    except ValueError as err:
        raise UsageError(str(err) if "algo-arg" in str(err) else f"--algo: {err}") from None
    if cfg.baseline_offset is not None:
        if "offset" not in obj.params:
            raise UsageError(f"--baseline-offset: algorithm {cfg.algo!r} has no baseline")
        obj = obj.with_params(offset=cfg.baseline_offset)
    if obj.params.get("baseline") == "vmu":
        raise UsageError("--algo-arg baseline=vmu: an LLM batch has no exact V^μ; use group or absolute")
    try:
        return obj if cfg.agg is None else obj.with_params(agg=cfg.agg)
    except ValueError as err:
        raise UsageError(f"--agg: {err}") from None


@dataclass
class StepBatch:
    """One step's scored rows on the device: the objective's prepared batch and the model inputs of its rows."""

    batch: Batch           # the kept rows, `objectives.prepare`d (advantage, row weights, denominators)
    ids: torch.Tensor      # [n, P + T] prompt and completion ids of those rows
    att: torch.Tensor      # [n, P + T] their attention mask
    keep: torch.Tensor     # [N] bool: which of the step's rollouts have a reward
    on_policy: bool        # log μ is the detached log π of the training forward itself


def _mu(name: str, doc: str) -> property:
    """A trainer attribute that is the behaviour policy's (`Trainer.mu`) field `name`."""
    return property(lambda self: getattr(self.mu, name), lambda self, v: setattr(self.mu, name, v), doc=doc)


# ------------------------------------------------------------------------------------------ the trainer
class Trainer:
    """A run: everything `setup` loads (data, model with its LoRA adapter, optimizer, backend, μ), `run` (the loop,
    `run_loop`) and the pieces of one step (`train_step`)."""

    behaviour = _mu("state", "μ: the behaviour adapter's tensors (`rollouts.Behaviour`)")
    behaviour_version = _mu("version", "the step whose π μ is")
    init_state = _mu("init_state", "π₀'s adapter tensors")
    synced = _mu("synced", "whether this step's refresh pushed μ to the backend")

    def __init__(self, cfg: TrainConfig, progress: bool = False, echo=print):
        setup(self, cfg, progress, echo)

    # -------------------------------------------------------------------------------------- the loop
    def run(self, resume: bool = False) -> Path:
        """Train to `total_steps` (or resume) with `run_loop`; a failed vLLM sync check ends the run with one line;
        the backend and the folder's lock are released whatever happens."""
        from banditlab.errors import RunFailed

        try:
            return run_loop(self, resume)
        except RuntimeError as err:
            if type(err).__name__ == "SyncError":
                raise RunFailed(f"{err} (last checkpoint kept in {self.out})") from None
            raise
        finally:
            if hasattr(self.backend, "close"):
                self.backend.close()
            if getattr(self, "folder_run", None) is not None:
                self.folder_run.close()

    # -------------------------------------------------------------------------------------- one step
    def train_step(self) -> dict:
        """One optimizer step: rollouts → behaviour log-probs and advantage → loss accumulation → gradient sync →
        optimizer step. Returns its metrics row. Everything after the rollouts lives on `self.device`."""
        t0 = time.perf_counter()
        self.refresh_behaviour()
        idx = self.dist.block(self.batch_indices(self.step))  # this process's prompts (all of them in one process)
        r, rewards, correct, groups = self.rollouts(idx)
        t_gen = time.perf_counter() - t0
        step = self.step_batch(r, rewards.to(self.device), groups.to(self.device))
        t1 = time.perf_counter()
        loss, logp, ent = self.accumulate(step)
        self.dist.sum_grads(self.params)  # each process's loss holds its share of the batch
        gnorm = self.optimizer_step()
        times = {"gen_seconds": t_gen, "train_seconds": time.perf_counter() - t1,
                 "step_seconds": time.perf_counter() - t0}
        return step_metrics(self, r, correct, step, logp, ent, loss, gnorm, times)

    def refresh_behaviour(self) -> None:
        """μ ← π when due (`rollouts.Behaviour.refresh`); offline, μ stays π₀."""
        self.mu.synced = False
        if not self.cfg.offline:
            self.mu.refresh(self.step, self.model, self.backend)

    def batch_indices(self, step: int) -> list[int]:
        """Prompt indices of a step: epoch-wise permutations from the seed, a pure function of the step."""
        return batch_indices(len(self.train_set), self.cfg.prompts_per_step, self.cfg.seed, step)

    def rollouts(self, idx: list[int]):
        """(Rollouts, rewards, correct, group ids) for the prompts `idx`: sampled, or read from the offline set."""
        c = self.cfg
        if c.offline:
            if self.offline_data is None:
                self.offline_data = generate_offline(self)
            return (*from_offline(self.offline_data, idx, c.group_size), self._groups(len(idx)))
        return (*sample(self, idx), self._groups(len(idx)))

    def _groups(self, n_prompts: int) -> torch.Tensor:
        return groups(n_prompts, self.cfg.group_size)

    def step_batch(self, r, rewards: torch.Tensor, groups: torch.Tensor) -> StepBatch:
        """The rows that have a reward (an unparsable gold is reported, never scored), their log μ, and everything
        that needs whole groups computed once over them (`objectives.prepare`: the advantage, the objective's row
        weights, and the denominators, summed over processes so that they are the whole batch's)."""
        from banditlab.registry.objectives import prepare

        c, dev = self.cfg, self.device
        keep = ~torch.isnan(rewards)
        ids, att, mask = r.input_ids.to(dev)[keep], r.attention_mask.to(dev)[keep], r.completion_mask.to(dev)[keep]
        # on-policy (μ = π, the snapshot taken this very step) log μ is the detached log π of the training forward
        on_policy = not c.offline and c.sync_offset == 0 and self.behaviour_version == self.step
        old = None if on_policy else self.behaviour_logprobs(ids, att, mask.shape[1])
        # the engine's own log-probs of what it sampled (vLLM), for the objectives that correct its mismatch
        roll = r.logprobs.to(dev)[keep] if c.backend == "vllm" and not c.offline else None
        shape = torch.zeros(mask.shape, device=dev)  # `prepare` reads the shape of log π, never its values
        g = groups[keep]
        batch = Batch(shape, shape if old is None else old, rewards[keep], group=g - g.min() if len(g) else g,
                      mask=mask, logp_rollout=roll)
        batch = prepare(batch, self.objective) if len(g) else batch
        if self.dist.world > 1:  # summed over processes: the denominators of the whole batch
            t = batch.totals
            both = self.dist.sum(torch.stack([t["tokens"], t["seqs"]]).float() if t else torch.zeros(2, device=dev))
            batch.totals = {"tokens": both[0].clamp_min(1e-12), "seqs": both[1].clamp_min(1e-12)}
        return StepBatch(batch, ids, att, keep, on_policy)

    def behaviour_logprobs(self, ids: torch.Tensor, att: torch.Tensor, T: int) -> torch.Tensor:
        """log μ of every completion token, with the same function as log π: the behaviour snapshot (offline: π₀)
        swapped into the adapter, no gradient, one micro-batch of sequences per forward."""
        c, size = self.cfg, self.micro_size(len(ids))
        with torch.no_grad(), use_lora(self.model, self.init_state if c.offline else self.behaviour):
            return torch.cat([token_logprobs(self.model, ids[s: s + size], att[s: s + size], T, c.temperature).float()
                              for s in range(0, len(ids), size)] or [torch.zeros(0, T, device=self.device)])

    def micro_size(self, n: int) -> int:
        """Sequences per forward/backward: --micro-batch, or all n at once (0)."""
        return max(1, self.cfg.micro_batch or n)

    def accumulate(self, step: StepBatch) -> tuple[float, torch.Tensor, torch.Tensor]:
        """One backward per micro-batch of `--micro-batch` sequences, cut anywhere (inside a group too): each is a
        slice of the prepared batch (`objectives.select`), so the gradients add up to the full-batch gradient.
        Returns the summed loss and the detached log π and entropies of every row (for the metrics)."""
        from banditlab.registry.objectives import select

        b, temperature = step.batch, self.cfg.temperature
        n, T = b.mask.shape
        self.opt.zero_grad(set_to_none=True)
        self.model.train()
        total, logps, ents = 0.0, [torch.zeros(0, T, device=self.device)], [torch.zeros(0, T, device=self.device)]
        size = self.micro_size(n)
        for s in range(0, n, size):
            logp, ent = token_logprobs(self.model, step.ids[s: s + size], step.att[s: s + size], T, temperature,
                                       entropy=True)
            logp = logp.float()
            mb = select(b, torch.arange(s, min(s + size, n), device=self.device))
            mb = replace(mb, logp=logp, logp_old=logp.detach() if step.on_policy else mb.logp_old)
            loss = self.objective(mb)
            loss.backward()
            total += float(loss.detach())
            logps.append(logp.detach())
            ents.append(ent)
        return total, torch.cat(logps), torch.cat(ents)

    def optimizer_step(self) -> float:
        """The gradient norm clipped to --grad-clip (0: reported only), then one optimizer step at this step's
        learning rate; returns the norm before clipping."""
        c = self.cfg
        for g in self.opt.param_groups:
            g["lr"] = self.lr_at(self.step)
        gnorm = torch.nn.utils.clip_grad_norm_(self.params, c.grad_clip if c.grad_clip > 0 else float("inf"))
        self.opt.step()
        self.step += 1
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
        return float(gnorm)

    def lr_at(self, step: int) -> float:
        c = self.cfg
        if c.warmup and step < c.warmup:
            return c.lr * (step + 1) / c.warmup
        frac = (step - c.warmup) / max(1, self.total_steps - c.warmup)
        return c.lr * {"constant": 1.0, "linear": 1 - frac, "cosine": 0.5 * (1 + math.cos(math.pi * frac))}[c.schedule]

    # -------------------------------------------------------------------------------------- evaluation
    def evaluation(self) -> dict:
        """`eval_logs`, its test pass@1 announced."""
        logs = self.eval_logs()
        if "test_accuracy" in logs:
            self.echo(f"step {self.step}: test pass@1 {logs['test_accuracy']:.3f} on {len(self.test_set)} problems")
        return logs

    def eval_logs(self) -> dict:
        """test_accuracy (--eval-n) and train_accuracy (--eval-train-n) of the current policy (`metrics.evaluate`)."""
        logs = {"test_accuracy": evaluate(self)} if self.cfg.eval_n else {}  # --eval-n 0: no evaluation, no key
        if self.cfg.eval_train_n:
            logs["train_accuracy"] = evaluate(self, train=True)
        return logs

    # -------------------------------------------------------------------------------------- checkpoints
    def save(self) -> None:
        """checkpoint.pt and the adapter (`checkpoint.save_run`)."""
        checkpoint.save_run(self)

    def load(self) -> None:
        """The checkpoint's adapter, μ, optimizer and generators (`checkpoint.load_run`)."""
        checkpoint.load_run(self)


# ------------------------------------------------------------------------------------------ the loop
def run_loop(tr: Trainer, resume: bool) -> Path:
    """The run, top to bottom: open the run folder (a new run evaluates step 0; a complete one returns),
    then each step rollouts → rewards → advantage → loss → optimizer step (`Trainer.train_step`) → metrics row,
    evaluation and checkpoint when due, until `total_steps` or a stop (Ctrl-C, SIGTERM: checkpoint, Interrupted);
    the folder is marked complete and the throughputs reported."""
    from banditlab.plumbing.progress import Bar

    c = tr.cfg
    resumed = checkpoint.open_run(tr, resume)  # claim the folder; a new run's record, or the checkpoint
    run = tr.folder_run
    if resumed and run.complete and tr.step >= tr.total_steps:
        tr.echo(f"{tr.out}: this run is already complete")
        return tr.out
    if resumed:
        tr.echo(f"{tr.out}: resumed at step {tr.step}/{tr.total_steps}")
    else:
        if c.eval_n:
            tr.echo(f"evaluating step 0: greedy pass@1 on {len(tr.test_set)} test problems")
        MetricsLog(tr.out, tr.dist.main, False).write({"step": 0, "world_size": tr.dist.world, **tr.evaluation()})
    log, done, cadence = MetricsLog(tr.out, tr.dist.main, c.tensorboard), [], Cadence(steps=c.checkpoint_every)
    with run.running() as flag, Bar("train", total=tr.total_steps, show=tr.progress, start=tr.step,
                                  unit="steps") as bar:  # the flag is held until the completion marker is written
        try:
            while tr.step < tr.total_steps:
                try:
                    logs = tr.train_step()  # rollouts → rewards → advantage → loss → optimizer step
                except torch.cuda.OutOfMemoryError:
                    raise UsageError(f"out of GPU memory in step {tr.step + 1}: lower --micro-batch, "
                                     f"--gen-batch-size or --max-new-tokens (last checkpoint kept in {tr.out})"
                                     ) from None
                last = tr.step == tr.total_steps
                if (c.eval_every and tr.step % c.eval_every == 0) or last:
                    logs.update(tr.evaluation())
                log.write(logs)
                log.scalars(logs)
                done.append(logs)
                bar.update(tr.step, f"reward {logs['reward_mean']:+.2f}")
                stop = stop_asked(tr, flag)
                if cadence.due(tr.step, final=last or stop):
                    tr.save()
                if stop and not last:
                    raise Interrupted(f"interrupted after step {tr.step}/{tr.total_steps}; checkpoint saved in "
                                      f"{tr.out}; rerun with --resume to continue")
        finally:
            log.close()
            tr.grader.close()
        run.done()
    report(done, tr.device, c.offline, tr.echo)
    return tr.out


def stop_asked(tr: Trainer, flag: dict) -> bool:
    """Whether a stop was asked (Ctrl-C, SIGTERM) in any process: all stop at the same step, or the
    collectives would hang."""
    if tr.dist.world > 1:
        flag["stop"] = bool(tr.dist.sum(torch.tensor([float(flag["stop"])], device=tr.device))[0])
    return flag["stop"]


# ------------------------------------------------------------------------------------------ setup
def setup(tr: Trainer, cfg: TrainConfig, progress: bool, echo) -> None:
    """Everything a run needs, checked in the order that names a bad option before anything slow: the options,
    the device and processes, the data (and an offline dataset given), the model with its LoRA adapter, the
    optimizer, the grader, μ = π₀, the prompts and the rollout backend."""
    from .distributed import Dist
    from .grading import Grader
    from .models import ModelError, add_lora, resolve_device

    validate(cfg)
    check_installed(cfg)
    tr.cfg, tr.progress = cfg, progress
    tr.objective = build_objective(cfg)
    try:
        tr.device, dtype = resolve_device(cfg.device, cfg.dtype)
    except ModelError as err:
        raise UsageError(str(err)) from None
    use_threads(cfg.threads, elements=None)
    tr.dist = Dist(cpu=tr.device == "cpu")
    if tr.dist.world > 1 and tr.device.startswith("cuda"):
        tr.device = f"cuda:{tr.dist.local_rank}"
    if cfg.prompts_per_step < tr.dist.world:
        raise UsageError(f"--prompts-per-step: {cfg.prompts_per_step} prompts cannot be shared by "
                         f"{tr.dist.world} processes")
    if not tr.dist.main:
        echo, tr.progress = (lambda *_: None), False  # one process speaks
    tr.echo = echo
    base = load_data_and_model(tr, dtype)
    torch.manual_seed(cfg.seed)
    tr.model = add_lora(base, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_targets)
    tr.params = [p for p in tr.model.parameters() if p.requires_grad]
    from .logprobs import decoder_and_head

    try:
        decoder_and_head(tr.model)  # the log-probs' chunked LM head needs a plain one
    except ValueError as err:
        raise UsageError(f"--model: {err}") from None
    if checkpointing_wanted(cfg, tr.model, tr.device, tr.dist.world):
        from .models import enable_checkpointing

        enable_checkpointing(tr.model)
        echo("gradient checkpointing on (--grad-checkpointing off to keep every activation)")
    tr.opt = torch.optim.AdamW(tr.params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    tr.grader = Grader(cfg.reward)
    tr.mu = Behaviour(lora_state(tr.model), cfg.sync_interval, cfg.sync_offset)
    tr.step = 0
    from .data import build_prompt
    from .generation import make_backend

    tr.prompts = [build_prompt(tr.tok, p.question) for p in tr.train_set]
    tr.test_prompts = [build_prompt(tr.tok, p.question) for p in tr.test_set]
    tr.backend = make_backend(cfg.backend, cfg.model, tr.model, tr.tok, tr.device, cfg.max_new_tokens,
                              cfg.gen_batch_size, cfg.seed)
    tr.total_steps = cfg.steps or math.ceil(len(tr.train_set) / cfg.prompts_per_step) * cfg.epochs
    tr.out = Path(cfg.out) if cfg.out else default_name("llm", cfg.algo)


def load_data_and_model(tr: Trainer, dtype: torch.dtype):
    """The train and test problems, a given offline dataset and the base model (`tr.tok` set), the data first: a
    bad data option is reported before the slow model load. Returns the base model."""
    from .config import check_lora_targets
    from .data import DataError, load_problems
    from .models import ModelError, load_model, model_source

    cfg = tr.cfg
    try:
        tr.train_set = load_problems(cfg.dataset, "train", cfg.data_path or None, cfg.n_train or None, cfg.seed,
                                     cfg.difficulty)
        tr.test_set = load_problems(cfg.dataset, "test", cfg.test_path or None, cfg.eval_n, cfg.seed,
                                    cfg.difficulty) if cfg.eval_n else []
        if cfg.n_train and len(tr.train_set) < cfg.n_train:
            raise UsageError(f"--n-train: {cfg.n_train} problems asked for, the data hold {len(tr.train_set)}")
        tr.offline_data = None
        if cfg.offline and cfg.offline_data and Path(cfg.offline_data).exists():  # checked before any write
            tr.offline_data = offline_from_dict(Path(cfg.offline_data), len(tr.train_set) * cfg.group_size,
                                                offline_source(cfg))
        model_source(cfg.model)  # a missing model is named before "loading"
        tr.echo(f"loading {cfg.model} on {tr.device}" + (" (a GGUF is dequantised once, about 40 s)"
                                                         if cfg.model == "smollm2" or cfg.model.endswith(".gguf")
                                                         else ""))
        base, tr.tok = load_model(cfg.model, dtype, tr.device, cfg.seed)
    except (DataError, ModelError) as err:
        raise UsageError(str(err)) from None
    check_lora_targets(base, cfg.lora_targets)
    return base


def checkpointing_wanted(cfg: TrainConfig, model, device: str, world: int) -> bool:
    """--grad-checkpointing on / off, or auto: on a CUDA device, on when one micro-batch of full-length
    sequences (PROMPT_TOKENS + max_new_tokens) would keep activations over half the free memory
    (`memory.needs_checkpointing`); off on a CPU."""
    if cfg.grad_checkpointing != "auto" or not device.startswith("cuda"):
        return cfg.grad_checkpointing == "on"
    from .memory import PROMPT_TOKENS, Shape, needs_checkpointing

    base = model.get_base_model()
    shape = Shape.of(base.config, sum(p.numel() for p in base.parameters()))
    seqs = cfg.micro_batch or math.ceil(cfg.prompts_per_step / world) * cfg.group_size
    free, _ = torch.cuda.mem_get_info(torch.device(device))
    b = next(base.parameters()).element_size()
    a = next(iter(lora_params(model).values())).element_size()
    return needs_checkpointing(shape, cfg.lora_r, cfg.lora_targets.split(","), seqs,
                               PROMPT_TOKENS + cfg.max_new_tokens, free, b, a)


def train(cfg: TrainConfig, resume: bool = False, progress: bool = False, echo=print) -> Path:
    """`Trainer(cfg).run(resume)`, but a complete run of this configuration in --out returns at once, with nothing
    loaded (`checkpoint.complete`); the run folder for experiments that train many runs and rerun them."""
    validate(cfg)
    if checkpoint.complete(cfg):  # with or without --resume, and without its weights (a committed run)
        echo(f"{cfg.out}: this run is already complete")
        return Path(cfg.out)
    check_out(cfg, resume)
    return Trainer(cfg, progress, echo).run(resume)


def config_from(options: dict, config_file: str | None) -> TrainConfig:
    """Merge CLI options (when set) over a TOML file ([train] table or top level) over the defaults."""
    from banditlab.cli.configfile import merged_config

    return merged_config(TrainConfig, config_file, options, section="train")
