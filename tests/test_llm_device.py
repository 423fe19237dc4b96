"""Device placement of the LLM trainer: every objective on CUDA when there is one, and a CPU-only check that
would catch a tensor left on the host.

The CPU check emulates a second device. A `TorchFunctionMode` tags every tensor that is "on the device": the
model's parameters, the result of `.to(<device>)` / `.cuda()`, tensors made with `device=...`, and anything
computed from a tagged tensor. An op that mixes a tagged and an untagged tensor (other than 0-d scalars, which
CUDA accepts from the host) is exactly what raises "Expected all tensors to be on the same device" on a GPU.
"""

import pytest
import torch
from torch.overrides import TorchFunctionMode

from banditlab.registry.objectives import OBJECTIVES
from banditlab_llm.train import Trainer, TrainConfig

MOVES = {torch.Tensor.to, torch.Tensor.cuda}
FACTORIES = {torch.arange, torch.zeros, torch.ones, torch.full, torch.empty, torch.tensor, torch.as_tensor,
             torch.rand, torch.randn, torch.randint, torch.linspace, torch.eye}


def _tensors(obj, out):
    if isinstance(obj, torch.Tensor):
        out.append(obj)
    elif isinstance(obj, (list, tuple)):
        for x in obj:
            _tensors(x, out)
    elif isinstance(obj, dict):
        for x in obj.values():
            _tensors(x, out)
    return out


class ShadowDevice(TorchFunctionMode):
    """Tag tensors that would live on the accelerator; record ops that mix tagged and untagged tensors."""

    def __init__(self):
        super().__init__()
        self.mixed: list[str] = []

    @staticmethod
    def on(t: torch.Tensor) -> bool:
        return getattr(t, "_shadow_device", False)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        ins = [t for t in _tensors(list(args) + list(kwargs.values()), []) if t.dim() > 0]
        tagged = [self.on(t) for t in ins]
        if any(tagged) and not all(tagged):
            self.mixed.append(getattr(func, "__qualname__", str(func)))
        out = func(*args, **kwargs)
        moved = func in MOVES and (func is torch.Tensor.cuda or any(
            isinstance(a, (str, torch.device)) for a in list(args[1:]) + [kwargs.get("device")]))
        made = func in FACTORIES and kwargs.get("device") is not None
        if any(tagged) or moved or made:
            for t in _tensors(out, []):
                try:
                    t._shadow_device = True
                except (AttributeError, RuntimeError):
                    pass
        return out


def tiny(tmp_path, **kw):
    base = dict(model="tiny", dataset="arithmetic", n_train=8, eval_n=2, group_size=4, prompts_per_step=2,
                steps=2, max_new_tokens=6, lr=1e-2, out=str(tmp_path / "run"), checkpoint_every=100)
    return TrainConfig(**{**base, **kw})


CASES = [(a, (), {}) for a in OBJECTIVES] + [
    ("topr", ("ratio_level=token",), {"sync_interval": 2}),
    ("is", ("ratio_level=sequence-mean",), {"sync_interval": 2, "sync_offset": 1}),
    ("grpo", (), {"agg": "seq-mean-token-sum-norm", "micro_batch": 1}),
    ("red-drop", (), {"agg": "seq-mean-token-mean"}),
    ("topr", (), {"offline": True, "steps": 0, "epochs": 1, "n_train": 4}),
]
IDS = [f"{a}-{'-'.join(args) or 'default'}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for a, args, kw in CASES]


@pytest.mark.parametrize("algo,args,kw", CASES, ids=IDS)
def test_no_host_tensor_reaches_a_device_op(algo, args, kw, tmp_path):
    tr = Trainer(tiny(tmp_path, algo=algo, algo_args=list(args), **kw))
    for p in tr.model.parameters():
        p._shadow_device = True
    for v in tr.init_state.values():
        v._shadow_device = True
    mode = ShadowDevice()
    with mode:
        while tr.step < tr.total_steps:
            tr.train_step()
    assert mode.mixed == [], f"host and device tensors mixed in: {sorted(set(mode.mixed))}"


def test_the_shadow_device_catches_a_host_tensor():
    """The detector itself: a device tensor combined with a host tensor is reported, scalars are not."""
    mode = ShadowDevice()
    with mode:
        x = torch.ones(3).to("cpu")
        _ = x * torch.tensor(2.0)
        assert mode.mixed == []
        _ = x + torch.ones(3)
    assert mode.mixed


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
@pytest.mark.parametrize("algo,args,kw", CASES, ids=IDS)
def test_every_objective_trains_on_cuda(algo, args, kw, tmp_path):
    import json

    tr = Trainer(tiny(tmp_path, algo=algo, algo_args=list(args), device="cuda", **kw))
    out = tr.run()
    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 + tr.total_steps
    assert all(r["grad_norm"] == r["grad_norm"] for r in rows[1:])  # finite, not NaN
