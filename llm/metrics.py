"""The trainer's metrics: one row per step in OUT/metrics.jsonl (and TensorBoard), and the end-of-run report.

A step's row (`step_metrics`) holds the loss, the rewards and accuracy, the advantage the loss used, π/μ per token
(min, token mean, max), the share of tokens the objective's own mask clipped, entropy and KL(μ‖π) per token, the
mean completion length, the gradient norm before clipping, and the step's times, throughputs and peak memory
(TIMING_KEYS: the keys that differ between two runs of one seed); evaluation rows add test_accuracy and
train_accuracy. Every statistic is over the kept samples of every process.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from banditlab.errors import UsageError


def step_metrics(tr, r, correct: list, step, logp: torch.Tensor, ent: torch.Tensor, loss: float, gnorm: float,
                 times: dict) -> dict:
    """The metrics row of a step, from per-row statistics of the kept samples gathered from every process: the
    advantage the loss used, π/μ, entropy and KL to μ per token, clipped share by the objective's own mask."""
    from banditlab.registry.objectives import clip_fraction, ratio

    dev, b, dist = tr.device, step.batch, tr.dist
    n = len(logp)
    if n:
        full = replace(b, logp=logp, logp_old=logp if step.on_policy else b.logp_old)
        m = b.mask.float()
        adv = b.adv if b.adv is not None else b.reward
        rho = ratio(full, tr.objective.params.get("ratio_level", "token"))
        ntok_row = m.sum(-1)
        inf = torch.full_like(rho, float("inf"))
        per_row = torch.stack([b.reward, adv.float(), ntok_row, torch.where(m.bool(), rho, inf).amin(-1),
                               torch.where(m.bool(), rho, -inf).amax(-1), (rho * m).sum(-1), (ent * m).sum(-1),
                               ((full.logp_old - logp) * m).sum(-1)], -1).tolist()
        clip_sum = float(clip_fraction(full, tr.objective)) * float(ntok_row.sum())
    else:
        per_row, clip_sum = [], 0.0
    table = np.array(dist.gather_rows(per_row), dtype=float).reshape(-1, 8)
    acc = dist.gather_rows([float(bool(x)) for x in correct if x is not None])
    skipped, gen_tokens, train_tokens, clip_sum = dist.sum(torch.tensor(
        [float((~step.keep).sum()), float(r.completion_mask.sum()), float(b.mask.sum()), clip_sum])).tolist()
    if dist.world > 1:
        loss = float(dist.sum(torch.tensor([loss], device=dev))[0])
    reward, adv, ntok, rmin, rmax, rsum, esum, ksum = table.T
    tok = ntok.sum() or 1.0
    stat = lambda f, x: float(f(x)) if len(x) else float("nan")
    t_gen, t_train, elapsed = times["gen_seconds"], times["train_seconds"], times["step_seconds"]
    logs = {
        "loss": loss, "step": tr.step, "time": time.time(), "world_size": dist.world,
        "lr": tr.lr_at(tr.step - 1), "behaviour_version": tr.behaviour_version,
        "reward_mean": stat(np.mean, reward), "accuracy": stat(np.mean, acc), "skipped": int(skipped),
        "adv_mean": stat(np.mean, adv), "adv_std": float(np.std(adv, ddof=1)) if len(adv) > 1 else 0.0,
        "adv_min": stat(np.min, adv), "adv_max": stat(np.max, adv),
        "ratio_min": stat(np.min, rmin), "ratio_mean": float(rsum.sum() / tok) if len(rsum) else float("nan"),
        "ratio_max": stat(np.max, rmax),
        "clip_frac": clip_sum / tok, "entropy": float(esum.sum() / tok), "kl_behaviour": float(ksum.sum() / tok),
        "response_len": stat(np.mean, ntok), "grad_norm": gnorm, **times,
        # offline steps read their rollouts from the dataset: no generation, no generation throughput
        **({} if tr.cfg.offline else {"gen_tokens_per_s": gen_tokens / max(t_gen, 1e-9)}),
        "train_tokens_per_s": train_tokens / max(t_train, 1e-9),
        "tokens_per_s": gen_tokens / max(elapsed, 1e-9),
        "peak_memory_gb": torch.cuda.max_memory_allocated() / 2**30 if dev.startswith("cuda") else 0.0,
    }
    if tr.cfg.backend == "vllm" and tr.synced:  # the sync check of this step's behaviour refresh
        logs.update(tr.backend.last)
    return logs


