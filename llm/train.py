"""Off-policy LoRA training of a causal LM on math problems with the banditlab objective registry.

    banditlab llm train --model meta-llama/Llama-3.1-8B-Instruct --dataset math --algo asymre \\
        --baseline-offset -0.1 --sync-interval 250            # the AsymRE paper's setting, on a GPU
    banditlab llm train --model tiny --dataset arithmetic --steps 20   # seconds, on a CPU

One step: refresh the behaviour snapshot if due; sample G completions for each of `prompts_per_step` prompts from
the behaviour policy μ; grade them; compute log μ (the snapshot) and log π (the live adapter) of every completion
token with the same function (`generation.token_logprobs`); call the registry objective on the per-token `Batch`;
one AdamW step on the LoRA weights. Nothing here is a policy-gradient formula: that lives in
banditlab/objectives.py alone.

Behaviour policy (as in the REC paper's sync_interval / sync_offset):
    sync_interval N   μ ← π every N steps (1 = on-policy); `behaviour_version` records which step's π μ is
    sync_offset K     the copied π is the one from K steps earlier (each batch is K steps stale)
    offline           one dataset of G samples per train prompt from π₀, then `epochs` passes over it (TOPR)

A run resumes with --resume; with the constant schedule it may also be made longer (--resume with a larger
--steps or --epochs): batches are a pure function of the step, so the longer run is the one that would have been
trained from the start (`extension`).

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

import json
import math
import random
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from banditlab.errors import UsageError
from banditlab.registry.objectives import Batch
from banditlab.plumbing.folder import (Cadence, Interrupted, atomic_save, atomic_write, check_claim, check_identity, claim,
                                 default_name, is_complete, jsonable, mark_complete, read_record, stop_flag, unmark,
                                 write_record)
from banditlab.plumbing.threads import use_threads

from .config import TIMING_KEYS, TrainConfig, check_installed, validate  # noqa: F401  (re-exported)


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


# ------------------------------------------------------------------------------------------ the trainer
@dataclass
class StepBatch:
    """One step's scored rows on the device: the objective's prepared batch and the model inputs of its rows."""

    batch: Batch           # the kept rows, `objectives.prepare`d (advantage, row weights, denominators)
    ids: torch.Tensor      # [n, P + T] prompt and completion ids of those rows
    att: torch.Tensor      # [n, P + T] their attention mask
    keep: torch.Tensor     # [N] bool: which of the step's rollouts have a reward
    on_policy: bool        # log μ is the detached log π of the training forward itself


class Trainer:
    def __init__(self, cfg: TrainConfig, progress: bool = False, echo=print):
        validate(cfg)
        check_installed(cfg)
        self.cfg, self.progress = cfg, progress
        self.objective = build_objective(cfg)
        from .data import DataError, load_problems
        from .grading import Grader
        from .models import ModelError, add_lora, load_model, lora_state, model_source, resolve_device

        try:
            self.device, dtype = resolve_device(cfg.device, cfg.dtype)
        except ModelError as err:
            raise UsageError(str(err)) from None
        use_threads(cfg.threads, elements=None)
        from .distributed import Dist

        self.dist = Dist(cpu=self.device == "cpu")
        if self.dist.world > 1 and self.device.startswith("cuda"):
            self.device = f"cuda:{self.dist.local_rank}"
        if cfg.prompts_per_step < self.dist.world:
            raise UsageError(f"--prompts-per-step: {cfg.prompts_per_step} prompts cannot be shared by "
                             f"{self.dist.world} processes")
        if not self.dist.main:
            echo, self.progress = (lambda *_: None), False  # one process speaks
        self.echo = echo
        try:  # the data first: a bad data option is reported before the slow model load
            self.train_set = load_problems(cfg.dataset, "train", cfg.data_path or None, cfg.n_train or None,
                                           cfg.seed, cfg.difficulty)
            self.test_set = load_problems(cfg.dataset, "test", cfg.test_path or None, cfg.eval_n, cfg.seed,
                                          cfg.difficulty) if cfg.eval_n else []
            if cfg.n_train and len(self.train_set) < cfg.n_train:
                raise UsageError(f"--n-train: {cfg.n_train} problems asked for, the data hold "
                                 f"{len(self.train_set)}")
            self.offline_data = None
            if cfg.offline and cfg.offline_data and Path(cfg.offline_data).exists():  # checked before any write
                self.offline_data = _offline_from_dict(Path(cfg.offline_data), len(self.train_set) * cfg.group_size,
                                                       offline_source(cfg))
            model_source(cfg.model)  # a missing model is named before "loading"
            echo(f"loading {cfg.model} on {self.device}" + (" (a GGUF is dequantised once, about 40 s)"
                                                             if cfg.model == "smollm2" or cfg.model.endswith(".gguf")
                                                             else ""))
            base, self.tok = load_model(cfg.model, dtype, self.device, cfg.seed)
        except (DataError, ModelError) as err:
            raise UsageError(str(err)) from None
        from .config import check_lora_targets

        check_lora_targets(base, cfg.lora_targets)
        torch.manual_seed(cfg.seed)
        self.model = add_lora(base, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_targets)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        from .generation import decoder_and_head

        try:
            decoder_and_head(self.model)  # the log-probs' chunked LM head needs a plain one
        except ValueError as err:
            raise UsageError(f"--model: {err}") from None
        if self.checkpointing_wanted():
            from .models import enable_checkpointing

            enable_checkpointing(self.model)
            echo("gradient checkpointing on (--grad-checkpointing off to keep every activation)")
        self.opt = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.grader = Grader(cfg.reward)
        self.init_state = lora_state(self.model)
        self.behaviour = self.init_state
        self.behaviour_version = 0
        self.history: list[tuple[int, dict]] = []
        self.step = 0
        from .data import build_prompt

        self.prompts = [build_prompt(self.tok, p.question) for p in self.train_set]
        self.test_prompts = [build_prompt(self.tok, p.question) for p in self.test_set]
        from .generation import make_backend

        self.backend = make_backend(cfg.backend, cfg.model, self.model, self.tok, self.device, cfg.max_new_tokens,
                                    cfg.gen_batch_size, cfg.seed)
        self.total_steps = cfg.steps or math.ceil(len(self.train_set) / cfg.prompts_per_step) * cfg.epochs
        self.out = Path(cfg.out) if cfg.out else default_name("llm", cfg.algo)

    def checkpointing_wanted(self) -> bool:
        """--grad-checkpointing on / off, or auto: on a CUDA device, on when one micro-batch of full-length
        sequences (PROMPT_TOKENS + max_new_tokens) would keep activations over half the free memory
        (`memory.needs_checkpointing`); off on a CPU."""
        c = self.cfg
        if c.grad_checkpointing != "auto" or not self.device.startswith("cuda"):
            return c.grad_checkpointing == "on"
        from .memory import PROMPT_TOKENS, Shape, needs_checkpointing
        from .models import lora_params

        base = self.model.get_base_model()
        shape = Shape.of(base.config, sum(p.numel() for p in base.parameters()))
        seqs = c.micro_batch or math.ceil(c.prompts_per_step / self.dist.world) * c.group_size
        free, _ = torch.cuda.mem_get_info(torch.device(self.device))
        b = next(base.parameters()).element_size()
        a = next(iter(lora_params(self.model).values())).element_size()
        return needs_checkpointing(shape, c.lora_r, c.lora_targets.split(","), seqs, PROMPT_TOKENS + c.max_new_tokens,
                                   free, b, a)

    # -------------------------------------------------------------------------------------- schedule
    def lr_at(self, step: int) -> float:
        c = self.cfg
        if c.warmup and step < c.warmup:
            return c.lr * (step + 1) / c.warmup
        frac = (step - c.warmup) / max(1, self.total_steps - c.warmup)
        return c.lr * {"constant": 1.0, "linear": 1 - frac, "cosine": 0.5 * (1 + math.cos(math.pi * frac))}[c.schedule]

    def batch_indices(self, step: int) -> list[int]:
        """Prompt indices of a step: epoch-wise permutations from the seed, a pure function of the step."""
        n, k = len(self.train_set), self.cfg.prompts_per_step
        out = []
        for j in range(step * k, step * k + k):
            epoch, pos = divmod(j, n)
            out.append(int(np.random.default_rng((self.cfg.seed, epoch)).permutation(n)[pos]))
        return out

    # -------------------------------------------------------------------------------------- behaviour
    def refresh_behaviour(self) -> None:
        """μ ← π of step (t − sync_offset) when t is a multiple of sync_interval; keep the history it needs."""
        from .models import lora_state

        c, t = self.cfg, self.step
        if c.offline:
            return
        if c.sync_offset:
            self.history.append((t, lora_state(self.model)))
            self.history = self.history[-(c.sync_offset + 1):]
        if t % c.sync_interval == 0:
            if c.sync_offset:
                src = t - c.sync_offset
                self.behaviour_version, self.behaviour = (src, self.history[0][1]) if src >= 0 else (0, self.init_state)
            else:
                self.behaviour_version, self.behaviour = t, lora_state(self.model)
            self.backend.sync(self.behaviour, self.behaviour_version)
            self.synced = True

    # -------------------------------------------------------------------------------------- rollouts
    def rollouts(self, idx: list[int]):
        """(Rollouts, rewards, correct, group ids) for the prompts `idx`: sampled, or read from the offline set."""
        c = self.cfg
        if c.offline:
            if self.offline_data is None:
                self.offline_data = self.generate_offline()
            r, rewards, correct = self.offline_data
            rows = [i * c.group_size + g for i in idx for g in range(c.group_size)]
            return r.select(rows), rewards[rows], [correct[i] for i in rows], self._groups(len(idx))
        seed = c.seed * 1_000_003 + self.step + 104_729 * self.dist.rank
        r = self.backend.generate([self.prompts[i] for i in idx], c.group_size, c.max_new_tokens, c.temperature,
                                  c.top_p, seed=seed, state=self.behaviour)
        golds = [self.train_set[i].answer for i in idx for _ in range(c.group_size)]
        correct = self.grader.correct(r.texts, golds)
        return r, self._rewards(correct), correct, self._groups(len(idx))

    def _groups(self, n_prompts: int) -> torch.Tensor:
        return torch.arange(n_prompts).repeat_interleave(self.cfg.group_size)

    def _rewards(self, correct) -> torch.Tensor:
        from .grading import REWARDS

        hi, lo = REWARDS[self.cfg.reward]
        return torch.tensor([float("nan") if x is None else (hi if x else lo) for x in correct])

    def generate_offline(self):
        """TOPR's offline dataset: G samples of every train prompt from π₀, generated once (and checkpointed)."""
        path = Path(self.cfg.offline_data) if self.cfg.offline_data else self.out / "offline.pt"
        if path.exists():
            return _offline_from_dict(path, len(self.prompts) * self.cfg.group_size, offline_source(self.cfg))
        from banditlab.plumbing.progress import Bar

        c = self.cfg
        parts, correct = [], []
        with Bar("offline data from π₀", total=len(self.prompts), show=self.progress, unit="prompts") as bar:
            for s in range(0, len(self.prompts), c.prompts_per_step):
                idx = list(range(s, min(s + c.prompts_per_step, len(self.prompts))))
                r = self.backend.generate([self.prompts[i] for i in idx], c.group_size, c.max_new_tokens,
                                          c.temperature, c.top_p, seed=c.seed * 1_000_003 + s, state=self.init_state)
                ok = self.grader.correct(r.texts, [self.train_set[i].answer for i in idx for _ in range(c.group_size)])
                parts.append(r)
                correct += ok
                bar.update(idx[-1] + 1)
        from .generation import Rollouts

        T = max(p.completion_ids.shape[1] for p in parts)
        P = max(p.prompt_ids.shape[1] for p in parts)
        padr = lambda x, n, v: torch.nn.functional.pad(x, (0, n - x.shape[1]), value=v)
        padl = lambda x, n, v: torch.nn.functional.pad(x, (n - x.shape[1], 0), value=v)
        pad_id = self.tok.pad_token_id
        data = (Rollouts(torch.cat([padl(p.prompt_ids, P, pad_id) for p in parts]),
                         torch.cat([padl(p.prompt_mask, P, 0) for p in parts]),
                         torch.cat([padr(p.completion_ids, T, pad_id) for p in parts]),
                         torch.cat([padr(p.completion_mask, T, 0) for p in parts]),
                         torch.cat([padr(p.logprobs, T, 0.0) for p in parts]), sum((p.texts for p in parts), [])),
                self._rewards(correct), correct)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_save(path, _offline_to_dict(data, offline_source(c)))
        return data

    # -------------------------------------------------------------------------------------- one step
    def train_step(self) -> dict:
        """One optimizer step: rollouts → behaviour log-probs → loss accumulation → gradient sync → optimizer step.
        Returns its metrics row. Everything after the rollouts lives on `self.device`."""
        t0 = time.perf_counter()
        self.synced = False
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
        return self.step_metrics(r, correct, step, logp, ent, loss, gnorm, times)

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
        from .generation import token_logprobs
        from .models import use_lora

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

        from .generation import token_logprobs

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

    def step_metrics(self, r, correct: list, step: StepBatch, logp: torch.Tensor, ent: torch.Tensor, loss: float,
                     gnorm: float, times: dict) -> dict:
        """The metrics row of a step, from per-row statistics of the kept samples gathered from every process: the
        advantage the loss used, π/μ, entropy and KL to μ per token, clipped share by the objective's own mask."""
        from banditlab.registry.objectives import clip_fraction, ratio

        dev, b = self.device, step.batch
        n = len(logp)
        if n:
            full = replace(b, logp=logp, logp_old=logp if step.on_policy else b.logp_old)
            m = b.mask.float()
            adv = b.adv if b.adv is not None else b.reward
            rho = ratio(full, self.objective.params.get("ratio_level", "token"))
            ntok_row = m.sum(-1)
            inf = torch.full_like(rho, float("inf"))
            per_row = torch.stack([b.reward, adv.float(), ntok_row, torch.where(m.bool(), rho, inf).amin(-1),
                                   torch.where(m.bool(), rho, -inf).amax(-1), (rho * m).sum(-1), (ent * m).sum(-1),
                                   ((full.logp_old - logp) * m).sum(-1)], -1).tolist()
            clip_sum = float(clip_fraction(full, self.objective)) * float(ntok_row.sum())
        else:
            per_row, clip_sum = [], 0.0
        table = np.array(self.dist.gather_rows(per_row), dtype=float).reshape(-1, 8)
        acc = self.dist.gather_rows([float(bool(x)) for x in correct if x is not None])
        skipped, gen_tokens, train_tokens, clip_sum = self.dist.sum(torch.tensor(
            [float((~step.keep).sum()), float(r.completion_mask.sum()), float(b.mask.sum()), clip_sum])).tolist()
        if self.dist.world > 1:
            loss = float(self.dist.sum(torch.tensor([loss], device=dev))[0])
        reward, adv, ntok, rmin, rmax, rsum, esum, ksum = table.T
        tok = ntok.sum() or 1.0
        stat = lambda f, x: float(f(x)) if len(x) else float("nan")
        t_gen, t_train, elapsed = times["gen_seconds"], times["train_seconds"], times["step_seconds"]
        logs = {
            "loss": loss, "step": self.step, "time": time.time(), "world_size": self.dist.world,
            "lr": self.lr_at(self.step - 1), "behaviour_version": self.behaviour_version,
            "reward_mean": stat(np.mean, reward), "accuracy": stat(np.mean, acc), "skipped": int(skipped),
            "adv_mean": stat(np.mean, adv), "adv_std": float(np.std(adv, ddof=1)) if len(adv) > 1 else 0.0,
            "adv_min": stat(np.min, adv), "adv_max": stat(np.max, adv),
            "ratio_min": stat(np.min, rmin), "ratio_mean": float(rsum.sum() / tok) if len(rsum) else float("nan"),
            "ratio_max": stat(np.max, rmax),
            "clip_frac": clip_sum / tok, "entropy": float(esum.sum() / tok), "kl_behaviour": float(ksum.sum() / tok),
            "response_len": stat(np.mean, ntok), "grad_norm": gnorm, **times,
            # offline steps read their rollouts from the dataset: no generation, no generation throughput
            **({} if self.cfg.offline else {"gen_tokens_per_s": gen_tokens / max(t_gen, 1e-9)}),
            "train_tokens_per_s": train_tokens / max(t_train, 1e-9),
            "tokens_per_s": gen_tokens / max(elapsed, 1e-9),
            "peak_memory_gb": torch.cuda.max_memory_allocated() / 2**30 if dev.startswith("cuda") else 0.0,
        }
        if self.cfg.backend == "vllm" and self.synced:  # the sync check of this step's behaviour refresh
            logs.update(self.backend.last)
        return logs

    # -------------------------------------------------------------------------------------- evaluation
    def evaluate(self, train: bool = False) -> float:
        """Greedy pass@1 of the current policy on the test problems (or the first eval_train_n train problems)."""
        c = self.cfg
        problems = self.dist.block(self.train_set[: c.eval_train_n] if train else self.test_set)
        prompts = self.dist.block(self.prompts[: c.eval_train_n] if train else self.test_prompts)
        budget = c.eval_max_new_tokens or c.max_new_tokens
        if c.backend == "vllm":  # evaluate the live policy: pushed to the engine's evaluation slot and checked
            from .models import lora_state

            self.backend.sync(lora_state(self.model), self.step, slot="eval")
            r = self.backend.generate(prompts, 1, budget, greedy=True, slot="eval")
        else:
            from banditlab.plumbing.progress import Bar

            with Bar(f"eval step {self.step}, {len(prompts)} {'train' if train else 'test'} problems", total=1,
                     show=self.progress, unit="tokens") as bar:
                r = self.backend.generate(prompts, 1, budget, greedy=True, state=None, bar=bar)
        ok = self.grader.correct(r.texts, [p.answer for p in problems])
        scored = self.dist.gather_rows([float(x) for x in ok if x is not None])  # every process's share
        return float(np.mean(scored)) if scored else float("nan")

    def eval_logs(self) -> dict:
        logs = {"test_accuracy": self.evaluate()} if self.cfg.eval_n else {}  # --eval-n 0: no evaluation, no key
        if self.cfg.eval_train_n:
            logs["train_accuracy"] = self.evaluate(train=True)
        return logs

    # -------------------------------------------------------------------------------------- checkpoints
    def save(self) -> None:
        """checkpoint.pt and the adapter, written by the main process (every process holds the same weights)."""
        from .models import lora_state

        if not self.dist.main:
            self.dist.barrier()
            return
        state = {"step": self.step, "policy": lora_state(self.model), "behaviour": self.behaviour,
                 "behaviour_version": self.behaviour_version, "history": self.history,
                 "optimizer": self.opt.state_dict(), "rng": _rng_state()}
        atomic_save(self.out / "checkpoint.pt", state)
        self.model.save_pretrained(self.out / "adapter")
        self.dist.barrier()

    def load(self) -> None:
        from .models import lora_params

        from banditlab.plumbing.safeio import load_tensors

        path = self.out / "checkpoint.pt"
        s = load_tensors(path, "--resume", "delete the folder to start over")
        if not (isinstance(s, dict) and {"step", "policy", "optimizer", "rng"} <= set(s)):
            raise UsageError(f"--resume: {path} is not a trainer checkpoint; delete the folder to start over")
        with torch.no_grad():
            for n, p in lora_params(self.model).items():
                p.copy_(s["policy"][n])
        self.step, self.behaviour, self.behaviour_version = s["step"], s["behaviour"], s["behaviour_version"]
        self.history = s["history"]
        self.opt.load_state_dict(s["optimizer"])
        _set_rng_state(s["rng"])
        if not self.cfg.offline:
            self.backend.sync(self.behaviour, self.behaviour_version)

    # -------------------------------------------------------------------------------------- the loop
    def run(self, resume: bool = False) -> Path:
        """Train to `total_steps` (or resume); a failed vLLM sync check ends the run with one line."""
        from banditlab.errors import RunFailed

        try:
            return self._run(resume)
        except RuntimeError as err:
            if type(err).__name__ == "SyncError":
                raise RunFailed(f"{err} (last checkpoint kept in {self.out})") from None
            raise
        finally:
            if hasattr(self.backend, "close"):
                self.backend.close()
            if getattr(self, "_lock", None) is not None:
                self._lock.close()

    def _run(self, resume: bool = False) -> Path:
        c = self.cfg
        main = self.dist.main  # only the main process writes the run folder
        check_out(c, resume)
        if main:
            self._lock = claim(c.out, "llm-train", name=("llm", c.algo))  # held until the run ends
            self.out = self._lock.folder
        self.dist.barrier()
        cfg_file, metrics_file = self.out / "config.json", self.out / "metrics.jsonl"
        if cfg_file.exists() and (self.out / "checkpoint.pt").exists():  # check_out: the same run, --resume given
            self.load()
            if self.step > self.total_steps:
                raise UsageError(f"--steps: the run in {self.out} has already taken {self.step} steps; ask for at "
                                 f"least that many (it asks for {self.total_steps})")
            if main:
                atomic_write(metrics_file, "".join(json.dumps(r) + "\n" for r in read_metrics(metrics_file)
                                                   if r["step"] <= self.step))
                rec = read_record(self.out)
                if length_only(rec, c):  # a longer run (`extension`): it records its new length
                    unmark(self.out)
                    write_record(self.out, "llm-train", {**{k: v for k, v in rec.items() if k != "kind"},
                                                         "config": asdict(c), "identity": c.identity()})
            if is_complete(self.out) and self.step >= self.total_steps:
                self.echo(f"{self.out}: this run is already complete")
                return self.out
            self.echo(f"{self.out}: resumed at step {self.step}/{self.total_steps}")
        else:
            if main:
                unmark(self.out)
                write_record(self.out, "llm-train", {"config": asdict(c), "identity": c.identity(),
                                                     "world_size": self.dist.world,
                                                     "objective": {"name": self.objective.name,
                                                                   "params": self.objective.params}})
                atomic_write(metrics_file, "")
            if c.eval_n:
                self.echo(f"evaluating step 0: greedy pass@1 on {len(self.test_set)} test problems")
            logs = self.eval_logs()
            self._write(metrics_file, {"step": 0, "world_size": self.dist.world, **logs})
            if c.eval_n:
                self.echo(f"step 0: test pass@1 {logs['test_accuracy']:.3f} on {len(self.test_set)} problems")
        writer = None
        if c.tensorboard and main:
            from torch.utils.tensorboard import SummaryWriter  # check_installed found tensorboard
            writer = SummaryWriter(str(self.out / "tb"))
        from banditlab.plumbing.progress import Bar

        with stop_flag() as flag, Bar("train", total=self.total_steps, show=self.progress, start=self.step,
                                      unit="steps") as bar:  # the flag is held until the completion marker is written
            done = self._loop(flag, metrics_file, writer, bar)
            if main:
                mark_complete(self.out)
        self._report(done)
        return self.out

    def _loop(self, flag, metrics_file, writer, bar) -> list[dict]:
        """Steps until `total_steps` or the stop flag; returns the metrics rows of the steps it ran."""
        c = self.cfg
        done, cadence = [], Cadence(steps=c.checkpoint_every)
        try:
            while self.step < self.total_steps:
                try:
                    logs = self.train_step()
                except torch.cuda.OutOfMemoryError:
                    raise UsageError(f"out of GPU memory in step {self.step + 1}: lower --micro-batch, "
                                     f"--gen-batch-size or --max-new-tokens (last checkpoint kept in {self.out})"
                                     ) from None
                last = self.step == self.total_steps
                if (c.eval_every and self.step % c.eval_every == 0) or last:
                    logs.update(self.eval_logs())
                    if "test_accuracy" in logs:
                        self.echo(f"step {self.step}: test pass@1 {logs['test_accuracy']:.3f} on "
                                  f"{len(self.test_set)} problems")
                self._write(metrics_file, logs)
                done.append(logs)
                if writer:
                    for k, v in logs.items():
                        if isinstance(v, (int, float)):
                            writer.add_scalar(k, v, self.step)
                bar.update(self.step, f"reward {logs['reward_mean']:+.2f}")
                if self.dist.world > 1:  # every process stops at the same step, or the collectives would hang
                    flag["stop"] = bool(self.dist.sum(torch.tensor([float(flag["stop"])], device=self.device))[0])
                if cadence.due(self.step, final=last or flag["stop"]):
                    self.save()
                if flag["stop"] and not last:
                    raise Interrupted(f"interrupted after step {self.step}/{self.total_steps}; checkpoint saved in "
                                      f"{self.out}; rerun with --resume to continue")
        finally:
            if writer:
                writer.close()
            self.grader.close()
        return done

    def _report(self, done: list[dict]) -> None:
        if done:
            tot = lambda k: sum(d[k] for d in done)
            rate = lambda what: sum(d[f"{what}_tokens_per_s"] * d[f"{what}_seconds"] for d in done) / max(
                tot(f"{what}_seconds"), 1e-9)  # tokens over seconds of all steps
            gen = "" if self.cfg.offline else f"generation {rate('gen'):.0f} tokens/s, "
            self.echo(f"{len(done)} steps in {tot('step_seconds'):.1f} s on {self.device}: {gen}training "
                      f"{rate('train'):.0f} tokens/s" + (
                          f", peak GPU memory {max(d['peak_memory_gb'] for d in done):.2f} GB"
                          if self.device.startswith("cuda") else ""))

    def _write(self, path: Path, logs: dict) -> None:
        if self.dist.main:
            with path.open("a") as f:
                f.write(json.dumps(logs) + "\n")


