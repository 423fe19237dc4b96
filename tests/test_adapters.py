"""A loaded adapter is proved to load: `models.check_adapter` reads the adapter's config and the names and
shapes of its tensors (the safetensors header, no tensor loaded) and refuses, in one line naming the adapter,
before peft allocates anything: a rank or scale outside `--lora-r`'s and `--lora-alpha`'s declared ranges (r = 2^22
made peft allocate gigabytes), a LoRA feature the tool does not write (DoRA, trained biases, ...), target modules
that match no layer, and weights that miss some LoRA module's tensors, hold tensors no module takes, have other
shapes or are not floating point; after loading, weights that are not finite. A good adapter still loads."""

import json
import shutil

import pytest
import torch

from test_safety import cli, llm_run, one_line  # noqa: F401  (llm_run: the module's fixture)


def variant(llm_run, tmp_path, config=None, tensors=None):
    """A copy of a finished tiny run's adapter with its config edited (`config(dict)`) and/or its tensors
    replaced (`tensors(dict) -> dict`)."""
    from safetensors.torch import load_file, save_file

    d = tmp_path / "adapter"
    shutil.copytree(llm_run / "run" / "adapter", d)
    if config:
        c = json.loads((d / "adapter_config.json").read_text())
        config(c)
        (d / "adapter_config.json").write_text(json.dumps(c))
    if tensors:
        f = d / "adapter_model.safetensors"
        save_file(tensors(load_file(str(f))), str(f))
    return d


def drop(word):
    return lambda s: {k: v for k, v in s.items() if word not in k}


CASES = {
    "rank 2^22": (dict(config=lambda c: c.update(r=2**22)), "outside --lora-r's range"),
    "rank as text": (dict(config=lambda c: c.update(r="8")), "outside --lora-r's range"),
    "DoRA": (dict(config=lambda c: c.update(use_dora=True)), "does not load"),
    "not LoRA": (dict(config=lambda c: c.update(peft_type="IA3")), "not a LoRA adapter"),
    "no target matches": (dict(config=lambda c: c.update(target_modules=["nothing"])), "match no layer"),
    "some modules missing": (dict(tensors=drop("q_proj")), "lacks 4 of the 16"),
    "empty weights": (dict(tensors=lambda s: {}), "lacks 16 of the 16"),
    "names of no module": (dict(tensors=lambda s: {k.replace("self_attn", "attn"): v for k, v in s.items()}),
                           "lacks 16 of the 16"),
    "an extra tensor": (dict(tensors=lambda s: {**s, "base_model.model.lm_head.lora_A.weight": next(iter(s.values())).clone()}),
                        "match no LoRA module"),
    "another rank in the weights": (dict(config=lambda c: c.update(r=4)), "has shape"),
    "alpha 1e300": (dict(config=lambda c: c.update(lora_alpha=1e300)), "outside --lora-alpha's range"),
    "biases trained": (dict(config=lambda c: c.update(bias="all")), "'bias'"),
    "int8 tensors": (dict(tensors=lambda s: {k: v.to(torch.int8) for k, v in s.items()}), "not a floating-point"),
    "NaN weights": (dict(tensors=lambda s: {k: torch.full_like(v, float("nan")) for k, v in s.items()}),
                    "not finite"),
}


@pytest.mark.parametrize("case", CASES)
def test_an_adapter_that_would_not_load_as_written_is_refused_in_one_line(case, llm_run, tmp_path):
    how, words = CASES[case]
    adapter = variant(llm_run, tmp_path, **how)
    code, _, err = cli(["llm", "eval", "--model", "tiny", "--max-new-tokens", "2", "--n", "1", "--adapter", adapter])
    assert one_line(code, err) and "--adapter" in err and words in err, err


def test_a_good_adapter_loads(llm_run, tmp_path):
    adapter = variant(llm_run, tmp_path)
    code, out, err = cli(["llm", "eval", "--model", "tiny", "--max-new-tokens", "2", "--n", "1", "--adapter", adapter])
    assert code == 0 and "pass@1" in out, err
