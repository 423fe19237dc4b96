"""Parity of the objective registry with the papers and with the peers' code: Trinity-RFT, verl and TRL.

One row per registry entry: the paper equation it implements and its claims, each a peer function with its
configuration and the `--algo-arg` settings that make ours compute exactly that peer's loss and gradient, with
the limits of the equality (`scope`). The peers' releases are pinned in `PEERS`. tests/test_parity.py checks
every row against the paper's formula written as plain loops; tests/test_parity_peers.py, run by the lane
.ci/parity with the pinned releases installed, checks every claim against the peer's own function and writes
the largest differences it measured to `MEASURED` (banditlab/parity_measured.json), which the table prints.
`banditlab algos --references` prints the table and docs/objectives.md embeds the same text (a test keeps the
two equal; `python -m banditlab.registry.references --write-docs` rewrites the embedded copy).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

# key: (package on the registry, pinned version, the name the table uses)
PEERS = {"trinity": ("trinity-rft", "0.6.0", "Trinity-RFT"), "verl": ("verl", "0.9.1", "verl"),
         "trl": ("trl", "1.16.0", "TRL")}
MEASURED = Path(__file__).with_name("parity_measured.json")
DOCS = Path(__file__).resolve().parents[2] / "docs" / "objectives.md"


@dataclass(frozen=True)
class Claim:
    """Ours with `settings` computes `peer`'s loss as `config` describes it (its function, configuration and
    advantage), within `scope`. `tag` tells apart two claims on the same peer."""

    peer: str
    config: str
    settings: dict = field(default_factory=dict)
    scope: str = ""
    tag: str = ""

    def key(self, name: str) -> str:
        return f"{name}/{self.peer}" + (f"-{self.tag}" if self.tag else "")


@dataclass(frozen=True)
class Row:
    name: str
    paper: str
    claims: tuple = ()
    note: str = ""  # a peer loss of the same name that is not ours, and why


GRPO_ADV = "`grpo` advantage"
REC_ADV = "`rec` advantage"
VERL_GRPO = {"std": "unbiased", "singleton": "reference", "dual_clip": 3.0}  # verl's GRPO: Bessel, lone mean 0, dual clip
TRINITY_GRPO = VERL_GRPO  # Trinity-RFT's `ppo` loss and `grpo` advantage make the same choices
VERL_ADV = {"std": "unbiased", "singleton": "reference"}
TRL_ADV = {"std": "unbiased", "std_eps": 1e-4}
NO_LONE = "no one-sample group"  # Trinity-RFT's `rec` advantage raises UnboundLocalError on one (see `markdown`)

ROWS = [
    Row("reinforce", "REINFORCE with the group mean (REC §3)",
        (Claim("trinity", f"`rec` loss, clip_mode=none; {REC_ADV}", {}, NO_LONE),)),
    Row("asymre", "AsymRE eq. 2, b = r̄ + δV (arXiv 2506.20520)",
        (Claim("trinity", f"`rec` loss, clip_mode=none regularizer=forward-kl regularizer_coef=0.1; {REC_ADV}",
               {"offset": -0.1}, NO_LONE + "; regularizer_coef β is offset −β"),
         Claim("trinity", "algorithm `asymre` with `opmd` loss tau=0: `asymre` advantage baseline_shift=−0.1",
               {"offset": -0.1}, NO_LONE, tag="asymre-tau0")),
        "Trinity-RFT's algorithm `asymre` as configured by default is another loss: its `opmd` loss divides by "
        "1 + tau (tau = 1 halves it) and its advantage gives a one-sample group A = r"),
    Row("topr", "TOPR eq. 8, trajectory ratio (arXiv 2503.14286)",
        (Claim("trinity", "`topr` loss; `reinforce` advantage (A = r)", {"ratio_level": "token"}),)),
    Row("is", "importance sampling, TOPR §3",
        (Claim("trinity", f"`importance_sampling` loss; {REC_ADV}", {"ratio_level": "token"},
               NO_LONE + "; the gradient only: its loss value is −ρA, ours −sg(ρ)A log π"),)),
    Row("tis", "truncated IS clip(ρ, 0, 1), TOPR §3", (),
        "trinity-rft 0.6.0 has no truncated-IS loss"),
    Row("ppo", "PPO-clip eq. 7 (Schulman et al. 2017)",
        (Claim("trinity", f"`ppo` loss (clip_ratio_c=3: it always dual-clips); {REC_ADV}", {"dual_clip": 3.0},
               NO_LONE),
         Claim("verl", f"`compute_policy_loss_vanilla`; {GRPO_ADV}, norm_adv_by_std_in_grpo=False",
               {"dual_clip": 3.0, "singleton": "reference"}))),
    Row("grpo", "GRPO eq. 3 (arXiv 2402.03300)",
        (Claim("trinity", f"`ppo` loss; {GRPO_ADV}", TRINITY_GRPO),
         Claim("verl", f"`compute_policy_loss_vanilla`; {GRPO_ADV}", VERL_GRPO),
         Claim("trl", "`_compute_loss`, loss_type=dapo (its default)", TRL_ADV, tag="dapo"),
         Claim("trl", "`_compute_loss`, loss_type=bnpo", TRL_ADV, tag="bnpo"),
         Claim("trl", "`_compute_loss`, loss_type=grpo", {**TRL_ADV, "agg": "seq-mean-token-mean"}, tag="grpo"),
         Claim("trl", "`_compute_loss`, loss_type=dr_grpo, max_completion_length = T",
               {**TRL_ADV, "agg": "seq-mean-token-sum-norm"}, tag="dr_grpo"))),
    Row("rec", "REC one-side mask, Table 1 (arXiv 2509.24203)",
        (Claim("trinity", f"`rec` loss, clip_mode=one-side; {REC_ADV}", {}, NO_LONE),)),
    Row("rec-ring", "REC ring mask, Table 1",
        (Claim("trinity", f"`rec` loss, clip_mode=ring epsilon_low_prime=0.6 epsilon_high_prime=2; {REC_ADV}", {},
               NO_LONE),
         Claim("trinity", f"`rec` loss, clip_mode=ring alone (the constructor's ε′ = 0.4, 0.4); {REC_ADV}",
               {"eps_low_ring": 0.4, "eps_high_ring": 0.4}, NO_LONE, tag="constructor")),
        "Trinity-RFT's default_args (ε′ = 0.6, 2.0) apply only to a config that gives no policy-loss argument, "
        "whose clip_mode is then none"),
    Row("red-drop", "RED-Drop, REC §5",
        (Claim("trinity", f"`rec` loss, clip_mode=none; {REC_ADV}, drop=balance", {"ties": "positive"},
               NO_LONE + "; which negatives are dropped is random in both: the advantages are compared as "
               "each group's multiset, rewards ±1"),)),
    Row("red-weight", "RED-Weight A·exp(A/τ), REC §5",
        (Claim("trinity", f"`rec` loss, clip_mode=none weight=advantage; {REC_ADV}", {}, NO_LONE),)),
    Row("opmd", "OPMD (c/2)(log π − log μ)², REC §4",
        (Claim("trinity", f"`rec` loss, clip_mode=none regularizer=k2 regularizer_coef=0.05; {REC_ADV}",
               {"coef": 0.1}, NO_LONE + "; regularizer_coef c is our coef 2c"),),
        "Trinity-RFT's algorithm `opmd` is another loss"),
    Row("rep-asymre", "REP with forward KL −β log π, REC §4",
        (Claim("trinity", f"`rec` loss, clip_mode=none regularizer=forward-kl regularizer_coef=0.1; {REC_ADV}",
               {"coef": 0.1}, NO_LONE),)),
    Row("sft", "rejection-sampling SFT on r > 0",
        (Claim("trinity", "`sft` loss on the samples with r > 0", {"norm": "positive"}),)),
    Row("dapo", "DAPO eqs. 10–11, clip-higher + dynamic sampling (arXiv 2503.14476)",
        (Claim("verl", f"`compute_policy_loss_vanilla`, clip_ratio_high=0.28; {GRPO_ADV}; filter_groups "
               "(`ReplayBuffer._dapo_filtered_keys`, metric reward)",
               {**VERL_GRPO, "dynamic_sampling_singletons": "keep"},
               "verl's filter keeps one-sample groups; dynamic sampling drops groups instead of refilling the batch"),
         Claim("trl", "`_compute_loss`, loss_type=dapo, epsilon_high=0.28", {**TRL_ADV, "dynamic_sampling": False},
               "TRL has no dynamic sampling"))),
    Row("gspo", "GSPO eq. 7, s = (π/μ)^{1/|y|} (arXiv 2507.18071)",
        (Claim("verl", f"`compute_policy_loss_gspo`, clip_ratio_low=3e-4 clip_ratio_high=4e-4, "
               f"loss_agg_mode=seq-mean-token-mean; {GRPO_ADV}", VERL_ADV),
         Claim("trl", "`_compute_loss`, importance_sampling_level=sequence, loss_type=grpo, epsilon=3e-4 "
               "epsilon_high=4e-4", TRL_ADV))),
    Row("cispo", "CISPO eq. 4, sg(clip ρ) A log π (arXiv 2506.13585)",
        (Claim("verl", f"`compute_policy_loss_cispo`, clip_ratio_low=clip_ratio_high=0.2; {GRPO_ADV}",
               {"a_pos": 0.8, "a_neg": 0.8, "b_pos": 1.2, "b_neg": 1.2, **VERL_ADV},
               "a± = 1 − clip_ratio_low, b± = 1 + clip_ratio_high"),
         Claim("trl", "`_compute_loss`, loss_type=cispo, epsilon_high=5", TRL_ADV, "b± = epsilon_high"))),
    Row("sapo", "SAPO eqs. 5–6, gate (4/τ)σ(τ(ρ−1)) (arXiv 2511.20347)",
        (Claim("verl", f"`compute_policy_loss_sapo`, tau_pos=1 tau_neg=1.05; {GRPO_ADV}", VERL_ADV),
         Claim("trl", "`_compute_loss`, loss_type=sapo", TRL_ADV,
               "TRL makes the temperatures float32: relative 1e-7"))),
    Row("gmpo", "GMPO eq. 4, geometric mean of clipped ratios (arXiv 2507.20673)",
        (Claim("verl", f"`compute_policy_loss_geo_mean`, clip_ratio_low=clip_ratio_high=0.4; {GRPO_ADV}", VERL_ADV,
               "eps_low = clip_ratio_low, eps_high = clip_ratio_high"),)),
    Row("m2po", "M2PO Algorithm 1, mean (log ρ)² ≤ τ (arXiv 2510.01161)", (),
        "trinity-rft 0.6.0 has no M2PO loss"),
    Row("grpo-opsm", "off-policy sequence masking, DeepSeek-V3.2 eq. 9 (arXiv 2512.02556)",
        (Claim("trinity", f"`ppo` loss, enable_sequence_masking=true delta_sequence_masking=0.1; {GRPO_ADV}",
               {**TRINITY_GRPO, "opsm_delta": 0.1}),
         Claim("trl", "`_compute_loss` with `get_off_policy_mask`, off_policy_mask_threshold=0.5, loss_type=dapo",
               TRL_ADV))),
    Row("grpo-tis", "truncated IS for the engine mismatch (Yao et al. 2025)",
        (Claim("verl", f"`compute_rollout_correction_weights`, rollout_is=token rollout_is_threshold=2, into "
               f"`compute_policy_loss_vanilla`; {GRPO_ADV}", VERL_GRPO),
         Claim("verl", f"the same, rollout_is=sequence", {**VERL_GRPO, "mismatch_level": "sequence"},
               tag="sequence"),
         Claim("trl", "`_compute_loss`, vllm_importance_sampling_mode=token_truncate (clip_max 3)",
               {**TRL_ADV, "mismatch_cap": 3.0}, tag="token"),
         Claim("trl", "`_compute_loss`, vllm_importance_sampling_mode=sequence_truncate (clip_max 3)",
               {**TRL_ADV, "mismatch_cap": 3.0, "mismatch_level": "sequence"}, tag="sequence"))),
    Row("grpo-mis", "masked IS for the engine mismatch (Yao et al. 2025)",
        (Claim("trl", "`_compute_loss`, vllm_importance_sampling_mode=token_mask (clip_max 3)",
               {**TRL_ADV, "mismatch": "masked-is", "mismatch_cap": 3.0},
               "TRL keeps ρ_roll where ρ_roll ≤ 3, our default "
               "mismatch=mask weighs 1 there", tag="token"),
         Claim("trl", "`_compute_loss`, vllm_importance_sampling_mode=sequence_mask (clip_max 3, TRL's default)",
               {**TRL_ADV, "mismatch": "masked-is", "mismatch_cap": 3.0, "mismatch_level": "sequence"},
               tag="sequence"))),
]

# our aggregation, its formula, and the peers' names for it (checked with verl's `agg_loss`, Trinity-RFT's
# `aggregate_loss` and, for TRL, by the `grpo` row's loss types)
AGGREGATIONS = [
    ("token-mean", "Σ_{i,t} m ℓ / Σ m", {"verl": "token-mean", "trinity": "token-mean", "trl": "dapo, bnpo"}),
    ("seq-mean-token-mean", "(1/N) Σ_i Σ_t m ℓ / |y_i|",
     {"verl": "seq-mean-token-mean", "trinity": "seq-mean-token-mean", "trl": "grpo"}),
    ("seq-mean-token-sum", "(1/N) Σ_i Σ_t m ℓ", {"verl": "seq-mean-token-sum", "trinity": "seq-mean-token-sum"}),
    ("seq-mean-token-sum-norm", "(1/N) Σ_i Σ_t m ℓ / T", {"verl": "seq-mean-token-sum-norm", "trl": "dr_grpo"}),
    ("token-sum-norm", "Σ_i Σ_t m ℓ / T", {"trinity": "seq-mean-token-sum-norm (no 1/N despite the name)"}),
]


def claims() -> dict:
    """Every claim by its key (`Claim.key`): the lane checks each one."""
    return {c.key(r.name): (r, c) for r in ROWS for c in r.claims}


def agg_keys() -> list:
    return [f"agg:{a}/{p}" for a, _, names in AGGREGATIONS for p in names if p != "trl"]


def _value(v) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _settings(c: Claim) -> str:
    s = " ".join(f"{k}={_value(v)}" for k, v in c.settings.items()) or "default"
    return f"{PEERS[c.peer][2]}{' (' + c.tag + ')' if c.tag else ''}: {s}" + (f" ({c.scope})" if c.scope else "")


def measured() -> dict:
    """The lane's last measurements ({} when none were recorded)."""
    from banditlab.plumbing.safeio import read_json

    return read_json(MEASURED, "parity_measured.json") if MEASURED.exists() else {}


