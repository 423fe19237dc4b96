"""The registry against the reference implementations themselves, on the same tensors, where they import on CPU.

Optional: skipped unless TRL is installed (`pip install -e .[bench]`, which brings TRL and its `datasets`): its
off-policy sequence mask and `GRPOTrainer._compute_loss` for loss_type grpo, bnpo, dapo, cispo, sapo and the
sequence-level ratio (GSPO). verl's losses import ray and are not checked here (their transcriptions in
tests/test_parity.py were read from verl/trainer/ppo/core_algos.py).
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


def _trl_loss(loss_type, level, eps_low, eps_high, logp, old, a, mask):
    """TRL's own `GRPOTrainer._compute_loss` on given tensors: the trainer object carries only the attributes that
    method reads (no model: the per-token log-probs are handed in, so the gradient is taken with respect to them)."""
    from collections import defaultdict
    from types import SimpleNamespace

    t = object.__new__(trl.GRPOTrainer)
    same = lambda x, **_: x
    t.__dict__.update(
        loss_type=loss_type, importance_sampling_level=level, epsilon_low=eps_low, epsilon_high=eps_high, beta=0.0,
        top_entropy_quantile=1.0, aux_loss_enabled=False, off_policy_mask_threshold=None, use_vllm=False,
        _entropy_bonus_enabled=False, current_gradient_accumulation_steps=1, model=SimpleNamespace(training=True),
        _metrics=defaultdict(lambda: defaultdict(list)),
        accelerator=SimpleNamespace(gather=same, gather_for_metrics=same, reduce=same, num_processes=1),
        args=SimpleNamespace(delta=None, sapo_temperature_pos=1.0, sapo_temperature_neg=1.05, steps_per_generation=1))
    t._get_per_token_logps_and_entropies = lambda *args, **kw: (logp, torch.zeros_like(logp), None)
    n, T = mask.shape
    inputs = dict(prompt_ids=torch.zeros(n, 1, dtype=torch.long), prompt_mask=torch.ones(n, 1),
                  completion_ids=torch.zeros(n, T, dtype=torch.long), completion_mask=mask, advantages=a,
                  old_per_token_logps=old, num_items_in_batch=mask.sum())
    return t._compute_loss(None, inputs)


# ours (name, settings from banditlab.references) against TRL (loss_type, importance_sampling_level, ε_low, ε_high)
TRL_LOSSES = [
    ("grpo", {"agg": "seq-mean-token-mean"}, ("grpo", "token", 0.2, 0.2)),
    ("grpo", {}, ("bnpo", "token", 0.2, 0.2)),
    ("dapo", {}, ("dapo", "token", 0.2, 0.28)),
    ("gspo", {}, ("grpo", "sequence", 3e-4, 4e-4)),
    ("cispo", {}, ("cispo", "token", 0.2, 5.0)),
    ("sapo", {}, ("sapo", "token", 0.2, 0.2)),
]


@pytest.mark.parametrize("name,kw,theirs", TRL_LOSSES, ids=[f"{n}-{t[0]}-{t[1]}" for n, kw, t in TRL_LOSSES])
def test_loss_gradient_equals_trls_own(name, kw, theirs):
    """∂loss/∂log π of the registry entry equals that of TRL's `_compute_loss` (its `loss_type`) on the same
    log-probs, behaviour log-probs, advantages and mask, with ratios both inside and outside every clip window."""
    g = torch.Generator().manual_seed(1)
    n, T = 8, 6
    mask = (torch.arange(T)[None, :] < torch.randint(1, T + 1, (n,), generator=g)[:, None]).double()
    old = -torch.rand(n, T, generator=g, dtype=torch.float64) * 3
    scale = {"gspo": 1e-3, "cispo": 1.0}.get(name, 0.4)  # ratios on both sides of each window (GSPO's: ±4e-4 on
    # the length-normalised ratio; CISPO's: ρ ≤ 5)
    logp = old + scale * torch.randn(n, T, generator=g, dtype=torch.float64)
    r = torch.tensor([1.0, -1.0, -1.0, 1.0, -1.0, 1.0, -1.0, -1.0], dtype=torch.float64)  # no all-equal group
    group = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    obj = get_objective(name, std="unbiased", std_eps=1e-4, **kw)

    def grad(loss_of):
        leaf = logp.clone().requires_grad_(True)
        return torch.autograd.grad(loss_of(leaf), leaf)[0] * mask

    a = advantage(Batch(logp, old, r, group=group, mask=mask), std_norm=True, std="unbiased", std_eps=1e-4)
    ours = grad(lambda lp: obj(Batch(lp, old, r, group=group, mask=mask)))
    ref = grad(lambda lp: _trl_loss(*theirs, lp, old, a, mask))
    # rtol 1e-6, not float64's 1e-15: TRL builds SAPO's temperatures in float32 (torch.where on Python floats)
    assert ours.abs().max() > 0 and torch.allclose(ours, ref, atol=1e-12, rtol=1e-6)
