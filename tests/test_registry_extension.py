"""An objective added from outside the registry's files: declared and registered in this module alone, it runs in
the bandit simulator and the LLM trainer, and the checks that depend on an objective (group size, micro-batches,
the simulator's fast paths) follow its declarations."""

import pytest
import torch

from banditlab.errors import UsageError
from banditlab.registry.objectives import (OBJECTIVES, Batch, ObjectiveError, aggregate, between, get_objective, loss,
                                           register, unregister)
from banditlab.science import bandits
from banditlab.science.simulator import run_grid
from banditlab_llm.config import TrainConfig, validate
from test_llm import REWARDS, check_one_step

NAME = "group-median"


def group_medians(r: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """The median of r over each sample's group (the mean of the two middle values in an even group), per sample."""
    out = torch.empty_like(r)
    for g in group.unique():
        rows = (group == g).nonzero().squeeze(-1)
        out[..., rows] = r[..., rows].quantile(0.5, dim=-1, keepdim=True)
    return out


@loss(linear=lambda p: True, scope="group", ranges={"offset": between(-1e6, 1e6)})
def median_reinforce(batch: Batch, offset=0.0, agg: str = "token-mean") -> tuple:
    """REINFORCE with a group-median baseline, a statistic the loss computes itself over the groups it is given:

        ℓ = −(r − median_g(r) − offset) · log π(y)
    """
    r = batch.reward.to(batch.logp.dtype)
    r = r.expand(*(batch.logp.shape[:-2] if batch.tokens else batch.logp.shape[:-1]), r.shape[-1])
    group = batch.group if batch.group is not None else torch.zeros(r.shape[-1], dtype=torch.long)
    a = r - group_medians(r, group) - offset
    return aggregate(-(a.unsqueeze(-1) if batch.tokens else a) * batch.logp, batch, agg), None


@pytest.fixture
def group_median():
    obj = register(NAME, median_reinforce, "REINFORCE with a group-median baseline")
    yield obj
    unregister(NAME)
    assert NAME not in OBJECTIVES


def test_the_registered_objective_is_looked_up_like_a_built_in_and_declares_a_group_statistic(group_median):
    obj = get_objective(NAME, offset=0.5)
    assert obj.params == {"offset": 0.5, "agg": "token-mean"} and obj.scope == "group"
    assert obj.group_statistic and not obj.advantage_groups and not obj.per_sample and obj.linear_in_logp
    logp = torch.zeros(6, dtype=torch.float64, requires_grad=True)
    r = torch.tensor([1.0, 0.0, 0.0, 2.0, 0.0, 1.0], dtype=torch.float64)
    b = Batch(logp, logp.detach(), r, group=torch.tensor([0, 0, 0, 1, 1, 1]))
    (g,) = torch.autograd.grad(obj(b), logp)
    assert torch.allclose(g, -(r - torch.tensor([0.0] * 3 + [1.0] * 3, dtype=torch.float64) - 0.5) / 6)


def test_registration_is_refused_for_a_taken_name_an_undeclared_function_or_an_unknown_default(group_median):
    with pytest.raises(ObjectiveError, match="already registered"):
        register(NAME, median_reinforce, "again")
    with pytest.raises(ObjectiveError, match="@loss"):
        register("plain", lambda batch: (batch.logp.sum(), None), "no declaration")
    with pytest.raises(ObjectiveError, match="no parameter 'nope'"):
        register("median-nope", median_reinforce, "bad default", nope=1)
    with pytest.raises(ObjectiveError, match="offset"):
        register("median-far", median_reinforce, "out of range", offset=1e9)
    assert {"plain", "median-nope", "median-far"}.isdisjoint(OBJECTIVES)


def test_the_bandit_simulator_runs_it_in_sampled_mode_with_groups(group_median):
    """Groups of 8 pulls of a bandit whose best arm pays 1 and the others 0: the median of a group is 0 (the best
    arm is pulled less than half the time), so A = r and π moves to the best arm."""
    b = bandits.from_lists([1.0, 0.0, 0.0, 0.0])
    df, _ = run_grid(b, group_median, [0.0], mode="sampled", batch=8, steps=40, lr=1.0, log_every=40)
    first, last = df[df.step == 0].iloc[0], df[df.step == 40].iloc[0]
    assert not df.diverged.any() and last.p_best > first.p_best + 0.2


def test_the_llm_trainer_takes_one_step_as_its_formula_says(group_median, tmp_path):
    """REWARDS: group 1 [1, −1, −1, 1] has median 0, group 2 [−1, −1, −1, 1] median −1."""
    r = torch.tensor(REWARDS, dtype=torch.float32)
    check_one_step(NAME, (), r - torch.tensor([0.0] * 4 + [-1.0] * 4), tmp_path)


def test_the_llm_config_derives_group_size_and_micro_batch_rules_from_the_scope(group_median):
    with pytest.raises(UsageError, match="^--group-size: group-median's loss uses a statistic over each prompt's"):
        validate(TrainConfig(model="tiny", algo=NAME, group_size=1))
    with pytest.raises(UsageError, match="^--micro-batch: group-median computes its loss over each prompt's group"):
        validate(TrainConfig(model="tiny", algo=NAME, group_size=4, prompts_per_step=2, micro_batch=4))
    validate(TrainConfig(model="tiny", algo=NAME, group_size=4, prompts_per_step=2, micro_batch=0))
    validate(TrainConfig(model="tiny", algo=NAME, group_size=4, prompts_per_step=2, micro_batch=8))
