"""The parity table (banditlab/registry/references.py) against the peers' own code: for every claim, the peer's function
with the claim's configuration and ours with the claim's settings, on the same random batches.

Run by the lane .ci/parity, which installs the releases `PEERS` pins (verl, Trinity-RFT, TRL) without their
dependencies beside the CPU torch; there BANDITLAB_PARITY=1 makes a peer that does not import an error.
Elsewhere this module skips. `ray`, which cannot be installed here and which the peers' loss modules only import,
is stood in for by an import-time placeholder made in this module. Two pieces of peer code live inside methods
that need a running system (verl's DAPO group filter, TRL's engine-mismatch weights): their statements are taken
from the installed source with `ast` and executed on the batch. With BANDITLAB_PARITY_OUT set, the largest
differences per claim are written there as JSON (`.ci/parity --record` keeps them in banditlab/parity_measured.json).

Each batch: groups of 1 to 8 samples (a one-sample group, an all-equal group), ragged masks, float64, log-ratios
spread so that every clip, dual clip, window and mask both acts and does not (checked on our clip masks), engine
log-probs on both sides of the mismatch caps; seeds 0–5. The advantage: the peer's advantage function, where it
has one, is compared with ours (`adv`; to 2e-6 where it passes through float32); the loss and its gradient
are compared on the same (our float64) advantages, to 1e-10, or where a peer's denominator carries `+ 1e-8`
(`GUARDED`) the gradient to a relative 1e-7 and the loss to 1e-6 (`GUARD_ATOL`).
"""

from __future__ import annotations

import ast
import importlib.abc
import importlib.machinery
import inspect
import json
import math
import os
import platform
import sys
import textwrap
import time
import types
from collections import Counter, defaultdict
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from banditlab.registry.objectives import Batch, advantage, advantage_args, aggregate, get_objective
from banditlab.registry.references import AGGREGATIONS, PEERS, agg_keys, claims

pytestmark = pytest.mark.parity
F64 = torch.float64
SEEDS = range(6)
REQUIRED = os.environ.get("BANDITLAB_PARITY") == "1"
RESULTS: dict = {}


# ------------------------------------------------------------------------------------------ ray, at import time
class _Anything:
    """Stands for any ray object the peers touch at import time: a decorator returns what it decorates."""

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        return args[0] if len(args) == 1 and callable(args[0]) and not kwargs else _Anything()

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Anything()

    def __getitem__(self, key):
        return _Anything()


class _RayModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        if name[:1].isupper():  # a class: usable in annotations, isinstance and as a base class
            cls = type(name, (), {})
            setattr(self, name, cls)
            return cls
        return _Anything()


