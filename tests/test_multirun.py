"""Several offline LoRA runs in one process (llm/multirun.py): each run learns exactly what it would learn alone,
the two evaluation modes agree, and the same on CUDA where there is one."""

import pytest
import torch

from banditlab.registry.objectives import parse_algo_args
from banditlab_llm.data import build_prompt
from banditlab_llm.generation import HFBackend
from banditlab_llm.models import load_model
from banditlab_llm.multirun import MultiRun, Offline, behaviour_logprobs, join_rollouts

QUESTIONS = ["What is 2 + 3?", "What is 7 * 6?", "Tom has 4 apples and eats 1. How many are left?"]


def offline(device="cpu", k=2):
    """π₀'s k samples of three questions (tiny model), with made-up ±1 rewards that differ within every group."""
    model, tok = load_model("tiny", torch.float32 if device == "cpu" else torch.bfloat16, device)
    r = HFBackend(model, tok, 16).generate([build_prompt(tok, q) for q in QUESTIONS], k, 6, seed=0)
    r = join_rollouts([r], tok.pad_token_id)
    rewards = torch.tensor([1.0, -1.0] * (len(QUESTIONS) * k // 2))
    return model, tok, Offline(r, rewards, behaviour_logprobs(model, r, 1.0, 4, device), k)


RUNS = [("AsymRE δV = −0.1", 0, parse_algo_args("asymre", ["offset=-0.1"])),
        ("TOPR", 0, parse_algo_args("topr", [])),
        ("AsymRE δV = −0.1", 1, parse_algo_args("asymre", ["offset=-0.1"]))]


def lora(mr, i):
    return [p.detach().clone() for p in mr.params(mr.runs[i])]


def test_each_run_learns_what_it_would_learn_alone():
    """Three adapters trained in lockstep end with the weights each reaches as the only run of its process: no
    gradient, optimizer state or batch leaks between runs."""
    model, tok, data = offline()
    together = MultiRun(model, tok, RUNS, data, "cpu", lr=1e-2, prompts_per_step=2)
    for _ in range(3):
        rows = together.train_step()
    assert [r["step"] for r in rows] == [3, 3, 3] and all(r["grad_norm"] > 0 for r in rows)
    for i, run in enumerate(RUNS):
        model, tok, data = offline()
        alone = MultiRun(model, tok, [run], data, "cpu", lr=1e-2, prompts_per_step=2)
        for _ in range(3):
            alone.train_step()
        assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(lora(together, i), lora(alone, 0)))
    # runs of one seed start equal and see the same batches; other seeds do not
    assert together.batch_rows(0, 5) != together.batch_rows(1, 5)
    assert sorted(together.batch_rows(0, 0) + together.batch_rows(0, 1))[:4] == [0, 1, 2, 3]


def test_mixed_and_sequential_evaluation_agree(device="cpu"):
    """One batch holding every run's copy of every prompt (peft's adapter_names) gives each run the greedy
    completions it gives alone."""
    model, tok, data = offline(device)
    mr = MultiRun(model, tok, RUNS, data, device, lr=5e-2, prompts_per_step=2)
    for _ in range(4):
        mr.train_step()
    prompts = [build_prompt(tok, q) for q in QUESTIONS]
    mixed, n1 = mr.greedy(prompts, 8, "mixed", 5)
    seq, n2 = mr.greedy(prompts, 8, "sequential", 5)
    assert mixed == seq and n1 == n2 > 0
    assert mixed[0] != mixed[1]  # the runs differ: the comparison is not vacuous
    probe = mr.time_eval_modes(prompts, 4, 16)
    assert {"mixed", "sequential"} <= set(probe)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_multirun_trains_and_evaluates_on_cuda():
    model, tok, data = offline("cuda")
    mr = MultiRun(model, tok, RUNS, data, "cuda", lr=5e-2, prompts_per_step=2)
    rows = [r for _ in range(3) for r in mr.train_step()]
    assert all(r["loss"] == r["loss"] and r["grad_norm"] == r["grad_norm"] for r in rows)
    texts, tokens = mr.greedy([build_prompt(tok, q) for q in QUESTIONS], 8, "mixed", 16)
    assert len(texts) == len(RUNS) and tokens > 0
