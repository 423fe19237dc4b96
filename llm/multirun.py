"""Several offline LoRA runs of one base model in one process: R adapters trained on one fixed dataset from π₀,
and all of them evaluated in one batched greedy pass.

For a small model on a GPU, decoding is bound by kernel launches, not arithmetic: one generate() call of a few
hundred sequences costs about what one of a few sequences costs. So the runs of a sweep (methods × seeds) share
what can be shared:
    data        offline, μ = π₀ fixed (the AsymRE theorem's regime, TOPR's GSM8K setting): the k samples of every
                pool problem, drawn once from π₀ (`Rollouts`), with log μ computed once (`Offline`)
    model       one base model; every run is a peft adapter `run{i}` with its own AdamW (weight decay 0), its own
                gradient clipping and its objective from the registry (banditlab.registry.objectives), trained in turn
    evaluation  greedy pass@1 of every run on one problem set: "mixed" puts every run's copy of every prompt in
                one batch (peft's `adapter_names`), "sequential" runs one adapter at a time over the whole batch;
                `time_eval_modes` measures both on a short probe and the faster one is used
Runs of one seed start from the same LoRA initialisation and see the same batches (common random numbers: methods
are compared on the same data, as the bandit sweep's `--pulls shared`). The batch order is llm/train.py's: an
epoch-wise permutation of the pool from the seed, a pure function of the step.

Deliberately left out: checkpoints (a device call is one process; what it measured streams out as it goes),
refreshing μ (lagged runs: `llm train --sync-interval`), micro-batches across runs.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import torch

from banditlab.registry.objectives import Batch, Objective, clip_fraction, prepare, ratio, select


@dataclass
class Offline:
    """The offline dataset: `k` samples of each of `n` problems, rows problem-major (row = problem · k + j)."""

    rollouts: object            # logprobs.Rollouts, n · k rows
    rewards: torch.Tensor       # [n · k] (nan: an unparsable gold; such rows get no gradient)
    logmu: torch.Tensor         # [n · k, T] log π₀ of each completion token (0 on padding)
    k: int

    @property
    def problems(self) -> int:
        return len(self.rewards) // self.k


def join_rollouts(parts: list, pad_id: int):
    """One Rollouts from several generate() results: prompts left-padded, completions right-padded to the widest."""
    from .logprobs import Rollouts

    P = max(p.prompt_ids.shape[1] for p in parts)
    T = max(p.completion_ids.shape[1] for p in parts)
    padl = lambda x, n, v: torch.nn.functional.pad(x, (n - x.shape[1], 0), value=v)
    padr = lambda x, n, v: torch.nn.functional.pad(x, (0, n - x.shape[1]), value=v)
    return Rollouts(torch.cat([padl(p.prompt_ids, P, pad_id) for p in parts]),
                    torch.cat([padl(p.prompt_mask, P, 0) for p in parts]),
                    torch.cat([padr(p.completion_ids, T, pad_id) for p in parts]),
                    torch.cat([padr(p.completion_mask, T, 0) for p in parts]),
                    torch.cat([padr(p.logprobs, T, 0.0) for p in parts]), sum((list(p.texts) for p in parts), []))


def trimmed(r):
    """The rollouts without prompt columns that are padding in every row (left) and completion columns that are
    padding in every row (right): the same sequences, less compute."""
    from .logprobs import Rollouts

    p0 = int((r.prompt_mask.sum(0) > 0).nonzero()[0]) if r.prompt_mask.any() else 0
    t1 = int((r.completion_mask.sum(0) > 0).nonzero()[-1]) + 1 if r.completion_mask.any() else 1
    return Rollouts(r.prompt_ids[:, p0:], r.prompt_mask[:, p0:], r.completion_ids[:, :t1], r.completion_mask[:, :t1],
                    r.logprobs[:, :t1], r.texts)


@torch.no_grad()
def behaviour_logprobs(model, r, temperature: float, chunk: int, device: str) -> torch.Tensor:
    """log μ of every completion token of `r` under `model` as it is (π₀: call it before any adapter trains)."""
    from .logprobs import token_logprobs

    T, out = r.completion_ids.shape[1], []
    for s in range(0, len(r.texts), chunk):
        part = trimmed(r.select(range(s, min(s + chunk, len(r.texts)))))
        lp = token_logprobs(model, part.input_ids.to(device), part.attention_mask.to(device),
                            part.completion_ids.shape[1], temperature).float().cpu() * part.completion_mask
        out.append(torch.nn.functional.pad(lp, (0, T - lp.shape[1])))
    return torch.cat(out)


@dataclass
class Run:
    label: str                  # the method's name, e.g. "AsymRE δV = −0.1"
    seed: int
    objective: Objective
    adapter: str                # the peft adapter's name
    opt: torch.optim.Optimizer | None = None


class MultiRun:
    """R runs (method × seed) as adapters of one peft model, trained offline on `data` in lockstep."""

    def __init__(self, base, tok, runs: list[tuple[str, int, Objective]], data: Offline, device: str, lr: float,
                 lora_r: int = 8, lora_alpha: int = 16, targets: str = "q_proj,k_proj,v_proj,o_proj",
                 prompts_per_step: int = 4, grad_clip: float = 1.0, temperature: float = 1.0, micro_batch: int = 0):
        import warnings

        from peft import LoraConfig, get_peft_model

        self.tok, self.data, self.device = tok, data, device
        self.prompts_per_step, self.grad_clip, self.temperature = prompts_per_step, grad_clip, temperature
        self.micro_batch = micro_batch
        cfg = LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=0.0, target_modules=targets.split(","),
                         bias="none", task_type="CAUSAL_LM")
        self.runs = [Run(label, seed, obj, f"run{i}") for i, (label, seed, obj) in enumerate(runs)]
        with warnings.catch_warnings():  # peft asks transformers 5 a deprecated question; nothing for users to do
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            for i, run in enumerate(self.runs):
                torch.manual_seed(run.seed)  # the runs of one seed share their initial adapter
                if i == 0:
                    self.model = get_peft_model(base, cfg, adapter_name=run.adapter)
                else:
                    self.model.add_adapter(run.adapter, cfg)
        for run in self.runs:
            run.opt = torch.optim.AdamW(self.params(run), lr=lr, weight_decay=0.0)
        self.step = 0

    def params(self, run: Run) -> list[torch.nn.Parameter]:
        return [p for n, p in self.model.named_parameters() if f".{run.adapter}." in n]

    def batch_rows(self, seed: int, step: int) -> list[int]:
        """The dataset rows of a run's step: `prompts_per_step` problems of the pool in the order of llm/train.py
        (`rollouts.batch_indices`: an epoch-wise permutation from the seed), all k samples of each."""
        from .rollouts import batch_indices

        k = self.data.k
        return [i * k + j for i in batch_indices(self.data.problems, self.prompts_per_step, seed, step)
                for j in range(k)]

    def train_step(self) -> list[dict]:
        """One optimizer step of every run; one metrics row per run."""
        rows = []
        cache: dict[int, tuple] = {}
        for run in self.runs:
            t0 = time.perf_counter()
            if run.seed not in cache:  # the runs of a seed share their batch
                idx = self.batch_rows(run.seed, self.step)
                r = trimmed(self.data.rollouts.select(idx))
                T = r.completion_ids.shape[1]
                cache[run.seed] = (r, self.data.rewards[idx], self.data.logmu[idx][:, :T])
            r, rewards, logmu = cache[run.seed]
            rows.append({"method": run.label, "seed": run.seed, "step": self.step + 1,
                         **self._run_step(run, r, rewards, logmu), "seconds": time.perf_counter() - t0})
        self.step += 1
        return rows

    def _run_step(self, run: Run, r, rewards: torch.Tensor, logmu: torch.Tensor) -> dict:
        from .logprobs import token_logprobs

        dev, k = self.device, self.data.k
        keep = ~torch.isnan(rewards)
        ids, att = r.input_ids[keep].to(dev), r.attention_mask[keep].to(dev)
        mask, old = r.completion_mask[keep].to(dev), logmu[keep].to(dev)
        groups = (torch.arange(len(rewards)) // k)[keep].to(dev)
        shape = torch.zeros(mask.shape, device=dev)  # `prepare` reads the shape of log π, never its values
        batch = prepare(Batch(shape, old, rewards[keep].to(dev), group=groups - groups.min(), mask=mask), run.objective)
        self.model.set_adapter(run.adapter)
        self.model.train()
        run.opt.zero_grad(set_to_none=True)
        n, T = mask.shape
        size = self.micro_batch or n
        total, logps, ents = 0.0, [], []
        for s in range(0, n, size):
            logp, ent = token_logprobs(self.model, ids[s: s + size], att[s: s + size], T, self.temperature,
                                       entropy=True)
            mb = replace(select(batch, torch.arange(s, min(s + size, n), device=dev)), logp=logp.float())
            loss = run.objective(mb)
            loss.backward()
            total += float(loss.detach())
            logps.append(logp.detach().float())
            ents.append(ent)
        params = self.params(run)
        gnorm = torch.nn.utils.clip_grad_norm_(params, self.grad_clip if self.grad_clip > 0 else float("inf"))
        run.opt.step()
        full = replace(batch, logp=torch.cat(logps))
        m = mask.float()
        rho = ratio(full, run.objective.params.get("ratio_level", "token"))
        tok = m.sum().clamp_min(1)
        inf = torch.tensor(float("inf"), device=dev)
        return {"loss": total, "grad_norm": float(gnorm), "entropy": float((torch.cat(ents) * m).sum() / tok),
                "ratio_min": float(torch.where(m.bool(), rho, inf).min()),
                "ratio_max": float(torch.where(m.bool(), rho, -inf).max()),
                "kl_behaviour": float(((old - full.logp) * m).sum() / tok),
                "clip_frac": float(clip_fraction(full, run.objective)), "reward_mean": float(rewards[keep].mean()),
                "tokens": int(m.sum())}

    # -------------------------------------------------------------------------------------- evaluation
    @torch.no_grad()
    def greedy(self, prompts: list[str], max_new_tokens: int, mode: str, batch: int, runs: list[Run] | None = None
               ) -> tuple[list[list[str]], int]:
        """Greedy completions of every prompt under every run: (texts[run][prompt], completion tokens)."""
        from .logprobs import pad_completions

        runs = self.runs if runs is None else runs
        self.model.eval()
        jobs = [(run.adapter, p) for run in runs for p in prompts]  # run-major
        texts, tokens = [], 0
        groups = [jobs] if mode == "mixed" else [jobs[i: i + len(prompts)] for i in range(0, len(jobs), len(prompts))]
        for group in groups:
            if mode == "sequential":
                self.model.set_adapter(group[0][0])
            for s in range(0, len(group), batch):
                part = group[s: s + batch]
                enc = self.tok([p for _, p in part], return_tensors="pt", padding=True, add_special_tokens=False)
                kw = {"adapter_names": [a for a, _ in part]} if mode == "mixed" else {}
                out = self.model.generate(input_ids=enc.input_ids.to(self.device),
                                          attention_mask=enc.attention_mask.to(self.device),
                                          max_new_tokens=max_new_tokens, do_sample=False,
                                          pad_token_id=self.tok.pad_token_id, eos_token_id=self.tok.eos_token_id, **kw)
                ids, mask = pad_completions(out[:, enc.input_ids.shape[1]:].cpu().tolist(), self.tok.pad_token_id,
                                            self.tok.eos_token_id)
                tokens += int(mask.sum())
                texts += self.tok.batch_decode([c[m.bool()] for c, m in zip(ids, mask)], skip_special_tokens=True)
        return [texts[i * len(prompts): (i + 1) * len(prompts)] for i in range(len(runs))], tokens

    def time_eval_modes(self, prompts: list[str], probe_tokens: int, batch: int) -> dict:
        """Seconds of one greedy pass of every run over `prompts` at `probe_tokens` new tokens, per mode; a mode
        that fails (an older peft without `adapter_names`) is recorded with its error."""
        out = {}
        for mode in ("mixed", "sequential"):
            sync()
            t = time.perf_counter()
            try:
                self.greedy(prompts, probe_tokens, mode, batch)
                sync()
                out[mode] = time.perf_counter() - t
            except Exception as err:  # recorded; the other mode is used
                out[f"{mode}_error"] = f"{type(err).__name__}: {' '.join(str(err).split())[:200]}"
        return out


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def pass_at_1(grader, texts: list[str], golds: list[str]) -> float:
    ok = [x for x in grader.correct(texts, golds) if x is not None]
    return sum(ok) / len(ok) if ok else math.nan
