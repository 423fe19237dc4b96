"""Two parts of GPU call B that need one process each: every objective trains, and generation tokens/s.

    python experiments/gpu/llm_parts.py objectives --model smollm2 --device cuda --jsonl out.jsonl
    python experiments/gpu/llm_parts.py generation --model smollm2 --device cuda --test-path test.jsonl --json out.json

objectives: every registry objective (`banditlab.registry.objectives.OBJECTIVES`) runs `--steps` steps of the real trainer
(`llm.train.Trainer.run`) in three regimes: online (μ = π every step), lagged (μ refreshed every 2 steps from π one
step older: sync_interval 2, sync_offset 1) and offline (one π₀ dataset, TOPR-style). One JSON line per run, written
as each finishes: status, seconds, the last step's loss, gradient norm and ratio range, and whether they are finite.

generation: tokens/s of the transformers backend (`llm.generation.HFBackend`, the one the trainer samples with) on
the LoRA-wrapped model, T = 1, `--prompts` test questions × `--group` samples × ≤ `--max-new-tokens`, at each
`--batch-sizes` (0: the automatic size from free memory), after one warm-up call; `--static-cache` adds a run with
transformers' static KV cache (an experiment: the trainer does not use it). Completion tokens / wall seconds.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import tempfile
import time
from pathlib import Path

import torch

REGIMES = {"online": {}, "lagged": {"sync_interval": 2, "sync_offset": 1}, "offline": {"offline": True}}


def objectives(a) -> None:
    from banditlab.registry.objectives import OBJECTIVES
    from banditlab_llm.train import TrainConfig, Trainer

    algos = a.algos.split(",") if a.algos else list(OBJECTIVES)
    out = Path(a.jsonl)
    out.write_text("")
    for regime, kw in REGIMES.items():
        for algo in algos:
            cfg = TrainConfig(model=a.model, dataset=a.dataset, data_path=a.data_path, algo=algo,
                              group_size=a.group, prompts_per_step=a.prompts, steps=a.steps,
                              n_train=a.prompts * a.steps, max_new_tokens=a.max_new_tokens, lr=1e-5, eval_n=0,
                              device=a.device, checkpoint_every=10**6, out="", **kw)
            t = time.perf_counter()
            row = {"algo": algo, "regime": regime}
            try:
                with tempfile.TemporaryDirectory(prefix=f"obj-{algo}-") as work:
                    cfg.out = work
                    folder = Trainer(cfg, echo=lambda *_: None).run()
                    rows = [json.loads(l) for l in (folder / "metrics.jsonl").read_text().splitlines()][1:]
                last = rows[-1]
                keys = ("loss", "grad_norm", "ratio_min", "ratio_max", "entropy", "peak_memory_gb")
                row.update({k: last.get(k) for k in keys}, steps=len(rows), status="ok")
                row["finite"] = all(math.isfinite(r[k]) for r in rows for k in ("loss", "grad_norm"))
                if not row["finite"] or len(rows) != a.steps:
                    row["status"] = "failed"
            except Exception as err:  # recorded, and the next run goes on
                row.update(status="failed", error=f"{type(err).__name__}: {' '.join(str(err).split())[:200]}")
            row["seconds"] = round(time.perf_counter() - t, 2)
            with out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)


def generation(a) -> None:
    from banditlab_llm.data import build_prompt, load_problems
    from banditlab_llm.generation import HFBackend, auto_batch_size
    from banditlab_llm.models import add_lora, load_model, resolve_device

    device, dtype = resolve_device(a.device, "auto")
    model, tok = load_model(a.model, dtype, device)
    model = add_lora(model)
    questions = [p.question for p in load_problems(a.dataset, "test", a.test_path or None, a.prompts)]
    prompts = [build_prompt(tok, q) for q in questions]
    P = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).input_ids.shape[1]
    res = {"model": a.model, "device": device, "dtype": str(dtype).split(".")[-1], "sequences": len(prompts) * a.group,
           "max_new_tokens": a.max_new_tokens, "prompt_tokens_padded": P,
           "auto_batch_size": auto_batch_size(model, P, a.max_new_tokens, device), "runs": []}
    HFBackend(model, tok).warmup()
    variants = [(f"batch {b or 'auto'}", b, {}) for b in (int(x) for x in a.batch_sizes.split(","))]
    if a.static_cache:
        variants.append(("batch auto, static KV cache", 0, {"cache_implementation": "static"}))
    plain = model.generate
    for label, size, extra in variants:
        run = {"label": label, "batch_size": size or res["auto_batch_size"]}
        try:
            model.generate = functools.partial(plain, **extra) if extra else plain
            sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
            sync()
            t = time.perf_counter()
            r = HFBackend(model, tok, size).generate(prompts, a.group, a.max_new_tokens, seed=0)
            sync()
            secs = time.perf_counter() - t
            tokens = int(r.completion_mask.sum())
            run.update(seconds=secs, tokens=tokens, tokens_per_s=tokens / secs, status="ok")
        except Exception as err:
            run.update(status="failed", error=f"{type(err).__name__}: {' '.join(str(err).split())[:200]}")
        finally:
            model.generate = plain
        res["runs"].append(run)
        Path(a.json).write_text(json.dumps(res, indent=1))  # a run cut off keeps the variants it finished
        print(json.dumps(run), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=["objectives", "generation"])
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dataset", default="arithmetic")
    ap.add_argument("--data-path", default="")
    ap.add_argument("--test-path", default="")
    ap.add_argument("--algos", default="", help="comma list (default: every registry objective)")
    ap.add_argument("--prompts", type=int, default=2)
    ap.add_argument("--group", type=int, default=4)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--batch-sizes", default="64,256,0")
    ap.add_argument("--static-cache", action="store_true")
    ap.add_argument("--jsonl", default="objectives.jsonl")
    ap.add_argument("--json", default="generation.json")
    a = ap.parse_args()
    objectives(a) if a.part == "objectives" else generation(a)


if __name__ == "__main__":
    main()
