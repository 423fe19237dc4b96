"""The simulator against the theory: convergence, collapse, on-policy invariance, sampled-vs-exact, resume."""

import itertools

import numpy as np
import pytest
import torch

from banditlab.science import bandits

from banditlab.science import theory
from banditlab.registry.objectives import get_objective
from banditlab.science.behaviour import Behavior
from banditlab.science.simulator import METRICS, SimConfig, Simulator, final_policy

J = METRICS.index("expected_reward")


def sim(bandit, offsets, algo="asymre", steps=200, **kw):
    obj = get_objective(algo).with_params(baseline=kw.pop("baseline", "vmu"))
    cfg = SimConfig(**{"mode": "exact", "steps": steps, "log_every": max(1, steps // 10), **kw})
    s = Simulator(bandit, obj, {"offset": np.asarray(offsets, float)}, cfg, seed=kw.get("seed", 0))
    return s, s.run(s.initial_state())


@pytest.mark.parametrize("seed", range(4))
def test_exact_mode_converges_to_the_closed_form_limit(seed):
    rng = np.random.default_rng(seed)
    b = bandits.from_lists(rng.uniform(0, 1, 5), rng.dirichlet(np.ones(5) * 2))
    mu, r = b.mu[0], b.means[0]
    offsets = [-1.0, -0.5, -0.2, -0.1]
    limits = [theory.limit_policy(mu, r, theory.v_mu(mu, r) + d) for d in offsets]
    # a per-run step size with η b max π* = 1 keeps the discrete map contracting (it must stay below 2)
    lr = np.array([1.0 / (-d * p.max()) for d, p in zip(offsets, limits)])
    _, state = sim(b, offsets, steps=3000, lr=lr)
    pi = final_policy(state)[:, 0]
    for i in range(len(offsets)):
        assert np.abs(pi[i] - limits[i]).sum() < 1e-6


def test_one_arm_left_at_and_above_v_mu_and_improvement_below():
    b = bandits.paper(arms=20, noise="none")
    _, state = sim(b, [-0.3, -0.05, 0.0, 0.1, 0.3], steps=6000, lr=10.0)
    final = state.log_values[-1]
    support = final[:, METRICS.index("support_size")].numpy()
    assert (support[2:] == 1).all() and (support[:2] > 1).all()
    assert (final[:2, J].numpy() > b.v_mu_total).all()


def test_rec_counterexample_ends_on_the_suboptimal_arm():
    b = bandits.from_lists([0.0, 0.8, 1.0], [0.3, 0.6, 0.1])
    s, state = sim(b, [0.0], algo="reinforce", steps=1, lr=1.0, baseline="group")
    drift = (state.logits - s.logits0)[0, 0].numpy()
    drift -= drift.mean() - np.mean([-0.174, 0.132, 0.042])  # logits are centred after logging
    assert np.allclose(drift, [-0.174, 0.132, 0.042])
    _, state = sim(b, [0.0], algo="reinforce", steps=3000, lr=1.0, baseline="group")
    assert final_policy(state)[0, 0].argmax() == 1 and final_policy(state)[0, 0, 1] > 0.99


def test_on_policy_expected_updates_do_not_depend_on_the_baseline():
    b = bandits.paper(arms=10, noise="none")
    _, state = sim(b, [-0.5, -0.1, 0.0, 0.2, 0.5], steps=300, behavior="lag:1")
    pi = final_policy(state)[:, 0]
    assert np.abs(pi - pi[0]).max() < 1e-12
    _, fixed = sim(b, [-0.5, 0.5], steps=300)  # off-policy: the baseline matters
    assert np.abs(final_policy(fixed)[0] - final_policy(fixed)[1]).max() > 1e-2


@pytest.mark.parametrize("algo", ["asymre", "topr", "grpo"])
def test_sampled_mean_update_matches_exact_within_standard_error(algo):
    b = bandits.paper(arms=6, noise="bernoulli")
    b.low = -1.0
    b.means = 2 * b.means - 1
    replicas = 4000
    kw = dict(baseline="group") if algo != "topr" else dict(baseline="none")
    exact = Simulator(b, get_objective(algo, **kw), {"offset": np.zeros(1)}, SimConfig(mode="exact"))
    samp = Simulator(b, get_objective(algo, **kw), {"offset": np.zeros(replicas)},
                     SimConfig(mode="sampled", batch=64))
    # a policy away from μ, so the ratio-based objectives are really off-policy
    logits = torch.log_softmax(torch.tensor(b.logits) + torch.linspace(-1, 1, 6), -1)[None].double()

    def grad(s, runs):
        leaf = logits.expand(runs, 1, 6).clone().requires_grad_(True)
        lp = torch.log_softmax(leaf, -1)
        snap = torch.tensor(b.logits)[None].expand(runs, 1, 6)
        batch = s.exact_batch(lp, snap) if s.cfg.mode == "exact" else s.sampled_batch(
            lp, snap, torch.Generator().manual_seed(0))
        if algo == "grpo":  # GRPO's std normalisation is not linear: compare the sampled mean with itself
            pass
        return torch.autograd.grad(s.objective(batch, **s.params).sum(), leaf)[0][:, 0]

    g_s = grad(samp, replicas)
    mean, se = g_s.mean(0), g_s.std(0) / replicas ** 0.5
    g_e = grad(exact, 1)[0]
    if algo == "grpo":
        # a finite group's std normaliser is biased relative to the population std: only the sign pattern holds
        assert torch.equal(torch.sign(mean[mean.abs() > 4 * se]), torch.sign(g_e[mean.abs() > 4 * se]))
    else:
        # group-mean baseline over G pulls: E = (1 − 1/G) × exact (theory.group_baseline_offset)
        scale = (1 - 1 / 64) if kw["baseline"] == "group" else 1.0
        assert ((mean - scale * g_e).abs() < 4 * se + 1e-12).all()


def test_contextual_bandit_reaches_each_context_limit():
    b = bandits.paper(arms=4, contexts=3, noise="none")
    _, state = sim(b, [-0.2], steps=4000, lr=3 * 5.0)  # p(x) = 1/3 scales each context's step
    pi = final_policy(state)[0]
    for x in range(3):
        target = theory.limit_policy(b.mu[x], b.means[x], b.v_mu[x] - 0.2)
        assert np.abs(pi[x] - target).sum() < 1e-5


@pytest.mark.parametrize("mode", ["exact", "sampled"])
def test_extreme_baselines_and_learning_rates_stay_finite(mode):
    b = bandits.paper(arms=30)
    for algo in ("asymre", "is", "reinforce"):
        s, state = sim(b, [-10.0, -1.0, 0.0, 1.0, 10.0], algo=algo, steps=300, lr=100.0, mode=mode,
                       baseline="absolute")
        vals = torch.stack(state.log_values)
        assert torch.isfinite(vals[1:, :, :-1]).all() and not state.diverged.any()


def test_behaviour_lag_refreshes_exactly_every_n_steps():
    b = bandits.paper(arms=10, noise="none")
    s, state = sim(b, [-0.1], steps=100, behavior="lag:7", log_every=1)
    vmu = torch.stack(state.log_values)[:, 0, METRICS.index("v_mu")].numpy()
    changed = np.nonzero(np.abs(np.diff(vmu)) > 1e-12)[0] + 1  # logged step index where μ changed
    steps = np.asarray(state.log_steps)[changed]
    assert list(steps) == list(range(8, 101, 7))  # the refresh at step t=7k is first visible after its update


def test_behaviour_parsing_and_mixing():
    assert Behavior.parse("lag:10,mix:0.2:uniform") == Behavior(lag=10, mix=0.2, mix_ref="uniform")
    for bad in ("lag:0", "mix:1.5", "delay:3", "later", "lag:x"):
        with pytest.raises(ValueError, match="--behavior"):
            Behavior.parse(bad)
    b = bandits.paper(arms=5)
    s = Simulator(b, get_objective("asymre"), {"offset": np.zeros(1)}, SimConfig(behavior="mix:0.25:uniform"))
    mu = s.behaviour_logp(torch.tensor(b.logits)[None]).exp()[0, 0].numpy()
    assert np.allclose(mu, 0.75 * b.mu[0] + 0.25 / 5)


def test_delay_uses_the_policy_k_steps_old():
    b = bandits.paper(arms=6, noise="none")
    cfg = SimConfig(mode="exact", steps=30, behavior="lag:1,delay:5", log_every=1)
    s = Simulator(b, get_objective("asymre", baseline="vmu"), {"offset": np.zeros(1)}, cfg)
    st = s.initial_state()
    history = []

    def keep(state):
        history.append(torch.softmax(state.logits, -1).clone())
        return False

    s.run(st, on_step=keep)
    # the batch of step t comes from π_{t−5}; history[i] is π_{i+1}, and the last step is t = 29
    assert torch.allclose(torch.softmax(st.snapshot, -1), history[29 - 5 - 1])
    assert not torch.allclose(torch.softmax(st.snapshot, -1), history[29 - 4 - 1])


@pytest.mark.parametrize("algo,behavior,baseline", [("red-drop", "lag:9", "group"), ("asymre", "fixed", "group"),
                                                     ("asymre", "fixed", "vmu")])
def test_resume_is_bit_identical(algo, behavior, baseline):
    """Stopped at step 37 and resumed from `checkpoint` (what `sweep` saves when it stops), a run ends exactly as
    an uninterrupted one; with a fixed behaviour the sampled step draws many steps ahead, so step 37 falls inside
    a block of steps drawn together (per pull with the group baseline, per cell with V^μ's)."""
    b = bandits.paper(arms=12)
    cfg = SimConfig(mode="sampled", steps=120, log_every=10, behavior=behavior)
    mk = lambda: Simulator(b, get_objective(algo, baseline=baseline), {"offset": np.zeros(3)}, cfg, seed=5)
    full = mk().run(mk().initial_state())
    s = mk()
    part = s.run(s.initial_state(), on_step=lambda st: st.step == 37)
    assert part.step == 37
    saved = {k: (v.clone() if torch.is_tensor(v) else list(v) if isinstance(v, list) else v)
             for k, v in s.checkpoint(part).items()}
    resumed = mk().run(type(part)(**saved))
    assert torch.equal(resumed.logits, full.logits)
    torch.testing.assert_close(torch.stack(resumed.log_values), torch.stack(full.log_values), rtol=0, atol=0,
                               equal_nan=True)  # the step-0 loss is NaN (no update yet)


# ------------------------------------------------------------------------------------------ the analytic step
BEHAVIOURS = ["fixed", "lag:1", "lag:3", "lag:2,delay:2", "mix:0.3:uniform", "lag:4,mix:0.5"]


@pytest.mark.parametrize("mode", ["exact", "sampled"])
@pytest.mark.parametrize("behavior", BEHAVIOURS)
def test_analytic_step_equals_autograd_for_every_objective(mode, behavior):
    """The registry's ∂L/∂log π plus the softmax chain rule (cached where `linear_in_logp`) moves the logits
    exactly as autograd through the whole step, for every objective, behaviour and update mode."""
    from banditlab.registry.objectives import OBJECTIVES

    b = bandits.paper(arms=7, contexts=2, noise="bernoulli")
    offsets = np.array([-0.2, 0.0, 0.15])
    for name, obj in OBJECTIVES.items():
        params = {"offset": offsets} if "offset" in obj.params else {}
        if "baseline" in obj.params and obj.params["baseline"] == "vmu":
            continue
        states = []
        for grad in ("analytic", "autograd"):
            cfg = SimConfig(mode=mode, steps=12, log_every=5, behavior=behavior, batch=8, lr=3.0, grad=grad)
            s = Simulator(b, obj, params, cfg, seed=1, runs=3)
            states.append(s.run(s.initial_state()))
        a, ref = states
        # 1e-12 relative to the problem's scale: GRPO with δV ≠ 0 on a group of equal rewards divides δV by
        # std_eps = 1e-6, so its steps move logits by 1e5 and round-off scales with them
        scale = max(1.0, max(float(v.abs().nan_to_num().max()) for v in ref.log_values))
        assert torch.allclose(a.logits, ref.logits, atol=1e-12 * scale, rtol=0), (name, mode, behavior)
        assert all(torch.allclose(x, y, atol=1e-12 * scale, rtol=1e-12, equal_nan=True)
                   for x, y in zip(a.log_values, ref.log_values)), (name, mode, behavior)


def test_linear_in_logp_flags_exactly_the_objectives_whose_gradient_ignores_logp():
    """Evaluate ∂ℓ/∂log π at two different log π: equal gradients for the flagged objectives, different otherwise."""
    from banditlab.registry.objectives import OBJECTIVES, Batch

    g = torch.Generator().manual_seed(0)
    old = torch.log_softmax(torch.randn(8, generator=g, dtype=torch.float64), -1)
    r = torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0, 1.0, -1.0, -1.0], dtype=torch.float64)
    grads = {}
    for name, obj in OBJECTIVES.items():
        out = []
        for shift in (0.0, 0.7):
            leaf = (old + shift * torch.randn(8, generator=g, dtype=torch.float64)).requires_grad_(True)
            batch = Batch(leaf, old, r, group=torch.tensor([0, 0, 0, 0, 1, 1, 1, 1]),
                          generator=torch.Generator().manual_seed(5))  # RED-Drop: the same random drops
            (gr,) = torch.autograd.grad(obj(batch), leaf)
            out.append(gr)
        grads[name] = torch.allclose(*out, atol=1e-14)
    assert {k for k, v in grads.items() if v} == {k for k, o in OBJECTIVES.items() if o.linear_in_logp}


def test_per_sample_flags_exactly_the_objectives_whose_sample_gradient_ignores_the_other_samples():
    """∂ℓ/∂log π of sample 0 (reward +1, then −1), with the other samples of its group redrawn (rewards, log π,
    log μ): the same for the objectives flagged `per_sample`, different for the others; every entry with its own
    baseline and with V^μ's."""
    from banditlab.registry.objectives import OBJECTIVES, Batch

    g = torch.Generator().manual_seed(0)
    rand = lambda n: torch.randn(n, generator=g, dtype=torch.float64)
    found, flags = {}, {}
    for name, obj in OBJECTIVES.items():
        variants = {name: obj}
        if "baseline" in obj.params:
            variants[f"{name} baseline=vmu"] = obj.with_params(baseline="vmu")
        for key, o in variants.items():
            same = []
            for r0, trial, scale in itertools.product((1.0, -1.0), range(6), (0.01, 0.5, 2.0)):
                if trial == 0:
                    grads = []
                others = torch.full((7,), r0) if trial == 0 else torch.where(rand(7) > 0, 1.0, -1.0)
                r = torch.cat([torch.tensor([r0]), others]).double()
                old = torch.cat([torch.tensor([-1.2]), -1 - rand(7).abs()]).double()
                # sample 0 on-policy (ρ = 1): inside every clip window, so no clip hides a dependence
                logp = torch.cat([old[:1], old[1:] + scale * rand(7)]).requires_grad_(True)
                batch = Batch(logp, old, r, group=torch.zeros(8, dtype=torch.long),
                              v_mu=torch.full((8,), 0.3, dtype=torch.float64),
                              generator=torch.Generator().manual_seed(5))
                (gr,) = torch.autograd.grad(o(batch), logp)
                grads.append(gr[0])
                same.append(torch.allclose(grads[-1], grads[0], rtol=1e-12, atol=1e-15))
            found[key] = all(same)
            flags[key] = o.per_sample
    assert found == flags
    assert sum(flags.values()) >= 8  # REINFORCE, AsymRE with V^μ, the tapered family, PPO, SFT, ...


@pytest.mark.parametrize("kernel", ["numpy", "torch"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_per_cell_sampled_step_gives_the_per_pull_numbers_bit_for_bit(kernel, dtype, monkeypatch):
    """Objectives whose pulls' gradients depend on the pull alone take their sampled step from a table of each
    cell's gradient; the same draws through the per-pull registry call give the same logits and metrics, bit for
    bit, with either kernel, three contexts, ±1 rewards and per-run baselines."""
    from banditlab.registry import objectives
    from banditlab.science import kernels as simulate

    b = bandits.paper(arms=9, contexts=3, low=-1.0, high=1.0)
    for k in ("cells", "accumulate"):
        monkeypatch.setitem(simulate._choice, k, kernel)
    declared = objectives.Objective.per_sample
    for algo, over in [("asymre", {"baseline": "vmu"}), ("reinforce", {"baseline": "absolute"}), ("sft", {}),
                       ("rep-asymre", {"baseline": "vmu"})]:
        monkeypatch.setattr(objectives.Objective, "per_sample", declared)
        obj = get_objective(algo, **over)
        assert obj.per_sample and obj.linear_in_logp
        params = {"offset": np.array([-0.3, 0.0, 0.2, 0.5])} if "offset" in obj.params else {}
        out = []
        for per_sample in (True, False):
            monkeypatch.setattr(objectives.Objective, "per_sample",
                                declared if per_sample else property(lambda self: False))
            s = Simulator(b, obj, params, SimConfig(mode="sampled", steps=150, log_every=7, batch=5, lr=2.0,
                                                    dtype=dtype), seed=2, runs=4)
            out.append(s.run(s.initial_state()))
        fast, ref = out
        assert torch.equal(fast.logits, ref.logits), algo
        torch.testing.assert_close(torch.stack(fast.log_values), torch.stack(ref.log_values), rtol=0, atol=0,
                                   equal_nan=True)


@pytest.mark.parametrize("log_every", [5, 20])
def test_the_sampled_step_skips_the_exp_clamp_and_range_check_only_where_its_drift_bound_allows(log_every,
                                                                                                monkeypatch):
    """Between centrings a sampled step with per-sample gradients moves a logit by at most 2Bη max|g|; the step
    leaves out exp's clamp at −700 only while the lowest logit stays above −700 by that bound (and the range
    check only while the highest stays below 600). Every unclamped exp here sees logits in (−700, 600), both
    kinds of exp occur as the logits sink past −700 (and, with log_every 20, the drift passes 600), and the run
    equals the same draws through the per-pull path, which clamps and checks every step, bit for bit."""
    from banditlab.registry import objectives
    from banditlab.science import kernels as simulate

    seen = {True: 0, False: 0}
    real = simulate.exp_clamped

    def watched(x, out, clamp=True):
        if not clamp:
            assert float(x.min()) > -700 and float(x.max()) < 600
        seen[clamp] += 1
        return real(x, out, clamp)

    monkeypatch.setattr(simulate, "exp_clamped", watched)
    b = bandits.paper(arms=9, low=-1.0, high=1.0)
    obj = get_objective("reinforce", baseline="absolute")
    out = []
    for per_sample in (True, False):
        if not per_sample:
            monkeypatch.setattr(objectives.Objective, "per_sample", property(lambda self: False))
        s = Simulator(b, obj, {"offset": np.array([-3.0, -1.0, 0.0, 2.0])},
                      SimConfig(mode="sampled", steps=300, log_every=log_every, batch=5, lr=5.0), seed=2, runs=4)
        out.append(s.run(s.initial_state()))
        if per_sample:
            assert seen[False] > 0 and seen[True] > 0 and s.step.step_bound * log_every > 100
    fast, ref = out
    assert float(torch.stack(ref.log_values)[..., METRICS.index("min_logit")].min()) < -700
    assert torch.equal(fast.logits, ref.logits)
    torch.testing.assert_close(torch.stack(fast.log_values), torch.stack(ref.log_values), rtol=0, atol=0,
                               equal_nan=True)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_guide_table_gives_the_alias_methods_cell_for_every_draw(dtype):
    """The one-lookup draw equals Walker's alias method on random uniforms and on the hardest ones: both ends of
    every guide interval and the floats on either side of every alias breakpoint i/M and (i + prob_i)/M."""
    from banditlab.science import kernels as simulate

    b = bandits.paper(arms=50, contexts=3)
    s = Simulator(b, get_objective("asymre"), {"offset": np.zeros(2)}, SimConfig(mode="sampled", dtype=dtype))
    t = s.draws.alias_tables(s.mu_of(s.initial_state().snapshot)[3])
    L, M, prob = t["L"], t["M"], t["prob"].numpy()
    np_dtype = prob.dtype.type
    assert (t["guide"].numpy() < 0).mean() < 0.01
    j = np.arange(L)
    brk = np.concatenate([np.arange(M) / M, (np.arange(M) + prob.reshape(3, M)).reshape(-1) / M])
    brk = brk.astype(np_dtype)
    u = np.concatenate([j / L, np.nextafter(((j + 1) / L).astype(np_dtype), np_dtype(0)), brk,
                        np.nextafter(brk, np_dtype(0)), np.nextafter(brk, np_dtype(1)),
                        np.random.default_rng(0).random(1 << 16)]).astype(np_dtype)
    u = torch.from_numpy(u[(u >= 0) & (u < 1)])
    u = u[: len(u) // 3 * 3].reshape(-1, 3, 1)  # [draws, C, B = 1]
    for c in range(3):  # every draw in every context
        ctx = torch.full((len(u), 3), c, dtype=torch.long)
        ctx[:, 1] = (c + 1) % 3
        base = ctx[..., None] * M
        ref = simulate._alias_torch(u.clone(), base, M, t["prob"], t["alias"])
        for kernel in (simulate._cells_torch, simulate._cells_numpy):
            assert torch.equal(kernel(u.clone(), ctx[..., None], t, simulate.Workspace()), ref), (kernel.__name__, c)


def test_the_workspace_reuses_its_arrays_and_grows_when_a_block_needs_more():
    from banditlab.science.kernels import Workspace

    ws = Workspace()
    for dtype in (np.float64, torch.float64):
        first = ws.get(str(dtype), (4, 6), dtype)
        same, bigger = ws.get(str(dtype), (3, 5), dtype), ws.get(str(dtype), (5, 6), dtype)
        if isinstance(first, np.ndarray):
            assert np.shares_memory(first, same) and not np.shares_memory(first, bigger)
        else:
            assert same.data_ptr() == first.data_ptr() and bigger.data_ptr() != first.data_ptr()
        assert same.shape == (3, 5) and bigger.shape == (5, 6)
    assert ws.get("x", (2,), np.int64).dtype == np.int64 and ws.get("x", (2,), np.float64).dtype == np.float64
    from banditlab.science.kernels import _same_device  # "cuda" names the current device: a buffer on cuda:0 is reused

    assert _same_device(torch.device("cuda", 0), torch.device("cuda"))
    assert not _same_device(torch.device("cuda", 1), torch.device("cuda", 0))
    assert not _same_device(torch.device("cpu"), torch.device("cuda"))


def test_float32_exact_mode_ends_within_1e5_of_float64_on_the_default_grid():
    b = bandits.paper(arms=100, noise="bernoulli")
    offsets = np.linspace(-0.5, 0.5, 21)
    final = {}
    for dtype in ("float64", "float32"):
        _, state = sim(b, offsets, steps=3000, dtype=dtype)
        final[dtype] = state.log_values[-1][:, J].double().numpy()
    assert np.abs(final["float64"] - final["float32"]).max() < 1e-5


def test_exact_sweep_runs_one_replica_per_baseline(tmp_path):
    import pandas as pd

    from banditlab.sweep import SweepConfig, format_table, run_sweep

    out = run_sweep(SweepConfig(mode="exact", seeds=8, steps=50, baseline="-0.2:0.2:3", arms=10,
                                out=str(tmp_path / "ex")), progress=False)
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 3 and (summary["seed"] == 0).all()
    assert "deterministic: one run per baseline, no CI" in format_table(out)


# ------------------------------------------------------------------------------------------ shared streams
STREAM_CASES = [("asymre", "vmu", "fixed"), ("asymre", "group", "fixed"), ("asymre", "vmu", "lag:3"),
                ("topr", "vmu", "fixed")]


@pytest.mark.parametrize("algo,baseline,behavior", STREAM_CASES)
def test_a_streams_runs_draw_what_that_row_of_an_unshared_grid_draws(algo, baseline, behavior):
    """With `streams`, run r draws the random numbers of row streams[r] of a grid of one run per stream: each
    run of a 6-run grid over 2 streams ends where the same run in a 2-run grid without streams ends (to
    rounding: the shared grid sums its gradients from each stream's cell counts, the other pull by pull), and
    runs with equal parameters in one stream end on the same logits."""
    b = bandits.paper(arms=9, contexts=3, low=-1.0, high=1.0)
    obj = get_objective(algo, baseline=baseline)
    offsets = np.array([-0.3, 0.1, 0.2, 0.1, -0.3, 0.4])
    cfg = SimConfig(mode="sampled", steps=150, log_every=7, batch=5, lr=2.0, behavior=behavior)
    s = Simulator(b, obj, {"offset": offsets}, cfg, seed=3, streams=np.array([0, 1, 0, 1, 0, 1]))
    shared = s.run(s.initial_state())
    for r in range(6):
        pair = np.zeros(2)
        pair[r % 2] = offsets[r]  # run r's parameters in its stream's row
        one = Simulator(b, obj, {"offset": pair}, cfg, seed=3)
        alone = one.run(one.initial_state())
        torch.testing.assert_close(shared.logits[r], alone.logits[r % 2], rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(torch.stack(shared.log_values)[:, r], torch.stack(alone.log_values)[:, r % 2],
                                   rtol=1e-9, atol=1e-9, equal_nan=True)
    assert torch.equal(shared.logits[1], shared.logits[3])  # one stream, one offset
    assert not torch.equal(shared.logits[0], shared.logits[2])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_counted_sums_equal_the_per_pull_sums(dtype, monkeypatch):
    """A grid whose runs share streams sums each step's gradient from the streams' cell counts; summed pull by
    pull instead, the same run ends on the same logits and metrics to rounding, for four per-sample objectives,
    three contexts and ±1 rewards, with the runs tiled over the streams and in any order."""
    from banditlab.science.steps import SampledLinearStep

    b = bandits.paper(arms=9, contexts=3, low=-1.0, high=1.0)
    tol = {"float64": 1e-10, "float32": 2e-4}[dtype]
    for algo, over in [("asymre", {"baseline": "vmu"}), ("reinforce", {"baseline": "absolute"}), ("sft", {}),
                       ("rep-asymre", {"baseline": "vmu"})]:
        obj = get_objective(algo, **over)
        params = {"offset": np.array([-0.3, 0.0, 0.2, 0.5, 0.1, -0.1])} if "offset" in obj.params else {}
        for streams in ([0, 1, 2, 0, 1, 2], [2, 0, 0, 1, 2, 1]):
            out = []
            for counting in (True, False):
                monkeypatch.setattr(SampledLinearStep, "_counting", lambda self, c=counting: c)
                s = Simulator(b, obj, params, SimConfig(mode="sampled", steps=150, log_every=7, batch=5, lr=2.0,
                                                        dtype=dtype), seed=2, runs=6, streams=np.array(streams))
                out.append(s.run(s.initial_state()))
            counted, ref = out
            torch.testing.assert_close(counted.logits, ref.logits, rtol=tol, atol=tol)
            torch.testing.assert_close(torch.stack(counted.log_values), torch.stack(ref.log_values), rtol=tol,
                                       atol=tol, equal_nan=True)


def test_streams_and_shard_rows_must_fit_the_grid():
    """Streams: one integer per run of the grid, using every id from 0 up (each id is a drawn row); none for
    RED-Drop, whose drops the objective draws per run; shard rows: one per run."""
    b = bandits.paper(arms=4)
    obj = get_objective("asymre")
    for bad in ([0, 1], [0.0, 1.0, 0.0], [0, -1, 0], [0, 2, 0]):
        with pytest.raises(ValueError, match="streams"):
            Simulator(b, obj, {"offset": np.zeros(3)}, SimConfig(), streams=np.array(bad))
    with pytest.raises(ValueError, match="RED-Drop"):
        Simulator(b, get_objective("red-drop"), {"offset": np.zeros(3)}, SimConfig(), streams=np.array([0, 0, 1]))
    with pytest.raises(ValueError, match="shard_rows"):
        Simulator(b, obj, {"offset": np.zeros(3)}, SimConfig(), total_runs=10)
    with pytest.raises(ValueError, match="shard_rows"):
        Simulator(b, obj, {"offset": np.zeros(3)}, SimConfig(), shard_rows=np.arange(4), total_runs=10)
    Simulator(b, obj, {"offset": np.zeros(3)}, SimConfig(), shard_rows=np.arange(2, 5), total_runs=10,
              streams=np.arange(10) % 2)
