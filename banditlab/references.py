"""Parity of the objective registry with the papers and the reference implementations.

One row per registry entry: the paper equation it implements, the name of the same loss in Trinity-RFT, verl
and TRL, and the `--algo-arg` settings that make ours compute exactly the reference's loss. The conventions
that differ are parameters of the objectives (see `banditlab.objectives`): `std`, `std_eps`, `singleton`,
`dual_clip`, `ratio_level`, `ties`, `norm` and the aggregation `agg`. tests/test_parity.py checks every row's
gradient against the paper's formula written as plain loops; `banditlab algos --references` prints this table
and docs/objectives.md embeds the same text (a test keeps the two equal).
"""

from __future__ import annotations

# name, paper (equation), Trinity-RFT, verl, TRL, settings that reproduce the reference
ROWS = [
    ("reinforce", "REINFORCE with the group mean (REC §3)", "`rec`, clip_mode=none", "—", "—",
     "default"),
    ("asymre", "AsymRE eq. 2, b = r̄ + δV (arXiv 2506.20520)", "`rec`, regularizer=forward-kl, coef β",
     "—", "—", "offset=δV ≡ `rep-asymre` coef=−δV"),
    ("topr", "TOPR eq. 8, trajectory ratio (arXiv 2503.14286)", "`topr` (per-token ratio)", "—", "—",
     "Trinity: ratio_level=token"),
    ("is", "importance sampling, TOPR §3", "per-token IS", "—", "—", "Trinity: ratio_level=token"),
    ("tis", "truncated IS clip(ρ, 0, 1), TOPR §3", "`truncated_importance_sampling`: clamp(ρ, 0.4, 3)",
     "—", "—", "Trinity: a_pos=0.4 b_pos=3 a_neg=0.4 b_neg=3 ratio_level=token"),
    ("ppo", "PPO-clip eq. 7 (Schulman et al. 2017)", "`ppo`", "`compute_policy_loss_vanilla`", "—",
     "verl: dual_clip=3"),
    ("grpo", "GRPO eq. 3 (arXiv 2402.03300)", "`ppo` + `grpo` advantage", "adv_estimator=grpo + vanilla",
     "`GRPOTrainer`", "verl/Trinity: std=unbiased singleton=reference (verl + dual_clip=3); "
     "TRL: std=unbiased std_eps=1e-4, agg by loss_type (below)"),
    ("rec", "REC one-side mask, Table 1 (arXiv 2509.24203)", "`rec`, clip_mode=one-side", "—", "—", "default"),
    ("rec-ring", "REC ring mask, Table 1", "`rec`, clip_mode=ring", "—", "—", "default (ε′ = 0.6, 2.0)"),
    ("red-drop", "RED-Drop, REC §5", "`rec` advantage with drop", "—", "—", "Trinity: ties=positive"),
    ("red-weight", "RED-Weight A·exp(A/τ), REC §5", "`rec`, weight=advantage_unnormalized", "—", "—",
     "default"),
    ("opmd", "OPMD (c/2)(log π − log μ)², REC §4", "`rec`, regularizer=k2, coef c",
     "—", "—", "Trinity coef c = our coef 2c (Trinity's algorithm `opmd` is another loss)"),
    ("rep-asymre", "REP with forward KL −β log π, REC §4", "`rec`, regularizer=forward-kl", "—", "—",
     "default"),
    ("sft", "rejection-sampling SFT on r > 0", "`sft`", "—", "—", "Trinity: norm=positive"),
    ("dapo", "DAPO eqs. 10–11, clip-higher + dynamic sampling (arXiv 2503.14476)", "—",
     "`compute_policy_loss_vanilla`, clip_ratio_high=0.28 + filter_groups", "`_compute_loss`, loss_type=dapo",
     "verl/TRL: std=unbiased; dynamic sampling drops groups instead of refilling the batch"),
    ("gspo", "GSPO eq. 7, s = (π/μ)^{1/|y|} (arXiv 2507.18071)", "—",
     "core_algos.py `compute_policy_loss_gspo`", "`_compute_loss`, importance_sampling_level=sequence",
     "verl/TRL: std=unbiased; TRL + agg=seq-mean-token-mean (its `grpo` loss_type)"),
    ("cispo", "CISPO eq. 4, sg(clip ρ) A log π (arXiv 2506.13585)", "—",
     "core_algos.py `compute_policy_loss_cispo`", "`_compute_loss`, loss_type=cispo",
     "TRL: b_pos=b_neg=ε_max, std=unbiased; verl: a_±=1−clip_ratio_low b_±=1+clip_ratio_high"),
    ("sapo", "SAPO eqs. 5–6, gate (4/τ)σ(τ(ρ−1)) (arXiv 2511.20347)", "—",
     "core_algos.py `compute_policy_loss_sapo`", "`_compute_loss`, loss_type=sapo", "verl/TRL: std=unbiased"),
    ("gmpo", "GMPO eq. 4, geometric mean of clipped ratios (arXiv 2507.20673)", "—",
     "core_algos.py `compute_policy_loss_geo_mean`", "—", "verl: eps_low=clip_ratio_low eps_high=clip_ratio_high"),
    ("m2po", "M2PO Algorithm 1, mean (log ρ)² ≤ τ (arXiv 2510.01161)",
     "m2po_policy_loss.py `M2POPolicyLossFn`", "—", "—", "default (τ = 0.04, token-mean)"),
    ("grpo-opsm", "off-policy sequence masking, DeepSeek-V3.2 eq. 9 (arXiv 2512.02556)", "—", "—",
     "`get_off_policy_mask`, off_policy_mask_threshold=δ", "TRL: opsm_delta=δ std=unbiased"),
    ("grpo-tis", "truncated IS for the engine mismatch (Yao et al. 2025)", "—",
     "rollout_corr_helper.py `compute_rollout_correction_weights`", "vllm_importance_sampling_mode=*_truncate",
     "verl: mismatch_cap=rollout_is_threshold; TRL: mismatch_cap=3"),
    ("grpo-mis", "masked IS for the engine mismatch (Yao et al. 2025)", "—", "—",
     "vllm_importance_sampling_mode=*_mask", "TRL: mismatch_cap=3 (its default mode: mismatch_level=sequence)"),
]

