"""Rollout backends: sampled completions (`logprobs.Rollouts`) with the behaviour policy's per-token log-probs.

The batch layout and the log-probs (`Rollouts`, `token_logprobs`, `pad_completions`) live in llm/logprobs.py,
shared by every backend. Backends:
    transformers  `HFBackend`: model.generate on the training model (behaviour adapter swapped in); the
                  behaviour log-probs from `token_logprobs` on request (the trainer computes log μ itself)
    vllm          `llm.vllm_backend.VLLMBackend` (the `vllm` extra, imported lazily): the LoRA adapter pushed to
                  the engine at every behaviour refresh and checked with a probe
top_p < 1 truncates sampling but the log-probs ignore the truncation: use top_p = 1 where ratios must be exact.
"""

from __future__ import annotations

import torch

from .logprobs import Rollouts, decoder_and_head, pad_completions, token_logprobs  # noqa: F401  (re-exported)


def auto_batch_size(model, prompt_len: int, new_tokens: int, device, cap: int = 512) -> int:
    """Sequences per generate() call that fit the device: on CUDA, half the free memory divided by one
    sequence's KV cache plus its logits row (2 · layers · kv_heads · head_dim · length · bytes + vocab · 4);
    on CPU a fixed 64 (larger batches do not speed up a CPU)."""
    if not str(device).startswith("cuda"):
        return 64
    cfg = model.config
    layers = cfg.num_hidden_layers
    heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    nbytes = next(model.parameters()).element_size()
    per_seq = 2 * layers * heads * head_dim * (prompt_len + new_tokens) * nbytes + cfg.vocab_size * 4 * 2
    free, _ = torch.cuda.mem_get_info(torch.device(device))
    return int(max(1, min(cap, 0.5 * free // per_seq)))


def decode_steps(n_sequences: int, max_new_tokens: int, batch_size: int) -> int:
    """Upper bound of generate()'s decoding steps: batches × budget (the total of its progress bar)."""
    return -(-n_sequences // batch_size) * max_new_tokens


def _Tick(bar):
    """A stopping criterion that never stops: it advances a progress bar once per decoding step."""
    from transformers import StoppingCriteria

    class Tick(StoppingCriteria):
        def __call__(self, input_ids, scores, **_):
            bar.advance()
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    return Tick()


class HFBackend:
    """transformers `generate` on the training model itself, with the behaviour adapter swapped in.

    batch_size 0 sizes each generate() call from the device's free memory (`auto_batch_size`)."""

    name = "transformers"

    def __init__(self, model, tokenizer, batch_size: int = 0):
        self.model, self.tok, self.batch_size = model, tokenizer, batch_size

    def sync(self, state, version: int) -> None:
        """Nothing to push: generate() swaps the snapshot into the training model itself."""

    @torch.no_grad()
    def warmup(self) -> None:
        """One short generate call, so that CUDA start-up (kernels, allocator) is not billed to the first step."""
        enc = self.tok(["warm up"], return_tensors="pt", add_special_tokens=False)
        device = next(self.model.parameters()).device
        self.model.generate(input_ids=enc.input_ids.to(device), attention_mask=enc.attention_mask.to(device),
                            max_new_tokens=2, do_sample=False, pad_token_id=self.tok.pad_token_id)

    @torch.no_grad()
    def generate(self, prompts: list[str], n: int, max_new_tokens: int, temperature: float = 1.0,
                 top_p: float = 1.0, seed: int = 0, greedy: bool = False, state=None,
                 with_logprobs: bool = False, bar=None) -> Rollouts:
        """n completions of each prompt. `Rollouts.logprobs` holds the behaviour log-probs only when
        `with_logprobs` (one more forward pass): the trainer computes log μ itself where it needs it.
        `bar` (a banditlab.plumbing.progress.Bar of total `decode_steps`) advances by one per decoding step."""
        from .models import use_lora

        tok, model = self.tok, self.model
        device = next(model.parameters()).device
        all_prompts = [p for p in prompts for _ in range(n)]
        enc = tok(all_prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        P = enc.input_ids.shape[1]
        size = self.batch_size or auto_batch_size(model, P, max_new_tokens, device)
        seqs = []
        was_training = model.training
        model.eval()
        torch.manual_seed(seed)
        base = bar.done if bar is not None else 0
        if bar is not None:
            bar.total = base + decode_steps(len(all_prompts), max_new_tokens, size)
        with use_lora(model, state):
            for i in range(0, len(all_prompts), size):
                ids = enc.input_ids[i: i + size].to(device)
                mask = enc.attention_mask[i: i + size].to(device)
                kw = dict(do_sample=False) if greedy else dict(do_sample=True, temperature=temperature, top_p=top_p,
                                                             top_k=0)
                if bar is not None:
                    from transformers import StoppingCriteriaList

                    kw["stopping_criteria"] = StoppingCriteriaList([_Tick(bar)])
                out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                     pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, **kw)
                seqs += out[:, P:].cpu().tolist()
                if bar is not None:  # the batch ended (early when every sequence stopped): its share is done
                    bar.update(base + (i // size + 1) * max_new_tokens)
            cids, cmask = pad_completions(seqs, tok.pad_token_id, tok.eos_token_id)
            r = Rollouts(enc.input_ids, enc.attention_mask, cids, cmask, torch.zeros(cids.shape),
                         tok.batch_decode([c[m.bool()] for c, m in zip(cids, cmask)], skip_special_tokens=True))
            if with_logprobs:
                r.logprobs = self.logprobs(r, temperature)
        model.train(was_training)
        return r

    @torch.no_grad()
    def logprobs(self, r: Rollouts, temperature: float, chunk: int = 16) -> torch.Tensor:
        device = next(self.model.parameters()).device
        T = r.completion_ids.shape[1]
        out = []
        for i in range(0, len(r.texts), chunk):
            lp = token_logprobs(self.model, r.input_ids[i: i + chunk].to(device),
                                r.attention_mask[i: i + chunk].to(device), T, temperature)
            out.append(lp.float().cpu() * r.completion_mask[i: i + chunk])
        return torch.cat(out)


def make_backend(kind: str, model_spec: str, model, tok, device: str, max_new_tokens: int, batch_size: int = 0,
                 seed: int = 0):
    """The rollout engine, built here and nowhere else (`llm train`, `llm eval`).

    kind "transformers": `HFBackend` on the LoRA model itself, warmed up on CUDA so that start-up is not billed to
    the first generation. kind "vllm": `VLLMBackend` serving `model_spec`'s folder, `model` being the peft model
    whose adapter it is handed; a missing vllm or an unusable model is a one-line UsageError."""
    if kind != "vllm":
        backend = HFBackend(model, tok, batch_size)
        if device.startswith("cuda"):
            backend.warmup()
        return backend
    from banditlab.errors import UsageError

    from .models import ModelError, model_folder

    try:
        from .vllm_backend import VLLMBackend

        return VLLMBackend(model_folder(model_spec), model, tok, lora_r=model.peft_config["default"].r,
                           dtype=next(model.parameters()).dtype, device=device, seed=seed,
                           max_model_len=max(1024, 512 + max_new_tokens))
    except (ImportError, ModelError, ValueError) as err:
        raise UsageError(str(err).splitlines()[0]) from None
