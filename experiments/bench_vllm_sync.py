"""Benchmark: where the vLLM behaviour sync spends its time, old way against new way, in one engine.

    python experiments/bench_vllm_sync.py [--model smollm2] [--syncs 4]        # in the vllm venv (docs/llm.md)

Each sync pushes a changed rank-8 adapter and verifies it with the probe. Timed parts:
  save     peft `save_pretrained` of the adapter
  load+probe  the engine's first request with the new adapter (vLLM loads LoRA weights lazily) scoring the probe
  trainer  the transformers forward of the same probe
Two ways: "new id": a new folder and a new LoRA id per sync (the backend before this change), and "in place":
one folder per slot reloaded under a fixed id with `load_inplace=True` (the backend now). Threads: 1.
"""

from __future__ import annotations

import argparse
import os
import time

import torch


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--syncs", type=int, default=4)
    a = ap.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from vllm.lora.request import LoRARequest

    from banditlab_llm.models import add_lora, load_model, lora_params, lora_state, model_folder, use_lora
    from banditlab_llm.vllm_backend import VLLMBackend

    model, tok = load_model(a.model, torch.float32, "cpu")
    peft = add_lora(model)
    t = time.perf_counter()
    engine = VLLMBackend(model_folder(a.model), peft, tok, max_model_len=512)
    print(f"engine start {time.perf_counter() - t:.1f} s")
    times = {"new id": [], "in place": []}
    try:
        for i in range(a.syncs):
            for way in times:
                with torch.no_grad():  # a training step's worth of change
                    for p in lora_params(peft).values():
                        p.add_(0.01 * torch.randn_like(p))
                state = lora_state(peft)
                t0 = time.perf_counter()
                if way == "new id":
                    folder = engine.dir / f"v{i}"
                    with use_lora(peft, state):
                        peft.save_pretrained(folder)
                    engine.requests["behaviour"] = LoRARequest(f"v{i}", 100 + i, str(folder))
                else:
                    engine.push(state)
                t1 = time.perf_counter()
                gap = float((engine.engine_probe() - engine.trainer_probe(state)).abs().max())
                t2 = time.perf_counter()
                engine.trainer_probe(state)
                t3 = time.perf_counter()
                times[way].append((t1 - t0, t2 - t1 - (t3 - t2), t3 - t2, gap))
    finally:
        engine.close()
    print(f"{'way':<9} {'save s':>7} {'load+probe s':>13} {'trainer s':>10} {'total s':>8} {'max |Δ|':>8}")
    for way, rows in times.items():
        m = [sum(r[k] for r in rows) / len(rows) for k in range(3)]
        print(f"{way:<9} {m[0]:>7.3f} {m[1]:>13.3f} {m[2]:>10.3f} {sum(m):>8.3f} {max(r[3] for r in rows):>8.1e}")


if __name__ == "__main__":
    main()
