"""A training step's rollouts: the behaviour policy μ, the step's prompts, and the completions sampled from μ
(online) or read from the one dataset sampled from π₀ (offline), graded into rewards.

Behaviour policy (the REC paper's sync_interval / sync_offset, the bandit simulator's `--behavior`):
    sync_interval N   μ ← π every N steps (1 = on-policy)                         ≙ lag:N
    sync_offset K     the copied π is the one from K steps earlier (π₀ before step K) ≙ delay:K (with lag:N)
    offline           one dataset of G samples per train prompt from π₀, then `epochs` passes over it (TOPR)
                                                                                  ≙ fixed
`Behaviour.version` records which step's π μ is. Batches are a pure function of the step (`batch_indices`), so a
resumed or longer run draws the batches of the uninterrupted one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from banditlab.errors import UsageError
from banditlab.plumbing.folder import atomic_save

from .logprobs import Rollouts
from .models import lora_state

# the options that decide what an offline dataset holds: runs that agree on them (any objective, lr, ...) can
# share one file; a run that differs in one is refused
OFFLINE_SOURCE = ("model", "dataset", "data_path", "n_train", "difficulty", "seed", "group_size", "prompts_per_step",
                  "max_new_tokens", "temperature", "top_p", "reward")
OFFLINE_KEYS = ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask", "logprobs", "texts", "rewards",
                "correct", "source")


class Behaviour:
    """μ: a detached copy of the LoRA adapter (`lora_state`), refreshed from π every `sync_interval` steps, the
    copy being π of `sync_offset` steps earlier (the last sync_offset + 1 adapters are kept in `history`)."""

    def __init__(self, init_state: dict, sync_interval: int, sync_offset: int):
        self.init_state = self.state = init_state
        self.interval, self.offset = sync_interval, sync_offset
        self.version = 0
        self.history: list[tuple[int, dict]] = []
        self.synced = False  # whether this step's refresh pushed μ to the backend

    def refresh(self, step: int, model, backend) -> None:
        """μ ← π of step (t − sync_offset) when t is a multiple of sync_interval; keep the history it needs."""
        if self.offset:
            self.history.append((step, lora_state(model)))
            self.history = self.history[-(self.offset + 1):]
        if step % self.interval == 0:
            if self.offset:
                src = step - self.offset
                self.version, self.state = (src, self.history[0][1]) if src >= 0 else (0, self.init_state)
            else:
                self.version, self.state = step, lora_state(model)
            backend.sync(self.state, self.version)
            self.synced = True


def batch_indices(n: int, k: int, seed: int, step: int) -> list[int]:
    """Prompt indices of a step (k of n prompts): epoch-wise permutations from the seed, a pure function of the step."""
    out = []
    for j in range(step * k, step * k + k):
        epoch, pos = divmod(j, n)
        out.append(int(np.random.default_rng((seed, epoch)).permutation(n)[pos]))
    return out


def groups(n_prompts: int, group_size: int) -> torch.Tensor:
    """The prompt (group) of every row: 0 × G, 1 × G, ..."""
    return torch.arange(n_prompts).repeat_interleave(group_size)


def rewards(correct, reward: str) -> torch.Tensor:
    """The reward of every graded row: REWARDS[reward] = (right, wrong); nan where the gold was unparsable."""
    from .grading import REWARDS

    hi, lo = REWARDS[reward]
    return torch.tensor([float("nan") if x is None else (hi if x else lo) for x in correct])


def sample(tr, idx: list[int]):
    """(Rollouts, rewards, correct) of G completions per prompt `idx`, sampled from μ with the step's seed."""
    c = tr.cfg
    seed = c.seed * 1_000_003 + tr.step + 104_729 * tr.dist.rank
    r = tr.backend.generate([tr.prompts[i] for i in idx], c.group_size, c.max_new_tokens, c.temperature, c.top_p,
                            seed=seed, state=tr.behaviour)
    correct = tr.grader.correct(r.texts, [tr.train_set[i].answer for i in idx for _ in range(c.group_size)])
    return r, rewards(correct, c.reward), correct


def from_offline(data, idx: list[int], group_size: int):
    """(Rollouts, rewards, correct) of the prompts `idx` read from the offline dataset."""
    r, rew, correct = data
    rows = [i * group_size + g for i in idx for g in range(group_size)]
    return r.select(rows), rew[rows], [correct[i] for i in rows]