class _RayFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves `ray` and every `ray.*` module as a placeholder (only while ray itself is not installed)."""

    def find_spec(self, name, path=None, target=None):
        if name == "ray" or name.startswith("ray."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _RayModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        pass


def _peers():
    """The peers' modules, or skip (an error under BANDITLAB_PARITY=1)."""
    import importlib.util

    if importlib.util.find_spec("verl") is None or importlib.util.find_spec("trinity") is None:
        if REQUIRED:
            raise RuntimeError("verl and trinity-rft are not installed")
        pytest.skip("the peers are not installed (run .ci/parity)")
    if importlib.util.find_spec("ray") is None and not any(isinstance(f, _RayFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _RayFinder())
    try:
        from trinity.algorithm import utils as trinity_utils
        from trinity.algorithm.advantage_fn import asymre_advantage, grpo_advantage, rec_advantage, reinforce_advantage
        from trinity.algorithm.policy_loss_fn import (importance_sampling_policy_loss, opmd_policy_loss,
                                                      ppo_policy_loss, rec_policy_loss, sft_loss, topr_policy_loss)
        from trinity.common.experience import EID, Experience
        from trl.trainer import grpo_trainer
        from verl.trainer.ppo import core_algos, rollout_corr_helper
        from verl.workers.config import ActorConfig
    except ImportError as err:
        if REQUIRED:
            raise
        pytest.skip(f"a peer does not import: {err}")
    return SimpleNamespace(**locals())


@pytest.fixture(scope="module")
def peers():
    p = _peers()
    versions = {k: __import__("importlib.metadata").metadata.version(pkg) for k, (pkg, _, _) in PEERS.items()}
    assert versions == {k: v for k, (_, v, _) in PEERS.items()}, versions  # the pinned releases, nothing else
    start = time.time()
    yield p
    out = os.environ.get("BANDITLAB_PARITY_OUT")
    if out and RESULTS:
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
        run = (f"{time.strftime('%Y-%m-%d')}, " + ", ".join(f"{pkg} {v}" for pkg, v, _ in PEERS.values())
               + f", torch {torch.__version__}, {len(SEEDS)} seeds, {time.time() - start:.0f} s of tests on {cpu}")
        Path(out).write_text(json.dumps({"run": run, "results": dict(sorted(RESULTS.items()))}, indent=1) + "\n")


# ------------------------------------------------------------------------------------------ batches
def make_batch(seed, lone=True, spread="token", rewards="binary", equal=False):
    """Groups of 1–8 samples (the one-sample group only where `lone`; six groups of four where `equal`, as TRL
    makes them), one all-equal group, ragged masks."""
    g = torch.Generator().manual_seed(seed)
    lone = lone and not equal
    sizes = [4] * 6 if equal else [2, 3, 4, 5, 8] + ([1] if lone else [])
    n, T = sum(sizes), 9
    group = torch.cat([torch.full((k,), i) for i, k in enumerate(sizes)])
    lengths = torch.randint(1, T + 1, (n,), generator=g)
    lengths[0] = T
    mask = (torch.arange(T)[None, :] < lengths[:, None]).to(F64)
    old = -torch.rand(n, T, generator=g, dtype=F64) * 3 - 0.05
    if spread == "token":  # per-token log-ratios at three scales: inside every window, across it, far outside
        scale = torch.tensor([0.05, 0.4, 1.2], dtype=F64)[torch.randint(0, 3, (n, T), generator=g)]
        d = scale * torch.randn(n, T, generator=g, dtype=F64)
    else:  # GSPO: length-normalised sequence ratios around its 3e-4 / 4e-4 window
        shift = torch.tensor([-1e-3, -3.5e-4, -1e-4, 1e-4, 3.5e-4, 1e-3, 0.05], dtype=F64)
        d = shift[torch.randint(0, 7, (n,), generator=g)][:, None] + 1e-5 * torch.randn(n, T, generator=g, dtype=F64)
    logp = old + d
    if rewards == "binary":
        r = torch.randint(0, 2, (n,), generator=g).to(F64) * 2 - 1
    else:
        r = torch.rand(n, generator=g, dtype=F64)
    r[group == 0] = 1.0  # the all-equal group
    for k in range(1, len(sizes) - lone):
        rows = (group == k).nonzero().squeeze(-1)
        r[rows[0]], r[rows[1]] = 1.0, -1.0 if rewards == "binary" else 0.0  # both signs in every other group
    roll = old + 0.5 * torch.randn(n, T, generator=g, dtype=F64)  # the engine's log-probs: weights across 2 and 3
    return SimpleNamespace(logp=logp, old=old, r=r, group=group, mask=mask, roll=roll, n=n, T=T)


def ours(name, settings, b, agg=None):
    """Our objective with the claim's settings: (loss function of log π, its advantage, its clip mask)."""
    obj = get_objective(name, **settings, **({"agg": agg} if agg else {}))
    roll = b.roll if obj.params.get("mismatch", "none") != "none" else None
    batch = lambda lp: Batch(lp, b.old, b.r, group=b.group, mask=b.mask, logp_rollout=roll,
                             generator=torch.Generator().manual_seed(0))  # RED-Drop: the same drops every call
    a = advantage(batch(b.logp), **advantage_args(obj.params)) if obj.fn.uses_advantage else b.r
    _, clipped = obj.evaluate(batch(b.logp))
    return (lambda lp: obj(batch(lp))), a, clipped


def loss_and_grad(f, logp):
    leaf = logp.clone().requires_grad_(True)
    loss = f(leaf)
    (grad,) = torch.autograd.grad(loss, leaf)
    return loss.detach(), grad


# ------------------------------------------------------------------------------------------ statements from source
def _method_statements(cls, method, first, last):
    """The statements of `cls.method` from the innermost one whose source contains `first` through the next one
    containing `last`, compiled as one block: the peer's own code, run here on the batch's tensors."""
    src = textwrap.dedent(inspect.getsource(getattr(cls, method)))
    seg = lambda node: ast.get_source_segment(src, node) or ""

    def find(body):
        for i, node in enumerate(body):
            if first not in seg(node):
                continue
            for inner in (getattr(node, f, None) for f in ("body", "orelse", "finalbody")):
                if inner and any(first in seg(s) for s in inner):
                    return find(inner)
            out = []
            for s in body[i:]:
                out.append(s)
                if last in seg(s):
                    return out
        return None

    stmts = find(ast.parse(src).body[0].body)
    assert stmts, (method, first, last)
    return compile(ast.Module(body=stmts, type_ignores=[]), f"<{cls.__name__}.{method}>", "exec")


def trl_mismatch_weights(p, mode, old, roll, mask, clip_max=3.0):
    """TRL's vLLM importance-sampling weights, by the statements of `_generate_and_score_completions`."""
    code = _method_statements(p.grpo_trainer.GRPOTrainer, "_generate_and_score_completions",
                              "per_token_logps_diff = (old_per_token_logps", "Unknown vLLM importance sampling")
    env = dict(torch=torch, math=math, old_per_token_logps=old, sampling_per_token_logps=roll, completion_mask=mask,
               tool_mask=None, mask=mask, self=SimpleNamespace(vllm_importance_sampling_mode=mode,
                                                             vllm_importance_sampling_clip_max=clip_max,
                                                             vllm_importance_sampling_clip_min=None))
    exec(code, env)
    return env["vllm_importance_sampling_ratio"]


def trl_advantage(p, b):
    """TRL's group advantage, by the statements of `_generate_and_score_completions` (groups of equal size)."""
    from trl.trainer.utils import nanstd

    code = _method_statements(p.grpo_trainer.GRPOTrainer, "_generate_and_score_completions",
                              'self.multi_objective_aggregation == "sum_then_normalize"',
                              "Invalid value for scale_rewards")
    env = dict(torch=torch, nanstd=nanstd, rewards_per_func=b.r[:, None], device="cpu", mode="train",
               num_generations=int((b.group == 0).sum()), unscorable_mask=torch.zeros(b.n, dtype=torch.bool),
               self=SimpleNamespace(multi_objective_aggregation="sum_then_normalize", scale_rewards="group",
                                    reward_weights=torch.ones(1, dtype=F64)))
    exec(code, env)
    return env["advantages"]


def verl_filter_groups(b):
    """The groups verl's DAPO filter evicts, by the statements of `ReplayBuffer._dapo_filtered_keys` (its module
    needs the transfer queue's server stack, so it is read from the installed source, not imported)."""
    import verl

    path = Path(verl.__file__).parent / "trainer" / "ppo" / "v1" / "replay_buffer.py"
    src = path.read_text()
    cls = next(n for n in ast.parse(src).body if isinstance(n, ast.ClassDef) and n.name == "ReplayBuffer")
    fn = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "_dapo_filtered_keys")
    ns = dict(np=np, Counter=Counter, defaultdict=defaultdict, FILTER_GROUPS_REWARD_METRIC="reward",
              tq=SimpleNamespace(kv_batch_get=lambda keys, partition_id, select_fields: {
                  "rm_scores": [b.r[int(k.split("_")[1])].reshape(1) for k in keys]}))
    exec(compile(ast.Module(body=[fn], type_ignores=[]), str(path), "exec"), ns)
    uids = {f"g{int(k)}" for k in b.group}
    me = SimpleNamespace(filter_groups_metric="reward", finished_keys={"train": uids},
                         _dapo_classification_cache={"train": {}},
                         partitions={"train": [f"g{int(b.group[i])}_{i}" for i in range(b.n)]})
    evicted, _ = ns["_dapo_filtered_keys"](me, "train")
    return torch.tensor([f"g{int(k)}" not in evicted for k in b.group])


