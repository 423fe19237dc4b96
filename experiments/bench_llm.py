"""Benchmark: one on-policy GRPO step of our trainer against TRL's GRPOTrainer, side by side, alternating.

    pip install trl                                   # the `bench` extra; never part of `dev`
    python experiments/bench_llm.py --model smollm2 --prompts 2 --group 8 --max-new-tokens 32 --steps 3 --rounds 2
    python experiments/bench_llm.py --model smollm2 --vllm-only    # in the vllm venv: vLLM vs transformers generation

Both trainers get the same model, LoRA (r 8, α 16 on q/k/v/o), prompts (our arithmetic prompts, built once),
batch (prompts × G completions per step, all generated in one call), sampling (T = 1, no top-k / top-p),
learning rate and loss family (GRPO, group-std advantages, on-policy, no KL term: TRL beta = 0,
num_iterations = 1). Rounds alternate ours / TRL; the first step of every round is a warm-up and is not
timed. Reported per trainer: completions/s and completion tokens/s of whole steps (generation + grading +
forward/backward + optimizer), peak GPU memory on CUDA, and the ratio ours / TRL (> 1: we are faster).
`--vllm` (or `--vllm-only`) adds generation-only tokens/s of the vLLM backend against the transformers backend
on the same prompts. Threads are pinned for everything (`--threads`, default 1): on a loaded 2-core machine
torch's default 2 threads ran 4.5× slower. Wall clock on a shared machine: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import os
import time

import torch


def our_steps(a, prompts_n):
    """Seconds, completions and completion tokens of the timed steps of our trainer."""
    from banditlab_llm.train import Trainer, TrainConfig

    cfg = TrainConfig(model=a.model, dataset="arithmetic", n_train=prompts_n, eval_n=1, algo="grpo",
                      group_size=a.group, prompts_per_step=a.prompts, steps=a.steps + 1,
                      max_new_tokens=a.max_new_tokens, lr=a.lr, device=a.device, gen_batch_size=a.prompts * a.group,
                      out=f"/tmp/bench-llm-ours-{os.getpid()}")
    tr = Trainer(cfg, echo=lambda *_: None)
    tr.train_step()  # warm-up
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    secs = comps = toks = 0.0
    for _ in range(a.steps):
        t = time.perf_counter()
        logs = tr.train_step()
        secs += time.perf_counter() - t
        comps += a.prompts * a.group
        toks += logs["gen_tokens_per_s"] * logs["gen_seconds"]
    return secs, comps, toks, peak()


def trl_steps(a, prompts_n):
    """The same for TRL's GRPOTrainer (timed by a callback around each optimizer step)."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from banditlab_llm.data import build_prompt, load_problems
    from banditlab_llm.grading import Grader
    from banditlab_llm.models import load_model, resolve_device

    device, dtype = resolve_device(a.device, "auto")
    model, tok = load_model(a.model, dtype, device)
    problems = load_problems("arithmetic", "train", n=prompts_n)
    data = Dataset.from_list([{"prompt": build_prompt(tok, p.question), "answer": p.answer} for p in problems])
    grader = Grader("pm1")
    reward = lambda completions, answer, **_: [float(x) for x in grader(completions, answer)]

    class Clock(TrainerCallback):
        def __init__(self):
            self.times, self.t = [], None

        def on_step_begin(self, *args, **kw):
            self.t = time.perf_counter()

        def on_step_end(self, *args, **kw):
            self.times.append(time.perf_counter() - self.t)

    args = GRPOConfig(output_dir=f"/tmp/bench-llm-trl-{os.getpid()}", per_device_train_batch_size=a.prompts * a.group,
                      num_generations=a.group, max_completion_length=a.max_new_tokens, learning_rate=a.lr,
                      max_steps=a.steps + 1, beta=0.0, num_iterations=1, temperature=1.0, top_k=0,
                      lr_scheduler_type="constant",
                      logging_steps=1, save_strategy="no", report_to="none", use_cpu=device == "cpu",
                      bf16=device.startswith("cuda"), seed=0)
    clock = Clock()
    lora = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], task_type="CAUSAL_LM")
    trainer = GRPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=data, processing_class=tok,
                          peft_config=lora, callbacks=[clock])
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    grader.close()
    lengths = [h["completions/mean_length"] for h in trainer.state.log_history if "completions/mean_length" in h]
    secs = sum(clock.times[1:])
    comps = a.prompts * a.group * (len(clock.times) - 1)
    toks = sum(l * a.prompts * a.group for l in lengths[1:])
    return secs, comps, toks, peak()