def _rng_state() -> dict:
    """Every generator's state as tensors and plain data (what `safeio.load_tensors` reads back)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"python": random.getstate(), "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss,
                                                     gauss],
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def _set_rng_state(s: dict) -> None:
    random.setstate(s["python"])
    name, keys, pos, has_gauss, gauss = s["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.int64).astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(s["torch"])
    if s["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


# the options that decide what an offline dataset holds: runs that agree on them (any objective, lr, ...) can
# share one file; a run that differs in one is refused
OFFLINE_SOURCE = ("model", "dataset", "data_path", "n_train", "difficulty", "seed", "group_size", "prompts_per_step",
                  "max_new_tokens", "temperature", "top_p", "reward")


def offline_source(cfg: TrainConfig) -> dict:
    return {k: getattr(cfg, k) for k in OFFLINE_SOURCE}


def _offline_to_dict(data, source: dict) -> dict:
    """The offline dataset (Rollouts, rewards, correct) as tensors and plain data, with the options it came from."""
    r, rewards, correct = data
    return {"prompt_ids": r.prompt_ids, "prompt_mask": r.prompt_mask, "completion_ids": r.completion_ids,
            "completion_mask": r.completion_mask, "logprobs": r.logprobs, "texts": list(r.texts),
            "rewards": rewards, "correct": list(correct), "source": source}


def _offline_from_dict(path: Path, rows: int, source: dict):
    """The offline dataset in `path` (tensors and plain data only), checked against the run: prompts × G rows,
    sampled with the run's `source` options."""
    from banditlab.plumbing.safeio import load_tensors

    from .generation import Rollouts

    d = load_tensors(path, "--offline-data", "delete it or point --offline-data elsewhere to regenerate it")
    keys = ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask", "logprobs", "texts", "rewards",
            "correct", "source")
    if not isinstance(d, dict) or set(d) != set(keys) or len(d["texts"]) != rows or len(d["rewards"]) != rows \
            or not isinstance(d["source"], dict):
        raise UsageError(f"--offline-data: {path} is not the offline dataset of this run ({rows} rows of "
                         "prompts × group size expected); delete it or point --offline-data elsewhere")
    differ = [k for k in OFFLINE_SOURCE if d["source"].get(k) != source[k]]
    if differ:
        raise UsageError(f"--offline-data: {path} was sampled with other options (differs in: {', '.join(differ)}); "
                         "delete it or point --offline-data elsewhere")
    return Rollouts(*(d[k] for k in keys[:6])), d["rewards"], d["correct"]


