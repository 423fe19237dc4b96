"""Problems for LLM training: GSM8K, MATH, and a synthetic arithmetic task for CPU experiments.

A `Problem` is a question and a gold final answer (a string math-verify can parse). Sources:
    gsm8k       hub `openai/gsm8k` (config main), or a local JSONL with `question` and `answer` ending in `#### N`
    math        hub `HuggingFaceH4/MATH-500` (test) or `DigitalLearningGmbH/MATH-lighteval` (train), or a local
                JSONL with `problem` and `answer` (or `solution` with a \\boxed{} answer)
    arithmetic  generated in code: sums and products of random integers, `difficulty` = number of operands
Prompts use the tokenizer's chat template when it has one and ask for the final answer in \\boxed{}.
Local files must be regular UTF-8 JSONL files under 64 MiB; each row holds only the dataset's known fields
(`FIELDS`), with text where text is expected (a boolean is not an answer). Questions longer than
`MAX_QUESTION_CHARS` are refused with their row number (the longest GSM8K question is under 1,000 characters,
the longest MATH-500 problem under 2,000): one huge prompt would otherwise stall a step for minutes.
Hub loading needs the `datasets` package and network access; tests use the local copies in ../shared/data.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

INSTRUCTION = "Solve the problem step by step, then give the final answer in \\boxed{}."
MAX_QUESTION_CHARS = 16_384
FIELDS = {"gsm8k": {"question", "answer", "id"},
          "math": {"problem", "answer", "solution", "unique_id", "id", "subject", "level", "type"}}


class DataError(ValueError):
    """A missing or malformed dataset file; the message names the file and line."""


@dataclass(frozen=True)
class Problem:
    id: str
    question: str
    answer: str


def gsm8k_gold(solution: str) -> str:
    """The final answer of a GSM8K worked solution: the text after '####', without thousands separators."""
    if "####" not in solution:
        raise DataError("GSM8K answer has no '#### N' final line")
    gold = solution.split("####")[-1].strip().replace(",", "")
    if not gold:
        raise DataError("GSM8K answer's '####' line is empty")
    return gold


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (or \\fbox{...}) in text, with nested braces; None if absent or unclosed."""
    for tag in ("\\boxed", "\\fbox"):
        start = text.rfind(tag + "{")
        if start >= 0:
            i, depth = start + len(tag) + 1, 1
            for j in range(i, len(text)):
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                if depth == 0:
                    return text[i:j]
            return None
    return None


def read_jsonl(path: str | Path, option: str = "--data-path") -> list[dict]:
    """The rows of a JSON-lines file, each through the one strict JSON reader (`safeio.parse_json`: NaN,
    overflowing numbers, repeated keys and text that is not UTF-8 are refused, naming the file and line)."""
    from banditlab.errors import UsageError
    from banditlab.plumbing.safeio import read_json_lines

    try:
        rows = list(enumerate(read_json_lines(path, option), 1))
    except UsageError as err:
        raise DataError(str(err)) from None
    for n, row in rows:
        if not isinstance(row, dict):
            raise DataError(f"{option}: {path} line {n} is not a JSON object")
    if not rows:
        raise DataError(f"{option}: {path} holds no rows")
    return [row for _, row in rows]


def _from_rows(rows: list[dict], dataset: str, where: str) -> list[Problem]:
    out = []
    for n, row in enumerate(rows, 1):
        try:
            unknown = sorted(set(row) - FIELDS[dataset])
            if unknown:
                raise DataError(f"unknown field {unknown[0]!r} (a {dataset} row holds "
                                f"{', '.join(sorted(FIELDS[dataset]))})")
            text = row["question"] if dataset == "gsm8k" else row["problem"]
            if not isinstance(text, str) or not text.strip():
                raise DataError(f"the {'question' if dataset == 'gsm8k' else 'problem'} must be non-empty text")
            check_length(text)
            if dataset == "gsm8k":
                if not isinstance(row["answer"], str):
                    raise DataError("'answer' must be text ending in '#### N'")
                out.append(Problem(str(row.get("id", n)), text, gsm8k_gold(row["answer"])))
            else:
                sol = row.get("solution", "")
                raw = row.get("answer")
                if isinstance(raw, bool) or not isinstance(raw, (str, int, float, type(None))):
                    raise DataError(f"'answer' must be text or a number, got {raw!r}")
                ans = raw or (last_boxed(sol) if isinstance(sol, str) else None)
                if isinstance(ans, (int, float)):
                    ans = str(ans)
                if not ans or not str(ans).strip():
                    raise DataError("no 'answer' (or a blank one) and no \\boxed{} in 'solution'")
                out.append(Problem(str(row.get("unique_id", row.get("id", n))), row["problem"], str(ans)))
        except KeyError as err:
            raise DataError(f"{where} row {n}: missing field {err.args[0]!r}") from None
        except DataError as err:
            raise DataError(f"{where} row {n}: {err}") from None
    return out