def evaluate(tr, train: bool = False) -> float:
    """Greedy pass@1 of the current policy on the test problems (or the first eval_train_n train problems)."""
    c = tr.cfg
    problems = tr.dist.block(tr.train_set[: c.eval_train_n] if train else tr.test_set)
    prompts = tr.dist.block(tr.prompts[: c.eval_train_n] if train else tr.test_prompts)
    budget = c.eval_max_new_tokens or c.max_new_tokens
    if c.backend == "vllm":  # evaluate the live policy: pushed to the engine's evaluation slot and checked
        from .models import lora_state

        tr.backend.sync(lora_state(tr.model), tr.step, slot="eval")
        r = tr.backend.generate(prompts, 1, budget, greedy=True, slot="eval")
    else:
        from banditlab.plumbing.progress import Bar

        with Bar(f"eval step {tr.step}, {len(prompts)} {'train' if train else 'test'} problems", total=1,
                 show=tr.progress, unit="tokens") as bar:
            r = tr.backend.generate(prompts, 1, budget, greedy=True, state=None, bar=bar)
    ok = tr.grader.correct(r.texts, [p.answer for p in problems])
    scored = tr.dist.gather_rows([float(x) for x in ok if x is not None])  # every process's share
    return float(np.mean(scored)) if scored else float("nan")


class MetricsLog:
    """metrics.jsonl (appended one row at a time by the main process) and, with --tensorboard, OUT/tb."""

    def __init__(self, out: Path, main: bool, tensorboard: bool):
        self.path, self.main, self.writer = out / "metrics.jsonl", main, None
        if tensorboard and main:
            from torch.utils.tensorboard import SummaryWriter  # check_installed found tensorboard
            self.writer = SummaryWriter(str(out / "tb"))

    def write(self, row: dict) -> None:
        if self.main:
            with self.path.open("a") as f:
                f.write(json.dumps(row) + "\n")

    def scalars(self, row: dict) -> None:
        if self.writer:
            for k, v in row.items():
                if isinstance(v, (int, float)):
                    self.writer.add_scalar(k, v, row["step"])

    def close(self) -> None:
        if self.writer:
            self.writer.close()


def read_metrics(path: Path, option: str = "--resume") -> list[dict]:
    """The rows of metrics.jsonl (`folder.read_metrics`), a damaged one refused with "delete the folder"."""
    from banditlab.plumbing.folder import read_metrics as read

    try:
        return read(path, option)
    except UsageError as err:
        raise UsageError(f"{err}; delete the folder to start over") from None


def report(done: list[dict], device: str, offline: bool, echo) -> None:
    """One line on the steps this process ran: their time, the generation and training throughputs (tokens over
    seconds of all steps) and, on CUDA, the peak memory."""
    if not done:
        return
    tot = lambda k: sum(d[k] for d in done)
    rate = lambda what: sum(d[f"{what}_tokens_per_s"] * d[f"{what}_seconds"] for d in done) / max(
        tot(f"{what}_seconds"), 1e-9)
    gen = "" if offline else f"generation {rate('gen'):.0f} tokens/s, "
    echo(f"{len(done)} steps in {tot('step_seconds'):.1f} s on {device}: {gen}training "
         f"{rate('train'):.0f} tokens/s" + (f", peak GPU memory {max(d['peak_memory_gb'] for d in done):.2f} GB"
                                            if device.startswith("cuda") else ""))