# ------------------------------------------------------------------------------------------ the peers' advantages
def verl_grpo_advantage(p, b, norm=True):
    scores = torch.zeros(b.n, b.T, dtype=F64)
    scores[torch.arange(b.n), b.mask.sum(-1).long() - 1] = b.r
    adv, _ = p.core_algos.compute_grpo_outcome_advantage(scores, b.mask, np.array([f"g{int(k)}" for k in b.group]),
                                                         epsilon=1e-6, norm_adv_by_std_in_grpo=norm)
    return adv[:, 0]


def trinity_advantage(p, b, fn):
    exps = [p.Experience(eid=p.EID(task=int(b.group[i]), run=i), tokens=torch.zeros(b.T + 1, dtype=torch.int32),
                         reward=float(b.r[i]), action_mask=torch.ones(b.T, dtype=F64)) for i in range(b.n)]
    fn(exps)
    return torch.stack([e.advantages[0] for e in exps]).to(F64)


ADVANTAGES = {  # claim key → the peer's advantage of the batch (None: the peer has none that runs alone)
    "verl-grpo": lambda p, b: verl_grpo_advantage(p, b),
    "verl-mean": lambda p, b: verl_grpo_advantage(p, b, norm=False),
    "trinity-grpo": lambda p, b: trinity_advantage(p, b, p.grpo_advantage.GRPOGroupedAdvantage(epsilon=1e-6)),
    "trinity-rec": lambda p, b: trinity_advantage(p, b, p.rec_advantage.RECGroupedAdvantage()),
    "trinity-rec-drop": lambda p, b: trinity_advantage(p, b, p.rec_advantage.RECGroupedAdvantage(drop="balance")),
    "trinity-reinforce": lambda p, b: trinity_advantage(p, b, p.reinforce_advantage.REINFORCEGroupAdvantage()),
    "trinity-asymre": lambda p, b: trinity_advantage(p, b, p.asymre_advantage.ASYMREGroupAdvantage(baseline_shift=-0.1)),
    "trl": trl_advantage,
}


