"""Memory of one LoRA training micro-batch, estimated from the model's shape: the formula written once, used by the
trainer (`--grad-checkpointing auto`) and by experiments/llm_memory.py (the paper configs' table, and its check
against a CPU measurement).

Bytes, for a micro-batch of n sequences of S tokens (prompt + completion), C = n · completion tokens; base weights
in b bytes (bf16: 2, float32: 4), LoRA adapter in a bytes (peft keeps it in float32 on a bf16 model: a = 4):
    weights        b · parameters
    LoRA state     16 · LoRA parameters (float32 weight, gradient, two AdamW moments)
    activations    what autograd keeps for the backward pass, per token and layer (no checkpointing):
                       8h                      the two RMSNorm inputs, float32
                     + b · (2h + 2 kv)         q, k, v after RoPE and the attention output (flash / SDPA kernels
                                               keep these and a log-sum-exp, never the S × S scores)
                     + 3b · ff                 the MLP's gate output, its SiLU and the up-projection output
                     + LoRA inputs             each adapted module keeps its input (h, or ff for down_proj), shared
                                               between modules when a = b, a float32 copy per module when a ≠ b;
                                               plus a · r for each adapter's rank-r intermediate
                   frozen linear layers keep nothing (their input gradient needs only the weight). Times L layers
                   and n · S tokens; with checkpointing, L · b · h per token (each layer's input) plus one layer's
                   activations, recomputed during its backward
    head           n · S · (4 + b) · h + C · b · h   (the final norm's float32 input and output, the completion rows)
    logits         3 · 4 B · V · min(C, LOGIT_BUDGET / V): three float32 [chunk, V] tensors of one chunk of tokens
                   alive at once (`logprobs.token_logprobs`): the log-softmax with the entropy's exp and product in
                   the forward; the log-softmax, the gather's gradient and the fused log-softmax gradient in the
                   backward
    backward       3b · ff per token: one layer's MLP gradients alive at once
Attention masks are left out (none without padding; n · S² bytes with it). Korthikanti et al. 2022 ("Reducing
activation recomputation in large transformer models", eq. 2) count 34 · h bytes per token and layer for full
training in 16 bits; LoRA keeps less, since frozen linear layers store nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

LOGIT_BUDGET = 2**26  # float32 logit entries per chunk; logprobs.token_logprobs imports it from here
PROMPT_TOKENS = 256   # prompt length the estimates assume
ATTN = ("q_proj", "k_proj", "v_proj")
MLP_IN = ("gate_proj", "up_proj")


@dataclass(frozen=True)
class Shape:
    layers: int
    hidden: int
    ff: int
    heads: int
    kv_heads: int
    vocab: int
    params: float
    head_dim: int = 0

    @property
    def kv(self) -> int:
        return self.kv_heads * (self.head_dim or self.hidden // self.heads)

    @classmethod
    def of(cls, config, params: float) -> "Shape":
        """The shape of a transformers config (Llama, Qwen2, Mistral, SmolLM2)."""
        return cls(config.num_hidden_layers, config.hidden_size, config.intermediate_size, config.num_attention_heads,
                   config.num_key_value_heads or config.num_attention_heads, config.vocab_size, params,
                   getattr(config, "head_dim", None) or 0)


def lora_param_count(s: Shape, r: int, targets) -> int:
    dims = {"q_proj": (s.hidden, s.hidden), "k_proj": (s.hidden, s.kv), "v_proj": (s.hidden, s.kv),
            "o_proj": (s.hidden, s.hidden), "gate_proj": (s.hidden, s.ff), "up_proj": (s.hidden, s.ff),
            "down_proj": (s.ff, s.hidden)}
    return s.layers * sum(r * sum(dims.get(t, (s.hidden, s.hidden))) for t in targets)


def layer_activation_bytes(s: Shape, r: int, targets, b: int, a: int) -> int:
    """Bytes autograd keeps per token in one decoder layer (the `activations` line of the module docstring)."""
    h, ff, t = s.hidden, s.ff, set(targets)
    base = 8 * h + b * (2 * h + 2 * s.kv) + 3 * b * ff
    inputs = {"q_proj": h, "k_proj": h, "v_proj": h, "o_proj": h, "gate_proj": h, "up_proj": h, "down_proj": ff}
    if a == b:  # the adapted modules read the same tensors: q/k/v share one, gate/up share one
        lora = a * (h * bool(t & set(ATTN)) + h * ("o_proj" in t) + h * bool(t & set(MLP_IN)) + ff * ("down_proj" in t))
    else:
        lora = a * sum(inputs.get(m, h) for m in t)
    return base + lora + a * r * len(t)


def training_bytes(s: Shape, r: int, targets, seqs: int, seq_len: int, completion_len: int, checkpointing: bool,
                   b: int = 2, a: int = 4) -> dict:
    """Bytes of each part of one micro-batch's training step (the module docstring's lines)."""
    tokens, ctok = seqs * seq_len, seqs * completion_len
    layer = layer_activation_bytes(s, r, targets, b, a)
    act = s.layers * b * s.hidden * tokens + layer * tokens if checkpointing else s.layers * layer * tokens
    return {
        "weights": b * s.params,
        "lora": 16 * lora_param_count(s, r, targets),
        "activations": act,
        "head": tokens * (4 + b) * s.hidden + ctok * b * s.hidden,
        "logits": 12 * s.vocab * min(ctok, max(1, LOGIT_BUDGET // s.vocab)),
        "backward": 3 * b * s.ff * tokens,
    }


def needs_checkpointing(s: Shape, r: int, targets, seqs: int, seq_len: int, free_bytes: float, b: int = 2,
                        a: int = 4) -> bool:
    """The `--grad-checkpointing auto` rule: on when one micro-batch's activations without checkpointing would
    take more than half of the device memory free after loading the model."""
    return s.layers * layer_activation_bytes(s, r, targets, b, a) * seqs * seq_len > 0.5 * free_bytes
