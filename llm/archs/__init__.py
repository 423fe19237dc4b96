"""Named architectures with random weights, built from the published config.json files shipped beside this file.

    arch:llama-3.1-8b   arch:llama-3-8b   arch:qwen2.5-1.5b   arch:smollm2-135m   (model specs of `load_model`)
    arch:qwen2.5-1.5b:layers=2                                                       (scaled down: fewer layers)

For memory and speed measurements without a download (`banditlab llm bench --arch NAME`): the shapes are the real
models' (hidden size, layers, heads, KV heads, intermediate size, vocabulary, RoPE settings); the weights are a
random initialisation, so generated text is nonsense. The tokenizer is the tiny model's character-level one, which
only writes prompts: benchmarks of these models train on synthetic token ids (`--synthetic-rollouts`).
`layers=N` keeps every width and drops layers, so per-layer costs stay the real model's.
"""

from __future__ import annotations

from pathlib import Path

import torch

from banditlab.plumbing.safeio import read_json

from ..tiny import tiny_tokenizer

HERE = Path(__file__).parent


def names() -> list[str]:
    return sorted(p.stem for p in HERE.glob("*.json"))


def parse(spec: str) -> tuple[str, int]:
    """('qwen2.5-1.5b', layers or 0) from 'qwen2.5-1.5b[:layers=N]'; ValueError naming the problem."""
    name, _, rest = spec.partition(":")
    if name not in names():
        raise ValueError(f"unknown architecture {name!r}; expected one of {', '.join(names())}")
    layers = 0
    if rest:
        key, _, value = rest.partition("=")
        if key != "layers" or not value.isdigit() or int(value) < 1:
            raise ValueError(f"architecture {spec!r}: expected NAME or NAME:layers=N with N ≥ 1")
        layers = int(value)
    return name, layers


def config(name: str, layers: int = 0):
    """The transformers config of a named architecture (published values; `layers` > 0 overrides the depth)."""
    from transformers import AutoConfig

    d = {k: v for k, v in read_json(HERE / f"{name}.json", "--arch").items() if not k.startswith("_")}
    d.pop("architectures", None)
    if layers:
        d["num_hidden_layers"] = layers
        if "max_window_layers" in d:
            d["max_window_layers"] = min(d["max_window_layers"], layers)
    return AutoConfig.for_model(**d)


def build(spec: str, dtype: torch.dtype = torch.float32, device: str = "cpu", seed: int = 0):
    """(model with random weights, tiny tokenizer) for 'NAME[:layers=N]', built directly on `device` in `dtype`
    (an 8B model never passes through CPU memory)."""
    from transformers import AutoModelForCausalLM

    name, layers = parse(spec)
    cfg = config(name, layers)
    with torch.random.fork_rng(devices=[]), torch.device(device):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    tok = tiny_tokenizer()
    model.config.pad_token_id = tok.pad_token_id
    return model, tok