def peak() -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")


def generation(a):
    """Generation-only tokens/s: the vLLM backend against the transformers backend, same prompts and budget."""
    from banditlab_llm.data import build_prompt, load_problems
    from banditlab_llm.generation import HFBackend
    from banditlab_llm.models import add_lora, load_model, model_folder, resolve_device
    from banditlab_llm.vllm_backend import VLLMBackend

    device, dtype = resolve_device(a.device, "float32" if a.device == "cpu" else "auto")
    model, tok = load_model(a.model, dtype, device)
    peft = add_lora(model)
    prompts = [build_prompt(tok, p.question) for p in load_problems("arithmetic", "train", n=a.prompts)]
    engine = VLLMBackend(model_folder(a.model), peft, tok, dtype=dtype, device=device, max_model_len=1024)
    hf = HFBackend(peft, tok, a.prompts * a.group)
    out = {"transformers": [0.0, 0], "vllm": [0.0, 0]}
    try:
        for r in range(a.rounds):
            for name, backend in (("transformers", hf), ("vllm", engine)):
                t = time.perf_counter()
                roll = backend.generate(prompts, a.group, a.max_new_tokens, seed=r)
                out[name][0] += time.perf_counter() - t
                out[name][1] += int(roll.completion_mask.sum())
    finally:
        engine.close()
    tps = {k: n / s for k, (s, n) in out.items()}
    print(f"generation, {a.prompts} prompts × {a.group} samples × ≤ {a.max_new_tokens} tokens, {a.rounds} round(s):")
    for k, v in tps.items():
        print(f"  {k:<13} {v:>10.1f} tokens/s")
    print(f"  vllm / transformers: {tps['vllm'] / tps['transformers']:.2f}×")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--prompts", type=int, default=2)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per round (after one warm-up step)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--vllm", action="store_true", help="also compare vLLM and transformers generation")
    ap.add_argument("--vllm-only", action="store_true", help="only the generation comparison")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    print(f"model {a.model}, {a.prompts} prompts × G = {a.group}, ≤ {a.max_new_tokens} new tokens, {a.steps} timed "
          f"steps × {a.rounds} rounds, torch {torch.__version__}, {torch.get_num_threads()} thread(s), device {a.device}")
    if not a.vllm_only:
        n = a.prompts * (a.steps + 1)
        total = {"ours": [0.0, 0.0, 0.0, float("nan")], "TRL": [0.0, 0.0, 0.0, float("nan")]}
        for _ in range(a.rounds):
            for name, fn in (("ours", our_steps), ("TRL", trl_steps)):
                s, c, k, m = fn(a, n)
                t = total[name]
                t[0], t[1], t[2], t[3] = t[0] + s, t[1] + c, t[2] + k, m
        print(f"{'trainer':<8} {'completions/s':>14} {'tokens/s':>10} {'peak GPU GB':>12}")
        rate = {}
        for name, (s, c, k, m) in total.items():
            rate[name] = (c / s, k / s)
            print(f"{name:<8} {c / s:>14.2f} {k / s:>10.1f} {m:>12.2f}")
        print(f"ours / TRL: {rate['ours'][0] / rate['TRL'][0]:.2f}× completions/s, "
              f"{rate['ours'][1] / rate['TRL'][1]:.2f}× tokens/s")
    if a.vllm or a.vllm_only:
        generation(a)


if __name__ == "__main__":
    main()
