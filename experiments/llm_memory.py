"""GPU memory arithmetic for the paper configs in experiments/llm/: what fits on one 80 GB GPU, per process.

    python experiments/llm_memory.py [--gpu-gb 80]

An estimate, not a measurement (no GPU was lent to this work). Per process, for LoRA training with the transformers
backend (vLLM instead reserves `gpu_memory_utilization` = 0.3 of the device for its weights and KV cache):
    weights        2 B per base parameter (bf16)
    LoRA state     16 B per LoRA parameter (fp32 weight, gradient and two AdamW moments)
    activations    34 · hidden · 2 B per token per layer kept for the backward pass (Korthikanti et al. 2022,
                   attention scores excluded: SDPA/flash attention does not store them), for one micro-batch
    logits         3 · vocab · 4 B per token of one micro-batch (fp32 logits, log-softmax, and the entropy's exp)
    KV cache       2 · layers · kv_heads · head_dim · 2 B per token, for generate() on a batch of one step's share
A micro-batch is `--micro-batch` prompts × G sequences × (prompt + max_new_tokens) tokens; prompts are taken
as 256 tokens. The model shapes are the published configs of the three models.
"""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path

MODELS = {  # layers, hidden, intermediate, heads, kv_heads, vocab, parameters
    "meta-llama/Llama-3.1-8B-Instruct": (32, 4096, 14336, 32, 8, 128256, 8.03e9),
    "meta-llama/Meta-Llama-3-8B-Instruct": (32, 4096, 14336, 32, 8, 128256, 8.03e9),
    "Qwen/Qwen2.5-1.5B-Instruct": (28, 1536, 8960, 12, 2, 151936, 1.54e9),
}
PROMPT = 256


def lora_params(shape, r, targets):
    L, h, ff, heads, kv, _, _ = shape
    hd = h // heads
    dims = {"q_proj": (h, h), "k_proj": (h, kv * hd), "v_proj": (h, kv * hd), "o_proj": (h, h),
            "gate_proj": (h, ff), "up_proj": (h, ff), "down_proj": (ff, h)}
    return L * sum(r * (dims[t][0] + dims[t][1]) for t in targets)


def estimate(cfg: dict, micro_prompts: int, gb=2**30) -> dict:
    shape = MODELS[cfg["model"]]
    L, h, _, heads, kv, vocab, n = shape
    G, T = cfg["group_size"], PROMPT + cfg["max_new_tokens"]
    targets = cfg.get("lora_targets", "q_proj,k_proj,v_proj,o_proj").split(",")
    tokens = micro_prompts * G * T
    gen_tokens = cfg["prompts_per_step"] * G * T
    return {
        "weights": 2 * n / gb,
        "lora": 16 * lora_params(shape, cfg["lora_r"], targets) / gb,
        "activations": 34 * h * 2 * L * tokens / gb,
        "logits": 3 * vocab * 4 * tokens / gb,
        "kv_cache": 2 * L * kv * (h // heads) * 2 * gen_tokens / gb,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpu-gb", type=float, default=80.0)
    a = ap.parse_args()
    print(f"| config | G × (prompt + new) tokens | weights | LoRA state | per prompt in a micro-batch "
          f"(activations + logits) | KV cache for a step's generation | largest micro-batch on {a.gpu_gb:g} GB |")
    print("|---|---|---:|---:|---:|---:|---|")
    for f in sorted((Path(__file__).parent / "llm").glob("*.toml")):
        cfg = tomllib.loads(f.read_text())
        cfg = cfg.get("train", cfg)
        one = estimate(cfg, 1)
        fixed = one["weights"] + one["lora"]
        per = one["activations"] + one["logits"]
        fit = int((a.gpu_gb - fixed) // per)
        kv = one["kv_cache"]
        verdict = (f"{fit} prompt(s) (config: {cfg.get('micro_batch', 0)})" if fit >= 1 else
                   "none: one prompt's G sequences do not fit; needs gradient checkpointing (not implemented) or a "
                   "shorter --max-new-tokens")
        print(f"| `{f.stem}` | {cfg['group_size']} × {PROMPT + cfg['max_new_tokens']} | {one['weights']:.1f} GB | "
              f"{one['lora']:.2f} GB | {per:.1f} GB | {kv:.1f} GB ({cfg['prompts_per_step']} prompts) | {verdict} |")


if __name__ == "__main__":
    main()