# ------------------------------------------------------------------------------------------ the offline dataset
def offline_source(cfg) -> dict:
    return {k: getattr(cfg, k) for k in OFFLINE_SOURCE}


def offline_path(cfg, out: Path) -> Path:
    return Path(cfg.offline_data) if cfg.offline_data else out / "offline.pt"


def generate_offline(tr):
    """TOPR's offline dataset: G samples of every train prompt from π₀, generated once (and checkpointed)."""
    c = tr.cfg
    path = offline_path(c, tr.out)
    if path.exists():
        return offline_from_dict(path, len(tr.prompts) * c.group_size, offline_source(c))
    from banditlab.plumbing.progress import Bar

    parts, correct = [], []
    with Bar("offline data from π₀", total=len(tr.prompts), show=tr.progress, unit="prompts") as bar:
        for s in range(0, len(tr.prompts), c.prompts_per_step):
            idx = list(range(s, min(s + c.prompts_per_step, len(tr.prompts))))
            r = tr.backend.generate([tr.prompts[i] for i in idx], c.group_size, c.max_new_tokens, c.temperature,
                                    c.top_p, seed=c.seed * 1_000_003 + s, state=tr.init_state)
            ok = tr.grader.correct(r.texts, [tr.train_set[i].answer for i in idx for _ in range(c.group_size)])
            parts.append(r)
            correct += ok
            bar.update(idx[-1] + 1)
    data = (join(parts, tr.tok.pad_token_id), rewards(correct, c.reward), correct)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save(path, offline_to_dict(data, offline_source(c)))
    return data


def join(parts: list[Rollouts], pad_id: int) -> Rollouts:
    """Rollouts of several generate calls as one: prompts left-padded, completions right-padded to the longest."""
    T = max(p.completion_ids.shape[1] for p in parts)
    P = max(p.prompt_ids.shape[1] for p in parts)
    padr = lambda x, n, v: torch.nn.functional.pad(x, (0, n - x.shape[1]), value=v)
    padl = lambda x, n, v: torch.nn.functional.pad(x, (n - x.shape[1], 0), value=v)
    return Rollouts(torch.cat([padl(p.prompt_ids, P, pad_id) for p in parts]),
                    torch.cat([padl(p.prompt_mask, P, 0) for p in parts]),
                    torch.cat([padr(p.completion_ids, T, pad_id) for p in parts]),
                    torch.cat([padr(p.completion_mask, T, 0) for p in parts]),
                    torch.cat([padr(p.logprobs, T, 0.0) for p in parts]), sum((p.texts for p in parts), []))


def offline_to_dict(data, source: dict) -> dict:
    """The offline dataset (Rollouts, rewards, correct) as tensors and plain data, with the options it came from."""
    r, rew, correct = data
    return {"prompt_ids": r.prompt_ids, "prompt_mask": r.prompt_mask, "completion_ids": r.completion_ids,
            "completion_mask": r.completion_mask, "logprobs": r.logprobs, "texts": list(r.texts),
            "rewards": rew, "correct": list(correct), "source": source}


def offline_from_dict(path: Path, rows: int, source: dict):
    """The offline dataset in `path` (tensors and plain data only), checked against the run: prompts × G rows,
    sampled with the run's `source` options."""
    from banditlab.plumbing.safeio import load_tensors

    d = load_tensors(path, "--offline-data", "delete it or point --offline-data elsewhere to regenerate it")
    if not isinstance(d, dict) or set(d) != set(OFFLINE_KEYS) or len(d["texts"]) != rows or len(d["rewards"]) != rows \
            or not isinstance(d["source"], dict):
        raise UsageError(f"--offline-data: {path} is not the offline dataset of this run ({rows} rows of "
                         "prompts × group size expected); delete it or point --offline-data elsewhere")
    differ = [k for k in OFFLINE_SOURCE if d["source"].get(k) != source[k]]
    if differ:
        raise UsageError(f"--offline-data: {path} was sampled with other options (differs in: {', '.join(differ)}); "
                         "delete it or point --offline-data elsewhere")
    return Rollouts(*(d[k] for k in OFFLINE_KEYS[:6])), d["rewards"], d["correct"]
