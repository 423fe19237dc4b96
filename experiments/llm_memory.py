"""GPU memory of the paper configs in experiments/llm/ on one 80 GB GPU, and a CPU check of the estimate.

    python experiments/llm_memory.py [--gpu-gb 80]     # the paper configs' table (docs/memory.md; also --gpu-gb 40)
    python experiments/llm_memory.py --measure         # estimate vs measured peak on CPU (minutes)
    python experiments/llm_memory.py --against-bench   # estimate vs `banditlab llm bench` on CPU (minutes)

The estimate is llm/memory.py's (formula in its docstring): per process, LoRA training with bf16 weights and a
float32 adapter, gradient checkpointing on and log-probs computed one chunk of tokens at a time. Peak = weights +
LoRA state + vLLM's share + one micro-batch's training memory (activations + head + logits + backward); with
`--backend vllm` the engine reserves `gpu_memory_utilization` = 0.3 of the device for its own weights and KV cache,
so the trainer gets the other 70 %. A micro-batch is `--micro-batch` sequences × (prompt + max_new_tokens) tokens,
prompts taken as PROMPT_TOKENS = 256; it may hold part of a prompt's group (the trainer computes group statistics
over the whole batch first), so the smallest is one sequence. The model shapes are the three models' published
configs. No GPU has run these configs: every row is a prediction.

`--measure` checks the formula where it can run: a Llama with the 8B models' shape ratios scaled down (hidden 512,
ff 1792, 4 heads of 128, 1 KV head; 4 layers with the full 128,256-token vocabulary, and 8 layers with a
32,000-token one, where the activations weigh more), random weights, float32 on the CPU, LoRA r 8 on q/k/v/o. Each
case runs in a fresh process; its peak is the resident set size sampled every 0.2 ms during one forward + backward
of Σ w · log π, minus the resident size just before (glibc told to return freed blocks ≥ 64 kB at once, so that the
resident size follows live tensors). Cases: the unchunked full-logits formula (the [N, T, V] float32 logits, for
comparison), chunked log-probs, and chunked + checkpointing.

`--against-bench` checks it through the trainer itself: `banditlab llm bench --arch NAME --layers N
--synthetic-rollouts` (every width of the named architecture, fewer layers) runs one real training step on the CPU,
and the step's peak resident size above the size after loading is compared with the estimate (`bench_case`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from banditlab_llm.memory import PROMPT_TOKENS, Shape, lora_param_count, training_bytes  # noqa: E402

MODELS = {  # layers, hidden, intermediate, heads, kv_heads, vocab, parameters (published configs)
    "meta-llama/Llama-3.1-8B-Instruct": Shape(32, 4096, 14336, 32, 8, 128256, 8.03e9),
    "meta-llama/Meta-Llama-3-8B-Instruct": Shape(32, 4096, 14336, 32, 8, 128256, 8.03e9),
    "Qwen/Qwen2.5-1.5B-Instruct": Shape(28, 1536, 8960, 12, 2, 151936, 1.54e9),
}
VLLM_SHARE = 0.3
GB = 2**30
TRAIN_PARTS = ("activations", "head", "logits", "backward")


def paper_row(cfg: dict, gpu_gb: float) -> dict:
    """Memory of one paper config: fixed parts, per sequence of a micro-batch, the largest micro-batch that fits
    (in sequences), and the peak at the config's micro-batch, or at the largest that fits when it does not."""
    shape = MODELS[cfg["model"]]
    targets = cfg.get("lora_targets", "q_proj,k_proj,v_proj,o_proj").split(",")
    G, S = cfg["group_size"], PROMPT_TOKENS + cfg["max_new_tokens"]
    part = lambda seqs: training_bytes(shape, cfg["lora_r"], targets, seqs, S, cfg["max_new_tokens"], True)
    one = part(1)
    vllm = VLLM_SHARE * gpu_gb * GB if cfg.get("backend") == "vllm" else 0.0
    fixed = one["weights"] + one["lora"] + vllm
    peak = lambda seqs: fixed + sum(part(seqs)[k] for k in TRAIN_PARTS)
    fit = 0
    while fit < cfg["prompts_per_step"] * G and peak(fit + 1) <= gpu_gb * GB:
        fit += 1
    mb = cfg.get("micro_batch", 0) or cfg["prompts_per_step"] * G
    run = mb if mb <= fit else fit
    return {"G": G, "S": S, "weights": one["weights"] / GB, "lora": one["lora"] / GB, "vllm": vllm / GB,
            "per_seq": (peak(2) - peak(1)) / GB, "fit": fit, "micro_batch": mb, "run": run,
            "peak": peak(run) / GB if run else float("nan")}