# ------------------------------------------------------------------------------------------ the peers' losses
def verl_config(p, **kw):
    return p.ActorConfig(strategy="fsdp", rollout_n=4, ppo_micro_batch_size_per_gpu=1, **kw)


def verl_loss(fn, agg="token-mean", rollout=None, keep=None, **cfg):
    def run(p, b, lp, a):
        f = getattr(p.core_algos, fn)
        w = None
        if rollout:
            w, _ = p.rollout_corr_helper.compute_rollout_correction_weights(
                b.old - b.roll, b.mask, rollout_is=rollout, rollout_is_threshold=2.0)
        rows = verl_filter_groups(b) if keep else torch.ones(b.n, dtype=torch.bool)
        adv = (a[:, None] * b.mask)[rows]
        loss, _ = f(old_log_prob=b.old[rows], log_prob=lp[rows], advantages=adv, response_mask=b.mask[rows],
                    loss_agg_mode=agg, config=verl_config(p, **cfg),
                    rollout_is_weights=None if w is None else w[rows])
        return loss
    return run


def trinity_loss(module, cls, rows=None, **args):
    def run(p, b, lp, a):
        fn = getattr(getattr(p, module), cls)(backend="verl", **args)
        keep = rows(b) if rows else torch.ones(b.n, dtype=torch.bool)
        loss, _ = fn(logprob=lp[keep], old_logprob=b.old[keep], action_mask=b.mask[keep],
                     advantages=(a[:, None] * b.mask)[keep])
        return loss
    return run


