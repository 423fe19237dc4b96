"""A full disk in `llm train`: the adapter write (peft → safetensors) ends the run with the documented one line,
exit code 1, and `--resume` finishes the folder from its last checkpoint as if nothing had happened."""

import json

import torch

from banditlab.plumbing.folder import is_complete
from banditlab_llm.config import TIMING_KEYS
from conftest import run_cli as cli

LLM = ["llm", "train", "--model", "tiny", "--steps", "3", "--checkpoint-every", "1", "--group-size", "2",
       "--prompts-per-step", "2", "--max-new-tokens", "4", "--eval-n", "0", "--n-train", "6", "--threads", "1",
       "--no-progress"]
# what safetensors raises when the disk fills under it (its Rust io::Error, debug-printed)
FULL = 'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })'


def rows(out):
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING_KEYS}
            for line in (out / "metrics.jsonl").read_text().splitlines()]


def adapter(out):
    from safetensors.torch import load_file

    return load_file(out / "adapter" / "adapter_model.safetensors")


def test_a_full_disk_in_the_adapter_write_says_so_and_the_run_resumes(tmp_path, monkeypatch):
    import peft.peft_model
    from safetensors import SafetensorError

    straight = tmp_path / "straight"
    assert cli([*LLM, "--out", straight])[0] == 0
    out, calls = tmp_path / "run", []
    real = peft.peft_model.safe_save_file

    def fills_up(tensors, path, *a, **k):  # the adapter of step 2: the disk is full halfway through the file
        calls.append(path)
        if len(calls) == 2:
            with open(path, "wb") as f:
                f.write(b"\0" * 100)
            raise SafetensorError(FULL)
        return real(tensors, path, *a, **k)

    monkeypatch.setattr(peft.peft_model, "safe_save_file", fills_up)
    code, _, err = cli([*LLM, "--out", out])
    monkeypatch.undo()
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0] == (f"banditlab: error: the disk is full writing {out / 'adapter'}; free some space and run the "
                        "same command again (an unfinished run folder resumes; `llm train` with --resume)")
    assert not is_complete(out) and not (out / "adapter.tmp").exists()
    assert torch.load(out / "checkpoint.pt", weights_only=False)["step"] == 1  # the last good checkpoint
    assert adapter(out).keys() == adapter(straight).keys()  # step 1's adapter, whole

    code, text, err = cli([*LLM, "--out", out, "--resume"])
    assert code == 0 and is_complete(out) and f"{out}: resumed at step 1/3" in text, err
    assert rows(out) == rows(straight)
    a, b = adapter(out), adapter(straight)
    assert all(torch.equal(a[k], b[k]) for k in b)
    assert not (out / "adapter.tmp").exists()