def read_metrics(path: Path) -> list[dict]:
    """The rows of metrics.jsonl. A last line cut short (the process died while appending) is dropped; damage
    anywhere else is refused with the line number."""
    lines = path.read_text().splitlines() if path.exists() else []
    rows = []
    for n, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or not isinstance(row.get("step"), int):
                raise ValueError
        except ValueError:
            if n == len(lines):
                break
            raise UsageError(f"--resume: {path} line {n} is damaged; delete the folder to start over") from None
        rows.append(row)
    return rows


def check_out(cfg: TrainConfig, resume: bool) -> None:
    """--out can hold this run, and --resume is given exactly when it holds one (of the same configuration):
    checked before anything is loaded or written."""
    check_claim(cfg.out, "llm-train", ("llm", cfg.algo))
    out = Path(cfg.out) if cfg.out else None
    if out is not None and (out / "config.json").exists() and (out / "checkpoint.pt").exists():
        rec = read_record(out)
        if not resume and length_only(rec, cfg):
            raise UsageError(f"--out: {out} holds this run with another --steps/--epochs; pass --resume to continue "
                             "it to the new length, or choose another --out")
        if not (resume and extension(rec, cfg)):
            check_identity(out, cfg.identity())
        if not resume:
            raise UsageError(f"--out: {out} already holds a run; pass --resume to continue it")
    if not resume:
        return
    if not cfg.out:
        raise UsageError("--resume: needs --out, the run folder to continue")
    if not (Path(cfg.out) / "checkpoint.pt").exists():
        what = "does not exist" if not Path(cfg.out).exists() else "holds no checkpoint.pt"
        raise UsageError(f"--resume: {cfg.out} {what}; run without --resume to start a new run there")


