"""`llm generate`, `llm eval` and `llm bench` refuse, in one line naming the options, before anything is written:
an option that means nothing in the chosen mode (llm/config.ONLY_WHEN), a `--set` key given twice or beside its
own option or one the bench sets itself (llm/bench.parse_sets), and work over the declared token bounds
(llm/config.check_work); a legal combination still runs."""

import json

import pytest
from conftest import run_cli

TINY = ["--model", "tiny", "--max-new-tokens", "4"]
BENCH = ["llm", "bench", "--model", "tiny", "--steps", "1", "--warmup", "0", "--group-size", "2",
         "--prompts-per-step", "2", "--max-new-tokens", "4"]


def one_line(code, err, expected_code=2):
    lines = err.strip().splitlines()
    return code == expected_code and len(lines) == 1 and "Traceback" not in err


def files(folder):
    return sorted(p.relative_to(folder) for p in folder.rglob("*"))


def gsm8k_rows(folder, count):
    """A local GSM8K test file of `count` rows (the whole split of an `--n 0` evaluation)."""
    row = {"question": "What is 2 + 3?", "answer": "2 + 3 = 5\n#### 5"}
    path = folder / "big.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for _ in range(count)))
    return path


CASES = [
    # a key given twice through --set, and a field given by its option and by --set
    (BENCH + ["--set", "lora_r=4", "--set", "lora_r=8", "--json", "b.json"], ["--set", "lora_r", "twice"]),
    (BENCH + ["--set", "lora-r=4", "--set", "lora_r=8", "--json", "b.json"], ["--set", "lora_r", "twice"]),
    (BENCH + ["--set", "group_size=4", "--json", "b.json"], ["--group-size", "--set group_size"]),
    (BENCH + ["--threads", "1", "--set", "threads=2", "--json", "b.json"], ["--threads", "--set threads"]),
    (BENCH + ["--set", "steps=5", "--json", "b.json"], ["--set steps", "--warmup", "--steps"]),
    (BENCH + ["--set", "eval_n=8", "--json", "b.json"], ["--set eval_n"]),
    # an option that means nothing in the chosen mode (given at all, its default value included)
    (["llm", "generate", *TINY, "--greedy", "--temperature", "0.5", "hi"], ["--temperature", "--greedy"]),
    (["llm", "generate", *TINY, "--greedy", "--temperature", "1.0", "hi"], ["--temperature", "--greedy"]),
    (["llm", "generate", *TINY, "--greedy", "--seed", "3", "hi"], ["--seed", "--greedy"]),
    (["llm", "generate", *TINY, "--greedy", "--n", "4", "hi"], ["--n", "--greedy"]),
    (["llm", "eval", *TINY, "--dataset", "gsm8k", "--test-path", "d.jsonl", "--difficulty", "5"],
     ["--difficulty", "--dataset arithmetic"]),
    (["llm", "eval", *TINY, "--dataset", "math", "--test-path", "d.jsonl", "--seed", "1"],
     ["--seed", "--dataset arithmetic"]),
    (["llm", "eval", *TINY, "--n", "2", "--backend", "vllm", "--batch-size", "4"],
     ["--batch-size", "--backend transformers"]),
    (BENCH + ["--prompt-tokens", "8", "--json", "b.json"], ["--prompt-tokens", "--synthetic-rollouts"]),
    (BENCH + ["--synthetic-rollouts", "--dataset", "gsm8k", "--json", "b.json"], ["--dataset", "--synthetic-rollouts"]),
    (BENCH + ["--layers", "0", "--json", "b.json"], ["--layers", "--arch"]),
    (BENCH + ["--arch", "smollm2-135m", "--json", "b.json"], ["--arch", "--synthetic-rollouts"]),
    # work over the bound: prompts × n × max_new_tokens, problems × max_new_tokens
    (["llm", "generate", *TINY, "--n", "4096", *[f"q{i}" for i in range(2000)]],
     ["QUESTION", "--n", "--max-new-tokens", "2^20"]),
    (["llm", "generate", "--model", "tiny", "--n", "10000", "--max-new-tokens", "128", "hi"],
     ["QUESTION", "--n", "--max-new-tokens"]),
    (["llm", "eval", "--model", "tiny", "--n", "1000000", "--max-new-tokens", "32768"],
     ["--n", "--max-new-tokens", "2^22"]),
    (["llm", "eval", "--model", "tiny", "--dataset", "gsm8k", "--test-path", "BIG", "--n", "0",
      "--max-new-tokens", "32768"], ["--n 0", "--max-new-tokens", "2^22"]),
]


@pytest.mark.parametrize("args, names", CASES, ids=lambda x: " ".join(x)[-60:] if isinstance(x, list) and
                         "llm" in x else None)
def test_a_bad_combination_is_one_line_naming_the_options_and_writes_nothing(args, names, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if "BIG" in args:
        args = [str(gsm8k_rows(tmp_path, 200)) if a == "BIG" else a for a in args]
    before = files(tmp_path)
    code, out, err = run_cli(args)
    assert one_line(code, err), (code, err)
    assert all(name in err for name in names), err
    assert not out and files(tmp_path) == before


def test_legal_combinations_still_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(["llm", "generate", *TINY, "--greedy", "hi"])
    assert code == 0 and out.startswith("[0] log μ"), err
    code, out, err = run_cli(["llm", "generate", *TINY, "--n", "2", "--temperature", "0.5", "--seed", "1", "hi"])
    assert code == 0 and out.count("log μ") == 2, err
    code, out, err = run_cli(BENCH + ["--set", "lora_r=4", "--set", "lora_alpha=8", "--json", "b.json"])
    assert code == 0 and json.loads((tmp_path / "b.json").read_text())["config"]["lora_r"] == 4, err
