"""Memory savers of the LoRA trainer: chunked log-probs and gradient checkpointing change memory, never the numbers."""

import pytest
import torch

from banditlab.cli.app import main
from banditlab_llm.logprobs import token_logprobs
from banditlab_llm.models import add_lora, enable_checkpointing, lora_params, tiny_llama


def lora_tiny(seed=0):
    """The tiny Llama with a LoRA adapter whose B is non-zero (so the adapter changes the logits)."""
    model, _ = tiny_llama(seed)
    torch.manual_seed(seed)
    model = add_lora(model)
    with torch.no_grad():
        for n, p in lora_params(model).items():
            if "lora_B" in n:
                p.normal_(std=0.1)
    return model.train()


def batch(seed=0, n=3, length=12, padded=3):
    """Token ids over the tiny vocabulary, the first row left-padded like a real prompt batch."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, 98, (n, length), generator=g)
    att = torch.ones_like(ids)
    att[0, :padded] = 0
    return ids, att


def full_logits_reference(model, ids, att, T, temperature):
    """The definition: log_softmax over the full [N, T, V] float32 logits of the model's own forward."""
    pos = (att.cumsum(-1) - 1).clamp_min(0)
    logits = model(input_ids=ids, attention_mask=att, position_ids=pos).logits[:, -(T + 1):-1].float() / temperature
    logp_all = torch.log_softmax(logits, -1)
    return logp_all.gather(-1, ids[:, -T:, None])[..., 0], -(logp_all.exp() * logp_all).sum(-1)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("chunk", [0, 1, 5])
def test_chunked_logprobs_entropies_and_gradients_equal_the_full_logits(temperature, chunk):
    model, (ids, att), T = lora_tiny(), batch(), 7
    weights = torch.randn(3, T, generator=torch.Generator().manual_seed(1))
    params = list(lora_params(model).values())
    ref_logp, ref_ent = full_logits_reference(model, ids, att, T, temperature)
    logp, ent = token_logprobs(model, ids, att, T, temperature, entropy=True, chunk_tokens=chunk)
    assert torch.allclose(logp, ref_logp, atol=1e-5) and torch.allclose(ent, ref_ent, atol=1e-5)
    assert not ent.requires_grad and ent.min() > 0
    ref_grad = torch.autograd.grad((ref_logp * weights).sum(), params)
    grad = torch.autograd.grad((logp * weights).sum(), params)
    assert all(torch.allclose(a, b, atol=1e-6, rtol=1e-5) for a, b in zip(grad, ref_grad))
    assert max(float(g.abs().max()) for g in grad) > 1e-3  # the gradient is not trivially zero
    with torch.no_grad():  # the behaviour forward: same function, same values, no graph
        assert torch.equal(token_logprobs(model, ids, att, T, temperature, chunk_tokens=chunk), logp.detach())


def counted(fn, calls, key):
    def wrapper(*args, **kw):
        calls[key] += 1
        return fn(*args, **kw)
    return wrapper


def test_gradient_checkpointing_recomputes_layers_and_gives_the_same_lora_gradients():
    ids, att = batch()
    weights = torch.randn(3, 7, generator=torch.Generator().manual_seed(1))
    grads, calls = {}, {}
    for ckpt in (False, True):
        model = lora_tiny()
        if ckpt:
            enable_checkpointing(model)
        layers = model.get_base_model().model.layers
        calls[ckpt] = 0
        for layer in layers:  # count the MLP's forward calls (module hooks do not run in the recompute)
            layer.mlp.forward = counted(layer.mlp.forward, calls, ckpt)
        (token_logprobs(model, ids, att, 7) * weights).sum().backward()
        assert [n for n, p in model.named_parameters() if p.grad is not None and "lora_" not in n] == []
        assert all(not p.requires_grad for n, p in model.named_parameters() if "lora_" not in n)
        grads[ckpt] = {n: p.grad for n, p in lora_params(model).items()}
    assert calls == {False: len(layers), True: 2 * len(layers)}  # checkpointed: each MLP runs again in backward
    assert all(torch.allclose(grads[True][n], g, atol=1e-6, rtol=1e-5) for n, g in grads[False].items())
    assert max(float(g.abs().max()) for g in grads[False].values()) > 1e-3


def test_a_trainer_step_moves_lora_identically_with_and_without_checkpointing(tmp_path):
    from banditlab_llm.train import Trainer, TrainConfig

    moved = []
    for mode in ("off", "on"):
        cfg = TrainConfig(model="tiny", dataset="arithmetic", n_train=8, eval_n=0, group_size=4, prompts_per_step=2,
                          steps=1, max_new_tokens=8, algo="grpo", grad_checkpointing=mode, out=str(tmp_path / mode))
        tr = Trainer(cfg, echo=lambda *_: None)
        layer = tr.model.get_base_model().model.layers[0]
        assert layer.gradient_checkpointing == (mode == "on")
        idx = tr.batch_indices(0)  # the same rollouts and mixed rewards in both runs
        r = tr.backend.generate([tr.prompts[i] for i in idx], 4, 8, seed=0, state=tr.behaviour)
        rewards = torch.tensor([1.0, -1, -1, 1, -1, 1, 1, -1])
        tr.rollouts = lambda _: (r, rewards, [bool(x > 0) for x in rewards], tr._groups(2))
        before = [p.detach().clone() for p in lora_params(tr.model).values()]
        tr.train_step()
        moved.append([p.detach() - b for p, b in zip(lora_params(tr.model).values(), before)])
    assert all(torch.allclose(a, b, atol=1e-7, rtol=1e-5) for a, b in zip(*moved))
    assert any(a.abs().max() > 1e-6 for a in moved[0])


def test_bad_grad_checkpointing_value_is_one_line_exit_2(capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        main(["llm", "train", "--out", str(tmp_path / "x"), "--grad-checkpointing", "yes"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1 and "--grad-checkpointing" in err
    assert not (tmp_path / "x").exists()


def test_estimated_lora_parameter_count_is_peft_s():
    from banditlab_llm.memory import Shape, lora_param_count

    targets = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
    base, _ = tiny_llama()
    shape = Shape.of(base.config, sum(p.numel() for p in base.parameters()))
    model = add_lora(base, r=4, targets=targets)
    assert lora_param_count(shape, 4, targets.split(",")) == sum(p.numel() for p in lora_params(model).values())


def test_docs_memory_tables_are_what_the_estimate_prints(capsys):
    """docs/memory.md's paper-config tables (80 and 40 GB) are experiments/llm_memory.py's output, and at 40 GB the
    AsymRE 8B config runs with a micro-batch below its group, the case the sequence-level micro-batch exists for."""
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("llm_memory", root / "experiments" / "llm_memory.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    docs = (root / "docs" / "memory.md").read_text()
    for gb in (80, 40):
        mod.table(gb)
        assert capsys.readouterr().out.strip() in docs
    cfg = {"model": "meta-llama/Llama-3.1-8B-Instruct", "group_size": 8, "prompts_per_step": 16,
           "max_new_tokens": 2048, "lora_r": 64, "micro_batch": 16, "backend": "vllm",
           "lora_targets": "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"}
    big, small = mod.paper_row(cfg, 80), mod.paper_row(cfg, 40)
    assert big["run"] == 16 and 0 < small["run"] == small["fit"] < 8 and small["peak"] <= 40