def table(gpu_gb: float) -> None:
    print(f"| config | G × tokens | weights | LoRA state | vLLM | per sequence in a micro-batch | largest micro-batch "
          f"on {gpu_gb:g} GB | config's micro-batch | micro-batch to run | predicted peak | measured on GPU |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for f in sorted((Path(__file__).parent / "llm").glob("*.toml")):
        cfg = tomllib.loads(f.read_text())
        cfg = cfg.get("train", cfg)
        r = paper_row(cfg, gpu_gb)
        below = " (below a group)" if 0 < r["run"] < r["G"] else ""
        run, peak = (f"{r['run']}{below}", f"{r['peak']:.1f} GB") if r["run"] else ("does not fit", "–")
        print(f"| `{f.stem}` | {r['G']} × {r['S']} | {r['weights']:.1f} GB | {r['lora']:.2f} GB | {r['vllm']:.0f} GB | "
              f"{r['per_seq']:.2f} GB | {r['fit']} sequences | {r['micro_batch']} | {run} | {peak} | not yet |")


# ------------------------------------------------------------------------------------------ the CPU check
SMALL = dict(hidden=512, ff=1792, heads=4, kv_heads=1)
SEQS, PROMPT, COMPLETION = 4, 128, 256
CASES = [  # name, vocabulary, layers, log-prob path, checkpointing
    ("full logits (unchunked formula)", 128256, 4, "full", False),
    ("chunked", 128256, 4, "chunked", False),
    ("chunked + checkpointing", 128256, 4, "chunked", True),
    ("chunked", 32000, 8, "chunked", False),
    ("chunked + checkpointing", 32000, 8, "chunked", True),
]


def full_logits_logprobs(model, ids, att, T):
    """The unchunked formula, for comparison: float32 log-softmax over the whole [N, T, V] logits."""
    import torch

    pos = (att.cumsum(-1) - 1).clamp_min(0)
    logits = model(input_ids=ids, attention_mask=att, position_ids=pos, logits_to_keep=T + 1).logits
    logp_all = torch.log_softmax(logits[:, :-1].float(), -1)
    logp = logp_all.gather(-1, ids[:, -T:, None])[..., 0]
    with torch.no_grad():
        ent = -(logp_all.exp() * logp_all).sum(-1)
    return logp, ent


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure_case(vocab: int, layers: int, path: str, ckpt: bool) -> dict:
    """Peak resident bytes above the start of one forward + backward (runs in its own process)."""
    import threading

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from banditlab_llm.generation import token_logprobs
    from banditlab_llm.models import add_lora, enable_checkpointing

    torch.set_num_threads(1)
    s = SMALL
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=s["hidden"], intermediate_size=s["ff"],
                      num_hidden_layers=layers, num_attention_heads=s["heads"], num_key_value_heads=s["kv_heads"],
                      max_position_embeddings=2048, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = add_lora(LlamaForCausalLM(cfg)).train()
    if ckpt:
        enable_checkpointing(model)
    ids = torch.randint(0, vocab, (SEQS, PROMPT + COMPLETION))
    att = torch.ones_like(ids)
    w = torch.randn(SEQS, COMPLETION)
    peak, done = [0], threading.Event()

    def poll():
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            done.wait(0.0002)

    start = rss()
    t = threading.Thread(target=poll)
    t.start()
    logp = (full_logits_logprobs(model, ids, att, COMPLETION) if path == "full"
            else token_logprobs(model, ids, att, COMPLETION, entropy=True))[0]
    (logp * w).sum().backward()
    done.set()
    t.join()
    return {"peak": max(peak[0], rss()) - start}


def measure() -> None:
    targets = ["q_proj", "k_proj", "v_proj", "o_proj"]
    print(f"Llama {SMALL}, float32 on CPU, LoRA r 8 on q/k/v/o; {SEQS} sequences × ({PROMPT} prompt + {COMPLETION} "
          f"completion) tokens; one forward + backward\n")
    print("| case | vocabulary | layers | estimate (MB) | measured peak (MB) | measured / estimate |")
    print("|---|---:|---:|---:|---:|---:|")
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1"}
    for name, vocab, layers, path, ckpt in CASES:
        out = subprocess.run([sys.executable, __file__, "--case", json.dumps([vocab, layers, path, ckpt])], env=env,
                             capture_output=True, text=True, check=True).stdout
        got = json.loads(out.strip().splitlines()[-1])["peak"] / 2**20
        est = "–"
        if path == "chunked":
            shape = Shape(layers=layers, vocab=vocab, params=0, **SMALL)
            parts = training_bytes(shape, 8, targets, SEQS, PROMPT + COMPLETION, COMPLETION, ckpt, b=4, a=4)
            est = sum(parts[k] for k in TRAIN_PARTS) / 2**20
        ratio = f"{got / est:.2f}" if est != "–" else "–"
        print(f"| {name} | {vocab} | {layers} | {est if est == '–' else f'{est:.0f}'} | {got:.0f} | {ratio} |",
              flush=True)


# ------------------------------------------------------------------------------------------ against `llm bench`
BENCH_CASES = [  # arch, layers kept, sequences (one prompt's group), prompt tokens, completion tokens, checkpointing
    ("qwen2.5-1.5b", 2, 4, 64, 128, "off"),
    ("qwen2.5-1.5b", 2, 4, 64, 128, "on"),
    ("smollm2-135m", 4, 8, 32, 96, "off"),
]


def arch_shape(arch: str, layers: int) -> Shape:
    """The Shape of a named architecture (llm/archs/NAME.json) with `layers` decoder layers."""
    c = json.loads((Path(__file__).resolve().parents[1] / "llm" / "archs" / f"{arch}.json").read_text())
    return Shape(layers, c["hidden_size"], c["intermediate_size"], c["num_attention_heads"],
                 c.get("num_key_value_heads") or c["num_attention_heads"], c["vocab_size"], 0, c.get("head_dim") or 0)


def bench_case(arch: str, layers: int, seqs: int, prompt: int, completion: int, ckpt: str, r: int = 8) -> dict:
    """One `banditlab llm bench --arch ARCH --layers N --synthetic-rollouts` training step on the CPU in float32
    (a fresh process, glibc told to return freed blocks ≥ 64 kB at once), against the estimate.
    measured = the process's peak resident size (VmHWM) − its resident size after loading the model, adapter
    and optimizer (both reported by `llm bench`): the step's own memory, the weights subtracted.
    estimate = the training parts of `training_bytes` (float32: b = a = 4) + 12 bytes per LoRA parameter (its
    gradient and two AdamW moments, created by the first step)."""
    import tempfile

    root = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH", "")]))
    env = {**os.environ, "PYTHONPATH": path, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1",
           "HF_HUB_OFFLINE": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "banditlab", "llm", "bench", "--arch", arch, "--layers", str(layers),
               "--synthetic-rollouts", "--prompt-tokens", str(prompt), "--max-new-tokens", str(completion),
               "--group-size", str(seqs), "--prompts-per-step", "1", "--warmup", "0", "--steps", "1",
               "--device", "cpu", "--dtype", "float32", "--set", f"lora_r={r}", "--set",
               f"grad_checkpointing={ckpt}", "--set", f"out='{tmp}/run'", "--json", f"{tmp}/bench.json"]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"llm bench exited {done.returncode}: {done.stderr.strip()[-500:]}")
        res = json.loads(Path(f"{tmp}/bench.json").read_text())
    measured = (res["peak_memory"]["cpu_peak_rss_gb"] - res["after_load"]["cpu_rss_after_load_gb"]) * GB
    targets = ["q_proj", "k_proj", "v_proj", "o_proj"]
    shape = arch_shape(arch, layers)
    parts = training_bytes(shape, r, targets, seqs, prompt + completion, completion, ckpt == "on", b=4, a=4)
    estimate = sum(parts[k] for k in TRAIN_PARTS) + 12 * lora_param_count(shape, r, targets)
    return {"arch": arch, "layers": layers, "seqs": seqs, "prompt": prompt, "completion": completion,
            "checkpointing": ckpt, "measured_mb": measured / 2**20, "estimate_mb": estimate / 2**20,
            "ratio": measured / estimate, "after_load_mb": res["after_load"]["cpu_rss_after_load_gb"] * 1024,
            "seconds_per_step": res["seconds_per_step"]}