def trl_loss(loss_type, level="token", eps=(0.2, 0.2), opsm=None, vllm=None):
    """TRL's own `GRPOTrainer._compute_loss` on given tensors: the trainer object carries only the attributes that
    method reads (no model: the per-token log-probs are handed in, so the gradient is taken with respect to them)."""
    def run(p, b, lp, a):
        t = object.__new__(p.grpo_trainer.GRPOTrainer)
        same = lambda x, **_: x
        t.__dict__.update(
            loss_type=loss_type, importance_sampling_level=level, epsilon_low=eps[0], epsilon_high=eps[1], beta=0.0,
            top_entropy_quantile=1.0, aux_loss_enabled=False, off_policy_mask_threshold=opsm,
            use_vllm=vllm is not None, vllm_importance_sampling_correction=vllm is not None,
            _entropy_bonus_enabled=False, current_gradient_accumulation_steps=1, model=SimpleNamespace(training=True),
            max_completion_length=b.T, _metrics=defaultdict(lambda: defaultdict(list)),
            accelerator=SimpleNamespace(gather=same, gather_for_metrics=same, reduce=same, num_processes=1),
            args=SimpleNamespace(delta=None, sapo_temperature_pos=1.0, sapo_temperature_neg=1.05,
                                 steps_per_generation=1, use_bias_correction_kl=False))
        t._get_per_token_logps_and_entropies = lambda *args, **kw: (lp, torch.zeros_like(lp), None)
        inputs = dict(prompt_ids=torch.zeros(b.n, 1, dtype=torch.long), prompt_mask=torch.ones(b.n, 1),
                      completion_ids=torch.zeros(b.n, b.T, dtype=torch.long), completion_mask=b.mask, advantages=a,
                      old_per_token_logps=b.old, num_items_in_batch=b.mask.sum())
        if vllm:
            inputs["importance_sampling_ratio"] = trl_mismatch_weights(p, vllm, b.old, b.roll, b.mask)
        return t._compute_loss(None, inputs)
    return run