# our aggregation, the formula, the references' names for it
AGGREGATIONS = [
    ("token-mean", "Σ_{i,t} m ℓ / Σ m", "verl/Trinity `token-mean`; TRL `dapo`, `bnpo`"),
    ("seq-mean-token-mean", "(1/N) Σ_i Σ_t m ℓ / |y_i|", "verl `seq-mean-token-mean`; TRL `grpo`"),
    ("seq-mean-token-sum", "(1/N) Σ_i Σ_t m ℓ", "verl `seq-mean-token-sum`"),
    ("seq-mean-token-sum-norm", "(1/N) Σ_i Σ_t m ℓ / T", "TRL `dr_grpo` (Dr. GRPO)"),
    ("token-sum-norm", "Σ_i Σ_t m ℓ / T", "verl `seq-mean-token-sum-norm` (no 1/N despite the name)"),
]


def markdown() -> str:
    """The two parity tables as Markdown (printed by `banditlab algos --references`, embedded in docs/objectives.md)."""
    out = ["| ours | paper | Trinity-RFT | verl | TRL | settings that reproduce the reference |",
           "|---|---|---|---|---|---|"]
    out += [f"| `{r[0]}` | {r[1]} | {r[2]} | {r[3]} | {r[4]} | {r[5]} |" for r in ROWS]
    out += ["", "| `agg` | loss | reference names |", "|---|---|---|"]
    out += [f"| `{a}` | {f} | {n} |" for a, f, n in AGGREGATIONS]
    out += ["", "Defaults and why: `std=population` (the exact mode's probability-weighted groups have no sample "
            "count; unbiased is for sampled data), `std_eps=1e-6`, `singleton=self` (a lone sample is its own "
            "baseline, A = −δV), `dual_clip=None` (not in the PPO or GRPO papers), `ratio_level=sequence` for "
            "TOPR/IS (the paper's trajectory ratio, capped so it never overflows), `ties=neutral` (REC's r > r̄ / "
            "r < r̄), `sft norm=all` (the gradient of E_μ[1[r > 0] log π])."]
    return "\n".join(out)
