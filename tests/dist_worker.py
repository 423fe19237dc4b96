"""Run by tests/test_distributed.py under `torchrun --nproc_per_node N` (and in one process): one SGD step of the
trainer on a fixed global batch, per objective; the main process saves the LoRA update of each."""

import sys
from pathlib import Path

import torch

from banditlab_llm.models import lora_params
from banditlab_llm.train import Trainer, TrainConfig

out, algos = Path(sys.argv[1]), sys.argv[2].split(",")
out.mkdir(parents=True, exist_ok=True)
REWARDS = torch.tensor([1, -1, -1, 1, -1, -1, -1, 1, 1, 1, -1, -1, -1, 1, -1, -1], dtype=torch.float32)
updates = {}
for algo in algos:
    cfg = TrainConfig(model="tiny", dataset="arithmetic", n_train=16, eval_n=0, group_size=4, prompts_per_step=4,
                      steps=1, max_new_tokens=8, algo=algo, grad_clip=0.0, lr=1.0,
                      out=str(out / f"run-{algo}"), checkpoint_every=100)
    tr = Trainer(cfg, echo=lambda *_: None)
    idx = tr.batch_indices(0)
    # the same global batch in every process (same seed, same model), then this process's block of prompts
    g = tr.backend.generate([tr.prompts[i] for i in idx], 4, 8, seed=123, state=tr.behaviour)
    mine = tr.dist.block(list(range(len(idx))))
    rows = [p * 4 + k for p in mine for k in range(4)]
    tr.rollouts = lambda _idx: (g.select(rows), REWARDS[rows], [bool(x > 0) for x in REWARDS[rows]],
                                tr._groups(len(mine)))
    before = [q.detach().clone() for q in lora_params(tr.model).values()]
    tr.opt = torch.optim.SGD(tr.params, lr=1.0)
    logs = tr.train_step()
    updates[algo] = ([(a.detach() - b) for a, b in zip(lora_params(tr.model).values(), before)],
                     {k: logs[k] for k in ("reward_mean", "adv_mean", "entropy", "loss", "world_size")})
if tr.dist.main:
    torch.save(updates, out / f"updates-{tr.dist.world}.pt")