LENGTH = ("steps", "epochs")


def length_only(rec: dict | None, cfg: TrainConfig) -> bool:
    """Whether `cfg` is the recorded run but for its length (--steps, --epochs)."""
    old = rec.get("identity") if isinstance(rec, dict) else None
    new = jsonable(cfg.identity())
    return (isinstance(old, dict) and old != new and set(old) == set(new)
            and all(old[k] == new[k] for k in new if k not in LENGTH))


def extension(rec: dict | None, cfg: TrainConfig) -> bool:
    """Whether `cfg` asks to continue the recorded run for another number of steps, which is allowed only with the
    constant schedule (a linear or cosine schedule is laid out over the run's length, so a longer run would have
    taken its earlier steps at other learning rates). Raises UsageError where only the length differs but the
    schedule forbids it; returns False where anything else differs (`check_identity` names it)."""
    if not length_only(rec, cfg):
        return False
    if cfg.schedule != "constant":
        raise UsageError(f"--steps/--epochs: this run's {cfg.schedule} schedule is laid out over its own length, so "
                         "a longer run would have taken its earlier steps at other learning rates; start a new run")
    return True


def config_from(options: dict, config_file: str | None) -> TrainConfig:
    """Merge CLI options (when set) over a TOML file ([train] table or top level) over the defaults."""
    from banditlab.cli.configfile import merged_config

    return merged_config(TrainConfig, config_file, options, section="train")
