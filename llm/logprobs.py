"""A batch of completions and its per-token log-probs: the pieces the trainer and every backend share.

Layout of a batch of N samples (`Rollouts`): prompt ids left-padded to P, completion ids right-padded to T,
so `input_ids = [prompt | completion]` [N, P + T] and completion token t sits at column P + t. A completion ends
with the end-of-sequence token when the model emitted one (it is part of the action) and is padded after it
(`pad_completions`).

`token_logprobs` is the one function that turns a model and such a batch into per-token log-probs of the
completion, log softmax(logits / temperature): the trainer uses it for log π (with gradient) and log μ (the
behaviour snapshot, no gradient), so on-policy the ratio is exactly 1; it holds float32 logits for one chunk of
tokens at a time, never more than `memory.LOGIT_BUDGET` entries (docs/memory.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.checkpoint import checkpoint

from .memory import LOGIT_BUDGET


@dataclass
class Rollouts:
    prompt_ids: torch.Tensor       # [N, P] left-padded
    prompt_mask: torch.Tensor      # [N, P]
    completion_ids: torch.Tensor   # [N, T] right-padded
    completion_mask: torch.Tensor  # [N, T]
    logprobs: torch.Tensor         # [N, T] behaviour log-probs of the completion tokens (0 on padding)
    texts: list[str]               # decoded completions

    @property
    def input_ids(self):
        return torch.cat([self.prompt_ids, self.completion_ids], 1)

    @property
    def attention_mask(self):
        return torch.cat([self.prompt_mask, self.completion_mask], 1)

    def select(self, idx) -> "Rollouts":
        idx = torch.as_tensor(idx, dtype=torch.long)
        return Rollouts(self.prompt_ids[idx], self.prompt_mask[idx], self.completion_ids[idx],
                        self.completion_mask[idx], self.logprobs[idx], [self.texts[i] for i in idx.tolist()])


def decoder_and_head(model):
    """(decoder, LM head) of a causal LM, peft-wrapped or not: logits = head(decoder(ids).last_hidden_state).
    Models that rescale or soft-cap their logits after the head are refused (ValueError): the chunked head
    below would miss the rescaling."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    cfg = base.config
    if getattr(cfg, "final_logit_softcapping", None) or getattr(cfg, "logit_scale", None) not in (None, 1, 1.0):
        raise ValueError(f"{type(base).__name__}: logits soft-capped or scaled after the LM head are not supported")
    return base.get_decoder(), base.get_output_embeddings()


def _head_logprobs(head, h, tok, temperature: float, entropy: bool):
    """log softmax(head(h) / τ) at `tok`, [n]; with entropy also −Σ_v p_v log p_v (no gradient), [n]."""
    logp_all = torch.log_softmax(head(h).float() / temperature, -1)
    logp = logp_all.gather(-1, tok[:, None])[:, 0]
    if not entropy:
        return logp
    with torch.no_grad():
        return logp, -(logp_all.exp() * logp_all).sum(-1)


def token_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, completion_len: int,
                   temperature: float = 1.0, entropy: bool = False, chunk_tokens: int = 0):
    """Per-token log π(y_t | x, y_<t) of the last `completion_len` tokens, [N, T]; with entropy, also the
    per-token entropy of the full distribution (detached):

        log π(y_t) = z_t[y_t]/τ − logsumexp_v z_t[v]/τ,   H_t = −Σ_v π_t(v) log π_t(v),   z_t = W h_t,

    h_t the decoder's last hidden state before y_t and W the LM head. The decoder runs once (use_cache off); the
    head, log-softmax, gather and entropy run on chunks of `chunk_tokens` tokens (0: LOGIT_BUDGET / vocabulary),
    so that float32 logits exist for one chunk at a time instead of [N, T, V]. Under autograd each chunk is
    checkpointed (its logits recomputed in the backward), so the graph keeps only the hidden states; a batch
    that fits one chunk is computed directly, without the recompute."""
    pos = (attention_mask.long().cumsum(-1) - 1).clamp_min(0)
    decoder, head = decoder_and_head(model)
    hidden = decoder(input_ids=input_ids, attention_mask=attention_mask, position_ids=pos,
                     use_cache=False).last_hidden_state
    tok = input_ids[:, -completion_len:]
    N, T = tok.shape
    h = hidden[:, -(completion_len + 1):-1].reshape(N * T, -1)
    tok = tok.reshape(N * T)
    size = chunk_tokens or max(1, LOGIT_BUDGET // head.weight.shape[0])
    recompute = torch.is_grad_enabled() and h.requires_grad and N * T > size
    outs = []
    for s in range(0, N * T, size):
        args = (head, h[s: s + size], tok[s: s + size], temperature, entropy)
        outs.append(checkpoint(_head_logprobs, *args, use_reentrant=False) if recompute else _head_logprobs(*args))
    if not entropy:
        return torch.cat(outs).view(N, T)
    return torch.cat([o[0] for o in outs]).view(N, T), torch.cat([o[1] for o in outs]).view(N, T)


def pad_completions(seqs: list[list[int]], pad_id: int, eos_id: int | None):
    """Right-pad completions (cut after the first eos) into ids and mask tensors."""
    cut = []
    for s in seqs:
        s = list(s)
        if eos_id is not None and eos_id in s:
            s = s[: s.index(eos_id) + 1]
        cut.append(s or [eos_id if eos_id is not None else pad_id])
    T = max(len(s) for s in cut)
    ids = torch.full((len(cut), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(cut), T), dtype=torch.long)
    for i, s in enumerate(cut):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    return ids, mask
