"""Each registry objective's autograd gradient against a hand-computed value, and the equivalences between them."""

import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
import torch

from banditlab.registry.objectives import OBJECTIVES, Batch, get_objective, parse_algo_args

torch.set_default_dtype(torch.float64)

# one group of 4 samples and one of 2; rewards ±1 and {0,1} mixed on purpose
R = torch.tensor([1.0, -1.0, -1.0, 1.0, 0.0, 1.0])
G = torch.tensor([0, 0, 0, 0, 1, 1])
LOGP_OLD = torch.log(torch.tensor([0.2, 0.3, 0.1, 0.4, 0.5, 0.25]))
LOGP = LOGP_OLD + torch.tensor([0.3, -0.5, 0.05, -0.1, 0.7, -0.9])  # ratios on both sides of [0.8, 1.2]
RHO = torch.exp(LOGP - LOGP_OLD)
N = len(R)
MEAN = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.5, 0.5])  # group means
A = R - MEAN


def grad_of(name, **kw):
    logp = LOGP.clone().requires_grad_(True)
    loss = get_objective(name, **kw)(Batch(logp, LOGP_OLD, R, group=G))
    (g,) = torch.autograd.grad(loss, logp)
    return g


def test_reinforce_gradient_is_minus_advantage():
    assert torch.allclose(grad_of("reinforce"), -A / N)
    assert torch.allclose(grad_of("reinforce", baseline="none"), -R / N)
    assert torch.allclose(grad_of("reinforce", baseline="absolute", offset=0.3), -(R - 0.3) / N)


def test_asymre_shifts_the_group_mean_by_delta_v():
    assert torch.allclose(grad_of("asymre", offset=-0.1), -(A + 0.1) / N)
    assert torch.allclose(grad_of("asymre"), -(A + 0.1) / N)  # its default δV is −0.1


def test_topr_tapers_only_negatives():
    w = torch.where(A >= 0, torch.ones_like(RHO), RHO.clamp(0, 1))
    assert torch.allclose(grad_of("topr", baseline="group"), -w * A / N)
    assert torch.allclose(grad_of("topr"), -torch.where(R >= 0, 1.0, RHO.clamp(0, 1)) * R / N)


def test_importance_sampling_family():
    assert torch.allclose(grad_of("is"), -RHO * A / N)
    assert torch.allclose(grad_of("tis"), -RHO.clamp(0, 1) * A / N)


def test_ppo_gradient_flows_only_through_unclipped_terms():
    unclipped = torch.where(A >= 0, RHO <= 1.2, RHO >= 0.8).to(RHO.dtype)
    assert torch.allclose(grad_of("ppo"), -unclipped * RHO * A / N)


def test_grpo_normalises_by_group_std():
    std = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.5, 0.5])  # population std of each group's rewards
    unclipped = torch.where(A >= 0, RHO <= 1.2, RHO >= 0.8).to(RHO.dtype)
    assert torch.allclose(grad_of("grpo"), -unclipped * RHO * A / (std + 1e-6) / N)


@pytest.mark.parametrize("clip", ["none", "one-side", "two-side", "ring"])
def test_rec_masks(clip):
    lo, hi, rlo, rhi = 0.8, 1.2, 0.4, 3.0
    two = (RHO >= lo) & (RHO <= hi)
    m = {"none": torch.ones_like(RHO, dtype=torch.bool), "two-side": two,
         "one-side": ((A >= 0) & (RHO <= hi)) | ((A <= 0) & (RHO >= lo)),
         "ring": two | ((A >= 0) & (RHO <= rlo)) | ((A <= 0) & (RHO >= rhi))}[clip].to(RHO.dtype)
    assert torch.allclose(grad_of("rec", clip=clip), -m * A / N)
    assert torch.allclose(grad_of("rec", clip=clip, weight="is"), -m * RHO * A / N)


def test_red_weight_and_regularisers():
    assert torch.allclose(grad_of("red-weight"), -A * torch.exp(A) / N)
    assert torch.allclose(grad_of("opmd", coef=0.5), (-A + 0.5 * (LOGP - LOGP_OLD)) / N)
    assert torch.allclose(grad_of("rep-asymre", coef=0.1), (-A - 0.1) / N)
    assert torch.allclose(grad_of("sft"), -(R > 0).to(R.dtype) / N)


