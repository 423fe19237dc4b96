"""The benchmark's numpy peers compute banditlab's update, and its command line works at a tiny size on the CPU;
the sampled mode's alias-table draws have the behaviour's distribution."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from banditlab.science import bandits

from banditlab.science import kernels
from banditlab.registry.objectives import get_objective
from banditlab.science.simulator import SimConfig, Simulator

spec = importlib.util.spec_from_file_location(
    "bench_bandit", Path(__file__).resolve().parents[1] / "experiments" / "bench_bandit.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_exact_peer_and_one_sampled_peer_step_equal_banditlab():
    """Deterministic: exact-peer ends on exact mode's π; one SampledPeer step equals the registry gradient step
    on the same pulls, with the V^μ baseline and with the group baseline."""
    b = bandits.paper(arms=12)
    exact_gap, sampled_gap = bench.check_peers(b, np.linspace(-0.5, 0.5, 5), steps=300, batch=16)
    assert exact_gap < 1e-12 and sampled_gap < 1e-12


def test_sampled_peer_mean_update_is_the_exact_update():
    """E[Δl] of the sampled peer (4000 one-step runs) equals exact mode's one step, within 4 standard errors."""
    b = bandits.paper(arms=8)
    runs, offset = 4000, -0.2
    peer = bench.SampledPeer(b.logits[0], b.means[0], b.mu[0], np.full(runs, offset), 1.0, 32, seed=3)
    peer.t = 1  # no re-centring
    l0 = peer.l.copy()
    dl = peer.step(peer.draw()) - l0
    s = Simulator(b, get_objective("asymre", baseline="vmu"), {"offset": np.array([offset])},
                  SimConfig(mode="exact", steps=1, log_every=1))
    exact = (s.run(s.initial_state()).logits[0, 0].numpy() - b.logits[0])
    exact -= exact.mean()  # exact mode re-centres its logits at a logged step; both updates keep Σ l fixed
    mean, se = dl.mean(0), dl.std(0) / runs ** 0.5
    assert (np.abs(mean - exact) < 4 * se + 1e-12).all()


@pytest.mark.parametrize("kernel", ["torch", "numpy"])
def test_alias_draws_follow_the_behaviour(kernel, monkeypatch):
    """Pull frequencies of (context, arm, reward) from the shared alias table match p(x) μ(a|x) P(r|a, x)
    within 5 standard errors, for both the torch and the numpy kernel."""
    monkeypatch.setitem(kernels._choice, "cells", kernel)
    b = bandits.paper(arms=5, contexts=3, noise="bernoulli")
    runs = 3000
    s = Simulator(b, get_objective("asymre"), {"offset": np.zeros(runs)}, SimConfig(mode="sampled", batch=16))
    flat, arms, batch = s.draws.pulls(s.initial_state().snapshot, torch.Generator().manual_seed(0), runs)
    cell = (flat * 2 + batch.reward.long()).reshape(-1).numpy()  # (context, arm, reward) as one index
    freq = np.bincount(cell, minlength=3 * 5 * 2) / cell.size
    p_r = np.stack([1 - b.means, b.means], -1)
    p = (b.context_probs[:, None, None] * b.mu[..., None] * p_r).reshape(-1)
    assert np.allclose(batch.logp_old.exp().reshape(-1).numpy(), b.mu.reshape(-1)[flat.reshape(-1).numpy()])
    assert (np.abs(freq - p) < 5 * np.sqrt(p * (1 - p) / cell.size) + 1e-12).all()


def test_the_per_pull_variant_takes_the_other_path_to_the_same_numbers():
    asymre = get_objective("asymre", baseline="vmu")
    pulls = bench.per_pull(asymre)
    assert asymre.per_sample and not pulls.per_sample and pulls.linear_in_logp and pulls.params == asymre.params
    b = bandits.paper(arms=6)
    cfg = SimConfig(mode="sampled", steps=40, log_every=8, batch=4)
    ends = [Simulator(b, o, {"offset": np.array([-0.2, 0.1])}, cfg, seed=1) for o in (asymre, pulls)]
    a, p = (s.run(s.initial_state()) for s in ends)
    assert torch.equal(a.logits, p.logits)


def test_command_line_writes_json_at_a_tiny_size(tmp_path):
    out = tmp_path / "bench.json"
    table = bench.main(["--steps", "20", "--baselines", "3", "--runs", "4", "--arms", "6", "--batch", "8",
                        "--repeat", "1", "--loop-runs", "0", "--device", "cpu", "--json", str(out)])
    rec = json.loads(out.read_text())
    assert rec["config"]["runs"] == 4 and rec["config"]["device"] == "cpu"
    assert set(rec["results"]) == set(table) >= {"floor", "exact-peer", "exact", "sampled-peer", "sampled",
                                                  "sampled-pulls", "sampled-lag", "sampled-mix", "rng-torch", "rng-numpy",
                                                  "group-peer", "sampled-group"}
    assert rec["config"]["exact_peer_gap"] < 1e-12 and rec["config"]["sampled_peer_gap"] < 1e-12
    assert all(r["seconds"] >= 0 for r in rec["results"].values())
    for peer in ("exact-peer", "sampled-peer", "group-peer"):  # a peer is its own reference
        assert rec["results"][peer]["vs_peer"] == 1.0
    assert rec["results"]["sampled-group"]["vs_peer"] == pytest.approx(
        rec["results"]["group-peer"]["seconds"] / rec["results"]["sampled-group"]["seconds"])