def _delta(m: dict, key: str, peer: str, tag: str = "") -> str:
    d = m.get("results", {}).get(key)
    if d is None:
        return f"{PEERS[peer][2]}{' (' + tag + ')' if tag else ''}: not run"
    e = lambda x: "0" if x == 0 else f"{x:.0e}"
    loss = "—" if d.get("loss") is None else e(d["loss"])
    return f"{PEERS[peer][2]}{' (' + tag + ')' if tag else ''}: {loss} / {e(d['grad'])}"


def markdown() -> str:
    """The parity tables as Markdown (printed by `banditlab algos --references`, embedded in docs/objectives.md)."""
    m = measured()
    head = {p: f"{PEERS[p][2]} {PEERS[p][1]}" for p in PEERS}
    out = [f"| ours | paper | {head['trinity']} | {head['verl']} | {head['trl']} | settings that reproduce the "
           "peer's loss | max \\|Δloss\\| / \\|Δgrad\\| |", "|---|---|---|---|---|---|---|"]
    for r in ROWS:
        cols = {p: "; ".join(c.config for c in r.claims if c.peer == p) or "—" for p in ("trinity", "verl", "trl")}
        settings = ". ".join(x for x in ("; ".join(_settings(c) for c in r.claims), r.note) if x) or "—"
        deltas = "; ".join(_delta(m, c.key(r.name), c.peer, c.tag) for c in r.claims) or "—"
        out.append(f"| `{r.name}` | {r.paper} | {cols['trinity']} | {cols['verl']} | {cols['trl']} | {settings} "
                   f"| {deltas} |")
    out += ["", f"| `agg` | loss | {head['verl']} | {head['trinity']} | {head['trl']} `loss_type` "
            "| max \\|Δloss\\| / \\|Δgrad\\| |", "|---|---|---|---|---|---|"]
    for a, f, names in AGGREGATIONS:
        deltas = "; ".join(_delta(m, f"agg:{a}/{p}", p) for p in ("verl", "trinity") if p in names)
        out.append(f"| `{a}` | {f.replace('|', '∣')} | {names.get('verl', '—')} | {names.get('trinity', '—')} "
                   f"| {names.get('trl', '—')} | {deltas} |")
    run = m.get("run")
    out += ["", "The differences are float64 maxima over the lane's random batches (.ci/parity): the peer's loss and "
            "gradient from its own function, ours from the row's settings, on the same advantages; a loss shown as — "
            "differs by construction (same gradient). Trinity-RFT's `rec` advantage raises UnboundLocalError on a "
            "one-sample group, so the claims that use it hold for batches without one. TRL's advantage and engine-mismatch weights (inside its "
            "`_generate_and_score_completions`) and verl's DAPO group filter (inside its replay buffer) need a running "
            "system: the lane executes those statements from the installed source on the batch. TRL's groups all "
            "have num_generations samples, so its claims are checked on groups of equal size. Measured: "
            + (run if run else "not yet run") + ".",
            "", "Defaults and why: `std=population` (the exact mode's probability-weighted groups have no sample "
            "count; unbiased is for sampled data), `std_eps=1e-6`, `singleton=self` (a lone sample is its own "
            "baseline, A = −δV), `dual_clip=None` (not in the PPO or GRPO papers), `ratio_level=sequence` for "
            "TOPR/IS (the paper's trajectory ratio, capped so it never overflows), `ties=neutral` (REC's r > r̄ / "
            "r < r̄), `sft norm=all` (the gradient of E_μ[1[r > 0] log π]), `dynamic_sampling_singletons=drop` "
            "(a one-sample group has all rewards equal, so DAPO's rule drops it)."]
    return "\n".join(out)


def write_docs() -> None:
    """Rewrite the table embedded in docs/objectives.md between its parity markers."""
    text = DOCS.read_text()
    head, rest = text.split("<!-- parity:begin -->\n")
    tail = rest.split("\n<!-- parity:end -->")[1]
    DOCS.write_text(f"{head}<!-- parity:begin -->\n{markdown()}\n<!-- parity:end -->{tail}")


if __name__ == "__main__":
    if sys.argv[1:] != ["--write-docs"]:
        print("usage: python -m banditlab.registry.references --write-docs", file=sys.stderr)
        sys.exit(2)
    write_docs()