HUB = {("gsm8k", "train"): ("openai/gsm8k", "main", "train"), ("gsm8k", "test"): ("openai/gsm8k", "main", "test"),
       ("math", "train"): ("DigitalLearningGmbH/MATH-lighteval", "default", "train"),
       ("math", "test"): ("HuggingFaceH4/MATH-500", None, "test")}


def arithmetic(n: int, difficulty: int = 2, seed: int = 0, max_value: int = 20) -> list[Problem]:
    """Synthetic problems: `difficulty` operands (≥ 2) in [1, max_value], joined by + and ×; exact integer gold."""
    if difficulty < 2:
        raise DataError(f"--difficulty: needs at least 2 operands, got {difficulty}")
    rng = random.Random(seed)
    out = []
    for i in range(n):
        nums = [rng.randint(1, max_value) for _ in range(difficulty)]
        ops = [rng.choice("+×") if difficulty > 2 else rng.choice("+") for _ in range(difficulty - 1)]
        expr = str(nums[0]) + "".join(f" {o} {x}" for o, x in zip(ops, nums[1:]))
        value = eval(expr.replace("×", "*"))  # noqa: S307 - our own digits and operators only
        out.append(Problem(f"arith-{seed}-{i}", f"What is {expr}?", str(value)))
    return out


def load_problems(dataset: str, split: str = "train", path: str | None = None, n: int | None = None,
                  seed: int = 0, difficulty: int = 2) -> list[Problem]:
    """Problems of one split: from a local JSONL if `path`, generated for 'arithmetic', else from the hub."""
    if dataset == "arithmetic" and path:
        option = "--test-path" if split == "test" else "--data-path"
        raise DataError(f"{option}: read only with --dataset gsm8k or math; arithmetic problems are generated "
                        "(--difficulty, --seed)")
    if dataset == "arithmetic":
        # disjoint train/test streams from the same seed
        problems = arithmetic(n or 1000, difficulty, seed=seed * 2 + (split == "test"))
    elif dataset not in ("gsm8k", "math"):
        raise DataError(f"--dataset: expected gsm8k, math or arithmetic, got {dataset!r}")
    elif path:
        option = "--test-path" if split == "test" else "--data-path"
        problems = _from_rows(read_jsonl(path, option), dataset, f"{option}: {path}")
    else:
        try:
            import datasets
        except ImportError:
            raise DataError(f"--dataset {dataset}: no --data-path given and the `datasets` package is not "
                            "installed to fetch it from the hub") from None
        name, config, hub_split = HUB[(dataset, split)]
        try:
            rows = datasets.load_dataset(name, config, split=hub_split)
        except Exception as err:  # offline, unknown split, ...
            raise DataError(f"--dataset {dataset}: cannot load {name} from the hub ({type(err).__name__}); "
                            "pass --data-path FILE.jsonl") from None
        problems = _from_rows([dict(r) for r in rows], dataset, name)
    if n is not None and dataset != "arithmetic":
        problems = problems[:n]
    return problems


def check_length(question: str) -> None:
    """Every question the tool prompts with, from a dataset row or the command line, is capped: one step's work
    grows with its length (a 1,000,000-character question ran for minutes at gigabytes); and it is text a tokenizer
    can take (UTF-8: a lone surrogate or a command-line argument that was not UTF-8 is refused here, before
    anything is written)."""
    from banditlab.errors import UsageError
    from banditlab.plumbing.safeio import check_text

    try:
        check_text(question, "")
    except UsageError as err:
        raise DataError(f"the question holds {str(err)}") from None
    if len(question) > MAX_QUESTION_CHARS:
        raise DataError(f"the question is {len(question):,} characters, over the {MAX_QUESTION_CHARS:,} limit")


def build_prompt(tokenizer, question: str) -> str:
    """The prompt text: the tokenizer's chat template with a generation prompt if it has one, else plain text."""
    content = f"{question}\n{INSTRUCTION}"
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                             add_generation_prompt=True)
    return f"Question: {content}\nAnswer:"