REC = dict(module="rec_policy_loss", cls="RECPolicyLossFn")
TRL = {"equal": True}
PPO_ARGS = dict(clip_range=0.2, clip_ratio_c=3.0, loss_agg_mode="token-mean")
PEER = {  # claim key → (the peer's loss on (p, batch, log π, advantage), its advantage, batch options)
    "reinforce/trinity": (trinity_loss(**REC, clip_mode="none"), "trinity-rec", {"lone": False}),
    "asymre/trinity": (trinity_loss(**REC, clip_mode="none", regularizer="forward-kl", regularizer_coef=0.1),
                       "trinity-rec", {"lone": False}, lambda a: a - 0.1),  # its advantage has no offset: −β log π
    "asymre/trinity-asymre-tau0": (trinity_loss("opmd_policy_loss", "OPMDPolicyLossFn", tau=0.0), "trinity-asymre",
                                   {"lone": False}),
    "topr/trinity": (trinity_loss("topr_policy_loss", "TOPRPolicyLossFn"), "trinity-reinforce", {}),
    "is/trinity": (trinity_loss("importance_sampling_policy_loss", "ImportanceSamplingLossFn"), "trinity-rec",
                   {"lone": False}),
    "ppo/trinity": (trinity_loss("ppo_policy_loss", "PPOPolicyLossFn", **PPO_ARGS), "trinity-rec", {"lone": False}),
    "ppo/verl": (verl_loss("compute_policy_loss_vanilla"), "verl-mean", {}),
    "grpo/trinity": (trinity_loss("ppo_policy_loss", "PPOPolicyLossFn", **PPO_ARGS), "trinity-grpo", {}),
    "grpo/verl": (verl_loss("compute_policy_loss_vanilla"), "verl-grpo", {}),
    "grpo/trl-dapo": (trl_loss("dapo"), "trl", TRL),
    "grpo/trl-bnpo": (trl_loss("bnpo"), "trl", TRL),
    "grpo/trl-grpo": (trl_loss("grpo"), "trl", TRL),
    "grpo/trl-dr_grpo": (trl_loss("dr_grpo"), "trl", TRL),
    "rec/trinity": (trinity_loss(**REC, clip_mode="one-side"), "trinity-rec", {"lone": False}),
    "rec-ring/trinity": (trinity_loss(**REC, clip_mode="ring", epsilon_low_prime=0.6, epsilon_high_prime=2.0),
                         "trinity-rec", {"lone": False}),
    "rec-ring/trinity-constructor": (trinity_loss(**REC, clip_mode="ring"), "trinity-rec", {"lone": False}),
    "red-drop/trinity": (trinity_loss(**REC, clip_mode="none"), "trinity-rec-drop", {"lone": False}),
    "red-weight/trinity": (trinity_loss(**REC, clip_mode="none", weight="advantage"), "trinity-rec", {"lone": False}),
    "opmd/trinity": (trinity_loss(**REC, clip_mode="none", regularizer="k2", regularizer_coef=0.05), "trinity-rec",
                     {"lone": False}),
    "rep-asymre/trinity": (trinity_loss(**REC, clip_mode="none", regularizer="forward-kl", regularizer_coef=0.1),
                           "trinity-rec", {"lone": False}),
    "sft/trinity": (trinity_loss("sft_loss", "SFTLossFn", rows=lambda b: b.r > 0), None, {}),
    "dapo/verl": (verl_loss("compute_policy_loss_vanilla", keep=True, clip_ratio_high=0.28), "verl-grpo", {}),
    "dapo/trl": (trl_loss("dapo", eps=(0.2, 0.28)), "trl", TRL),
    "gspo/verl": (verl_loss("compute_policy_loss_gspo", agg="seq-mean-token-mean", clip_ratio_low=3e-4,
                            clip_ratio_high=4e-4), "verl-grpo", {"spread": "sequence"}),
    "gspo/trl": (trl_loss("grpo", level="sequence", eps=(3e-4, 4e-4)), "trl", {**TRL, "spread": "sequence"}),
    "cispo/verl": (verl_loss("compute_policy_loss_cispo"), "verl-grpo", {}),
    "cispo/trl": (trl_loss("cispo", eps=(0.2, 5.0)), "trl", TRL),
    "sapo/verl": (verl_loss("compute_policy_loss_sapo"), "verl-grpo", {}),
    "sapo/trl": (trl_loss("sapo"), "trl", TRL),
    "gmpo/verl": (verl_loss("compute_policy_loss_geo_mean", clip_ratio_low=0.4, clip_ratio_high=0.4), "verl-grpo", {}),
    "grpo-opsm/trinity": (trinity_loss("ppo_policy_loss", "PPOPolicyLossFn", **PPO_ARGS, enable_sequence_masking=True,
                                       delta_sequence_masking=0.1), "trinity-grpo", {}),
    "grpo-opsm/trl": (trl_loss("dapo", opsm=0.5), "trl", TRL),
    "grpo-tis/verl": (verl_loss("compute_policy_loss_vanilla", rollout="token"), "verl-grpo", {}),
    "grpo-tis/verl-sequence": (verl_loss("compute_policy_loss_vanilla", rollout="sequence"), "verl-grpo", {}),
    "grpo-tis/trl-token": (trl_loss("dapo", vllm="token_truncate"), "trl", TRL),
    "grpo-tis/trl-sequence": (trl_loss("dapo", vllm="sequence_truncate"), "trl", TRL),
    "grpo-mis/trl-token": (trl_loss("dapo", vllm="token_mask"), "trl", TRL),
    "grpo-mis/trl-sequence": (trl_loss("dapo", vllm="sequence_mask"), "trl", TRL),
}
# peers whose denominators carry `+ 1e-8`: Trinity's masked mean; verl's seq-mean-token-mean and GMPO's token mean
GUARDED = {"trinity", "gspo/verl", "sapo/verl", "gmpo/verl"}
# A `+ 1e-8` in the denominator of a mean over |y| ≥ 1 tokens moves each sequence's term by at most 1e-8 of it:
# the gradient by a relative 1e-7 at most (a few such factors in GMPO), the loss by 1e-8 of its per-token
# losses (at most ~100 here), whatever the cancellation between sequences
GUARD_ATOL = 1e-6
SAME_VALUE_EXCEPT = {"is/trinity"}  # −ρA there, −sg(ρ)A log π here: same gradient, other value
NEVER_CLIPS = {"is/trinity"}  # windows [0, ∞]
# peers whose advantages pass through float32: Trinity-RFT's (float32 rewards), verl's one-sample group (divided
# by float32 1 + 1e-6), TRL's (its Bessel factor n/(n − 1) divides integers); TRL's SAPO temperatures
FLOAT32 = {"verl-grpo", "verl-mean", "trl", "trinity-grpo", "trinity-rec", "trinity-rec-drop", "trinity-reinforce",
           "trinity-asymre", "sapo/trl"}