def test_red_drop_balances_each_group():
    # group 0: one positive, three negatives → two negatives dropped, mean recomputed on the two kept
    r = torch.tensor([1.0, 0.0, 0.0, 0.0])
    logp = torch.zeros(4, requires_grad=True)
    gen = torch.Generator().manual_seed(3)
    loss = get_objective("red-drop")(Batch(logp, torch.zeros(4), r, generator=gen))
    (g,) = torch.autograd.grad(loss, logp)
    a = -g * 4
    assert a[0] == pytest.approx(0.5)
    assert sorted(a[1:].tolist()) == pytest.approx([-0.5, 0.0, 0.0])
    # with probability weights the negatives keep the fraction n+/n- = 1/3 of their weight instead
    w = torch.full((4,), 0.25)
    loss = get_objective("red-drop")(Batch(logp, torch.zeros(4), r, weight=w))
    (g,) = torch.autograd.grad(loss, logp)
    kept_mean = 0.25 / (0.25 + 3 * 0.25 / 3)
    assert torch.allclose(-g, w * torch.tensor([1 - kept_mean] + [-kept_mean / 3] * 3))


# ------------------------------------------------------------------------------------- equivalences
def random_batch(seed, n=16, groups=4):
    g = torch.Generator().manual_seed(seed)
    logp_old = -torch.rand(n, generator=g) * 3
    logp = (logp_old + 0.6 * torch.randn(n, generator=g)).requires_grad_(True)
    r = (torch.rand(n, generator=g) > 0.5).to(torch.float64) * 2 - 1
    return Batch(logp, logp_old, r, group=torch.arange(n) % groups)


def grad(obj, batch):
    return torch.autograd.grad(obj(batch), batch.logp)[0]


@pytest.mark.parametrize("seed", range(5))
def test_grpo_equals_rec_one_side_with_is_and_std(seed):
    b = random_batch(seed)
    assert torch.allclose(grad(get_objective("grpo"), b),
                          grad(get_objective("rec", weight="is", std_norm=True), b))


def test_topr_on_all_positive_data_equals_sft():
    b = random_batch(0)
    b.reward = torch.ones_like(b.reward)
    assert torch.allclose(grad(get_objective("topr"), b), grad(get_objective("sft"), b))


def test_on_policy_topr_and_is_equal_reinforce():
    b = random_batch(1)
    b.logp_old = b.logp.detach().clone()
    ref = grad(get_objective("reinforce", baseline="none"), b)
    for name in ("topr", "is", "tis"):
        assert torch.allclose(grad(get_objective(name, baseline="none"), b), ref)
    assert torch.allclose(grad(get_objective("opmd"), b), grad(get_objective("reinforce"), b))


def test_rep_asymre_equals_asymre_with_offset_minus_beta():
    b = random_batch(2)
    assert torch.allclose(grad(get_objective("rep-asymre", coef=0.3), b),
                          grad(get_objective("asymre", offset=-0.3), b))


def test_per_run_parameters_equal_separate_calls():
    b = random_batch(3)
    offsets = torch.tensor([[-0.2], [0.0], [0.4]])
    stacked = Batch(b.logp.detach().expand(3, -1).clone().requires_grad_(True), b.logp_old.expand(3, -1),
                    b.reward, group=b.group)
    obj = get_objective("asymre", baseline="group")
    (g,) = torch.autograd.grad(obj(stacked, offset=offsets).sum(), stacked.logp)
    for i, o in enumerate(offsets[:, 0].tolist()):
        assert torch.allclose(g[i], grad(obj.with_params(offset=o), b))


# ------------------------------------------------------------------------------------- tokens
def test_token_level_aggregation_and_sequence_ratio():
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    logp_old = torch.log(torch.tensor([[0.5, 0.4, 0.9, 1.0], [0.3, 0.2, 1.0, 1.0]]))
    logp = (logp_old + torch.tensor([[0.1, -0.2, 0.3, 5.0], [-0.4, 0.2, 7.0, 7.0]])).requires_grad_(True)
    r = torch.tensor([1.0, -1.0])
    b = Batch(logp, logp_old, r, mask=mask)
    g = grad(get_objective("reinforce", baseline="none"), b)
    assert torch.allclose(g, -r[:, None] * mask / mask.sum())  # token-mean over the 5 real tokens
    g = grad(get_objective("reinforce", baseline="none", agg="seq-mean-token-mean"), b)
    assert torch.allclose(g, -r[:, None] * mask / mask.sum(-1, keepdim=True) / 2)
    # sequence ratio of the negative sample: exp(−0.4 + 0.2) (padding excluded), tapered to [0, 1]
    g = grad(get_objective("topr"), b)
    assert g[1, 0].item() == pytest.approx(math.exp(-0.2) / 5)
    g = grad(get_objective("topr", ratio_level="token"), b)
    assert g[1, 0].item() == pytest.approx(math.exp(-0.4) / 5) and g[1, 1].item() == pytest.approx(1 / 5)