def against_bench() -> None:
    print("`banditlab llm bench --synthetic-rollouts`, float32 on CPU, LoRA r 8 on q/k/v/o, one step, 1 thread; "
          "measured = peak RSS − RSS after loading\n")
    print("| architecture | layers | sequences × (prompt + completion) | checkpointing | RSS after load (MB) | "
          "estimate (MB) | measured (MB) | measured / estimate |")
    print("|---|---:|---|---|---:|---:|---:|---:|")
    for case in BENCH_CASES:
        c = bench_case(*case)
        print(f"| {c['arch']} | {c['layers']} | {c['seqs']} × ({c['prompt']} + {c['completion']}) | "
              f"{c['checkpointing']} | {c['after_load_mb']:.0f} | {c['estimate_mb']:.0f} | {c['measured_mb']:.0f} | "
              f"{c['ratio']:.2f} |", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpu-gb", type=float, default=80.0)
    ap.add_argument("--measure", action="store_true", help="estimate vs measured peak on CPU, scaled-down Llama")
    ap.add_argument("--against-bench", action="store_true",
                    help="estimate vs `banditlab llm bench` on CPU, named architectures with fewer layers")
    ap.add_argument("--case", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.case:
        print(json.dumps(measure_case(*json.loads(a.case))))
    elif a.measure:
        measure()
    elif a.against_bench:
        against_bench()
    else:
        table(a.gpu_gb)


if __name__ == "__main__":
    main()