def triggers(settings, b, a):
    """Whether the dual clip and the engine-mismatch cap each act on some token and not on another."""
    m = b.mask.bool()
    out = []
    if settings.get("dual_clip"):
        dual = (a[:, None] < 0) & ((b.logp - b.old).exp() > settings["dual_clip"])
        out += [dual[m].any(), (~dual)[m].any()]
    if settings.get("mismatch", "none") != "none":
        log_rho = b.old - b.roll
        if settings.get("mismatch_level") == "sequence":
            log_rho = (log_rho * b.mask).sum(-1, keepdim=True).expand_as(log_rho)
        over = log_rho.exp() > settings.get("mismatch_cap", 2.0)
        out += [over[m].any(), (~over)[m].any()]
    return torch.tensor(out, dtype=torch.bool)


def test_every_claim_has_a_check():
    assert set(PEER) == set(claims())


@pytest.mark.parametrize("key", list(claims()))
def test_claim_equals_the_peer(peers, key):
    row, claim = claims()[key]
    loss_fn, adv_name, opts, *shift = PEER[key]
    theirs_of = shift[0] if shift else (lambda a: a)  # our advantage as the peer's configuration defines its own
    guarded = claim.peer in GUARDED or key in GUARDED
    worst = {"loss": 0.0, "grad": 0.0, "adv": 0.0}
    acted = torch.zeros(2)
    triggered = None
    for seed in SEEDS:
        rewards = "binary" if key.startswith("red-drop") or seed % 2 == 0 else "continuous"
        b = make_batch(seed, rewards=rewards, **opts)
        f, a, clipped = ours(row.name, claim.settings, b)
        a = theirs_of(a)
        if adv_name is not None:  # the peer's advantage against ours
            theirs = ADVANTAGES[adv_name](peers, b)
            if adv_name == "trinity-rec-drop":  # random drops: compare each group's multiset
                theirs, a_cmp = (torch.cat([x[b.group == k].sort().values for k in range(int(b.group.max()) + 1)])
                                 for x in (theirs, a))
            else:
                a_cmp = a
            dadv = (theirs - a_cmp).abs().max().item()
            assert dadv <= (2e-6 if adv_name in FLOAT32 else 1e-12), (key, seed, dadv)
            worst["adv"] = max(worst["adv"], dadv)
        mine, g_mine = loss_and_grad(f, b.logp)
        peer, g_peer = loss_and_grad(lambda lp: loss_fn(peers, b, lp, a), b.logp)
        g_mine, g_peer = g_mine * b.mask, g_peer * b.mask
        rtol, atol = (1e-6, 1e-6) if key in FLOAT32 else (1e-7, GUARD_ATOL) if guarded else (0.0, 1e-10)
        if key not in SAME_VALUE_EXCEPT:
            assert torch.allclose(mine, peer.to(F64), rtol=rtol, atol=atol), (key, seed, (mine - peer).abs())
            worst["loss"] = max(worst["loss"], (mine - peer).abs().item())
        assert torch.allclose(g_mine, g_peer, rtol=rtol, atol=1e-10), (key, seed, (g_mine - g_peer).abs().max())
        assert g_mine.abs().max() > 0
        worst["grad"] = max(worst["grad"], (g_mine - g_peer).abs().max().item())
        t = triggers({**get_objective(row.name).params, **claim.settings}, b, a)
        triggered = t if triggered is None else triggered | t
        if clipped is not None:  # every clip both acts and does not, somewhere in the seeds
            m = b.mask.bool()
            acted += torch.stack([(clipped[m] > 0).any(), (clipped[m] == 0).any()]).double()
    assert clipped is None or key in NEVER_CLIPS or acted.min() > 0, key
    assert triggered.all(), (key, triggered)
    RESULTS[key] = {"loss": None if key in SAME_VALUE_EXCEPT else worst["loss"], "grad": worst["grad"],
                    **({"adv": worst["adv"]} if adv_name else {})}