def test_registry_names_and_parameter_errors():
    assert {"reinforce", "asymre", "topr", "is", "tis", "ppo", "grpo", "rec", "opmd", "sft"} <= set(OBJECTIVES)
    assert parse_algo_args("topr", ["a_neg=0.5", "b-neg=inf"]).defaults["b_neg"] == math.inf
    for bad in (["nope=1"], ["a_neg"], ["a_neg=abc"], ["a_neg=nan"]):
        with pytest.raises(ValueError, match="algo-arg"):
            parse_algo_args("topr", bad)
    with pytest.raises(ValueError, match="unknown algorithm"):
        get_objective("reinforce++")


def test_taper_is_the_antiderivative_of_the_clipped_ratio():
    from banditlab.registry.objectives import taper

    for a, b in [(1.0, 1.0), (0.0, 1.0), (0.5, 2.0), (0.0, math.inf)]:
        logp = torch.linspace(-3, 2, 41, dtype=torch.float64).requires_grad_(True)
        t = taper(torch.exp(logp), a, b)
        (g,) = torch.autograd.grad(t.sum(), logp)
        assert torch.allclose(g, torch.exp(logp).clamp(a, b))  # dT/dlog π = clip(ρ, a, b) (μ = 1 here)
        assert torch.isfinite(t).all()


# ------------------------------------------------------------------------------------------ the parameter schema
def _ranged():
    from banditlab.registry.objectives import ADVANTAGE_RANGES

    return [(name, key, rng) for name, o in OBJECTIVES.items()
            for key, rng in {**(ADVANTAGE_RANGES if o.fn.uses_advantage else {}), **o.fn.ranges}.items()]


RANGED = _ranged()


@settings(max_examples=150, deadline=None)
@given(case=st.sampled_from(RANGED), u=st.floats(0, 1), outside=st.booleans(), far=st.floats(1e-3, 1e3))
def test_every_declared_range_accepts_inside_and_refuses_outside(case, u, outside, far):
    """Hypothesis over the registry's schema: a value inside a parameter's declared range is accepted (unless a
    cross-check such as a_pos <= b_pos refuses it, with a line naming both) and gives a finite loss; a value
    outside is refused with one line that names the parameter."""
    from banditlab.registry.objectives import ObjectiveError

    name, key, (lo, hi, lo_open, hi_open) = case
    if outside:
        value = lo - far if lo > -math.inf else hi + far
        with pytest.raises(ObjectiveError) as e:
            parse_algo_args(name, [f"{key}={value!r}"])
        assert key in str(e.value) and "\n" not in str(e.value)
        return
    top = hi if hi < math.inf else lo + 10.0
    value = lo + u * (top - lo)
    assume(not (lo_open and value == lo))
    try:
        obj = parse_algo_args(name, [f"{key}={value!r}"])
    except ObjectiveError as err:
        assert "is required" in str(err) and key in str(err) and "\n" not in str(err)
        return
    logp = LOGP.clone().requires_grad_(True)
    loss = obj(Batch(logp, LOGP_OLD, R, group=G))
    (g,) = torch.autograd.grad(loss, logp)
    assert torch.isfinite(loss) and torch.isfinite(g).all()


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(list(OBJECTIVES)), key=st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12))
def test_unknown_and_repeated_keys_are_refused(name, key):
    from banditlab.registry.objectives import ObjectiveError

    params = OBJECTIVES[name].params
    if key in params:
        good = f"{key}={params[key]}".replace("None", "none")
        with pytest.raises(ObjectiveError, match="given twice"):
            parse_algo_args(name, [good, good])
    else:
        with pytest.raises(ObjectiveError, match=f"'{key}'"):
            parse_algo_args(name, [f"{key}=1"])


@pytest.mark.parametrize("args,needle", [
    (("ppo", ["eps_low=-1"]), "eps_low"), (("topr", ["a_pos=2"]), "a_pos <= b_pos"),
    (("red-weight", ["temp=0"]), "temp"), (("grpo", ["std_norm=3"]), "std_norm"),
    (("sapo", ["tau_neg=-0.5"]), "tau_neg"), (("grpo-tis", ["mismatch=clip"]), "mismatch"),
])
def test_meaningless_values_are_refused_in_one_line(args, needle):
    from banditlab.errors import UsageError

    with pytest.raises(UsageError) as e:
        parse_algo_args(*args)
    assert needle in str(e.value) and "\n" not in str(e.value)
