"""llm/memory.py's estimate of one training step's memory agrees with what `banditlab llm bench` measures on the
CPU: a named architecture (every width of SmolLM2-135M, 49,152-token vocabulary) with one layer, one real trainer
step, peak resident size above the size after loading."""

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("peft")

spec = importlib.util.spec_from_file_location(
    "llm_memory", Path(__file__).resolve().parents[1] / "experiments" / "llm_memory.py")
llm_memory = importlib.util.module_from_spec(spec)
spec.loader.exec_module(llm_memory)


@pytest.mark.slow
def test_llm_bench_step_memory_is_within_25_percent_of_the_estimate():
    """4 sequences × (16 + 64) tokens: three float32 [chunk, V] logit tensors dominate (144 of 162 MB estimated;
    171 MB measured): an estimate that missed one of them (114 MB) would be outside ±25 %."""
    c = llm_memory.bench_case("smollm2-135m", 1, 4, 16, 64, "off")
    assert 0.75 <= c["ratio"] <= 1.25, c