@pytest.mark.parametrize("key", agg_keys())
def test_aggregation_equals_the_peer(peers, key):
    """Our `aggregate` against verl's `agg_loss` and Trinity-RFT's `aggregate_loss` under the peer's name."""
    agg, peer = key[len("agg:"):].split("/")
    name = next(names[peer] for a, _, names in AGGREGATIONS if a == agg).split(" ")[0]
    theirs = {"verl": lambda x, m: peers.core_algos.agg_loss(x, m, name),
              "trinity": lambda x, m: peers.trinity_utils.aggregate_loss(x, m, loss_agg_mode=name)}[peer]
    worst = {"loss": 0.0, "grad": 0.0}
    for seed in SEEDS:
        b = make_batch(seed)
        w = torch.randn(b.n, b.T, generator=torch.Generator().manual_seed(seed), dtype=F64)
        mine, g_mine = loss_and_grad(lambda lp: aggregate(w * lp, Batch(lp, b.old, b.r, mask=b.mask), agg), b.logp)
        peer_loss, g_peer = loss_and_grad(lambda lp: theirs(w * lp, b.mask), b.logp)
        guarded = peer == "trinity" or name == "seq-mean-token-mean"
        rtol, atol = (1e-7, GUARD_ATOL) if guarded else (0.0, 1e-10)
        assert torch.allclose(mine, peer_loss, rtol=rtol, atol=atol), (key, seed, (mine - peer_loss).abs())
        assert torch.allclose(g_mine * b.mask, g_peer * b.mask, rtol=rtol, atol=1e-10), key
        worst = {"loss": max(worst["loss"], (mine - peer_loss).abs().item()),
                 "grad": max(worst["grad"], ((g_mine - g_peer) * b.mask).abs().max().item())}
    RESULTS[key] = worst


def test_verl_dapo_filter_keeps_one_sample_groups_that_ours_drops_unless_told(peers):
    """verl's filter evicts the all-equal groups of two or more and keeps a lone sample; our dynamic sampling drops
    the lone sample too, and keeps it with dynamic_sampling_singletons=keep."""
    b = make_batch(0)
    kept = verl_filter_groups(b)
    lone = b.group == b.group.max()
    assert kept[lone].all() and not kept[b.group == 0].any()
    rows = lambda **kw: get_objective("dapo", **kw).fn.rows(Batch(b.logp, b.old, b.r, group=b.group, mask=b.mask),
                                                             get_objective("dapo", **kw).params)
    assert torch.equal(rows(dynamic_sampling_singletons="keep").bool(), kept)
    assert torch.equal(rows().bool(), kept & ~lone)


def test_trinity_rec_advantage_raises_on_a_one_sample_group(peers):
    """Why the Trinity-RFT `rec` claims are limited to groups of two or more."""
    b = make_batch(0)
    with pytest.raises(UnboundLocalError):
        ADVANTAGES["trinity-rec"](peers, b)
