"""The registry against the reference implementations themselves, on the same tensors, where they import on CPU.

Optional: skipped unless TRL is installed (`pip install -e .[bench]`, which brings TRL and its `datasets`); verl's
losses import ray and are not checked here (their transcriptions in tests/test_parity.py were read from
verl/trainer/ppo/core_algos.py).
"""

import pytest
import torch

from banditlab.objectives import Batch, advantage, get_objective

trl = pytest.importorskip("trl.trainer.grpo_trainer", reason="TRL is not installed (optional extra: bench)")


@pytest.mark.parametrize("delta", [0.0, 0.1, 0.2, 0.4])
def test_off_policy_sequence_mask_equals_trl(delta):
    """TRL's `GRPOTrainer.get_off_policy_mask` (DeepSeek-V3.2 eq. 9) against the sequences `grpo-opsm` keeps:
    a kept sequence's gradient equals GRPO's, a dropped one's is zero."""
    g = torch.Generator().manual_seed(0)
    n, T = 8, 6
    mask = (torch.arange(T)[None, :] < torch.randint(1, T + 1, (n,), generator=g)[:, None]).double()
    old = -torch.rand(n, T, generator=g, dtype=torch.float64) * 3
    logp = old - 0.2 + 0.6 * torch.randn(n, T, generator=g, dtype=torch.float64)  # drift ≈ 0.2 ± noise
    r = torch.tensor([1.0, -1.0, -1.0, 1.0, -1.0, 1.0, -1.0, -1.0], dtype=torch.float64)
    group = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    a = advantage(Batch(logp, old, r, group=group, mask=mask), std_norm=True)
    theirs = trl.GRPOTrainer.get_off_policy_mask(a.unsqueeze(1), logp, old, mask, delta).squeeze(1)

    def grad(name, **kw):
        leaf = logp.clone().requires_grad_(True)
        loss = get_objective(name, **kw)(Batch(leaf, old, r, group=group, mask=mask))
        return torch.autograd.grad(loss, leaf)[0]

    masked, plain = grad("grpo-opsm", opsm_delta=delta), grad("grpo")
    kept = torch.tensor([bool(torch.allclose(masked[i], plain[i], atol=1e-14)) for i in range(n)])
    dropped = torch.tensor([bool((masked[i] == 0).all()) and not (plain[i] == 0).all() for i in range(n)])
    assert torch.equal(kept, theirs.bool()) and torch.equal(dropped, ~theirs.bool())
