"""Turn the files a trend call returned into the committed figure, its data, the figures index's section and the
rows of docs/gpu.md (docs/gpu.md, "Collecting").

    python experiments/gpu/gsm8k_trend_collect.py FILES_AT

FILES_AT is the folder the `run` tool copied the call's $OUT into (summary.json, metrics.jsonl, ...). Steps:
the files are copied into figures/data/llm-asymre-gsm8k/ (marked complete); `banditlab reproduce llm-asymre-gsm8k
--plot-only` draws figures/llm-asymre-gsm8k.png and .md from them; the section between the markers
`<!-- llm-asymre-gsm8k -->` in figures/README.md and the rows between `<!-- trend-call -->` in docs/gpu.md are
rewritten with the numbers, the date, the device and the commit recorded in summary.json. A call that ran on a CPU
(a rehearsal) is labelled so wherever its numbers land. A call cut off after its first evaluation (summary.json's
stage is not "done") collects what it streamed, marked partial in the section, the rows and the figure's title; a
call cut off earlier, or missing or damaged files: one line, exit 2.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NAME = "llm-asymre-gsm8k"
FILES = ("log.txt", "screen-train.jsonl", "screen-test.jsonl", "metrics.jsonl", "summary.json", "table.md")
PAPER = ("The AsymRE paper (Llama-3.1-8B on MATH, μ refreshed every 250 of 2000 steps) finds δV ≥ 0 collapsing "
         "(training reward and test accuracy fall, entropy collapses) and δV = −0.1 stable.")


def replace_between(text: str, marker: str, body: str) -> str:
    """`text` with what lies between `<!-- marker -->` and `<!-- /marker -->` replaced by `body` (the pair is
    appended when absent)."""
    start, end = f"<!-- {marker} -->", f"<!-- /{marker} -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    return pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"


def stamp(s: dict) -> tuple[str, str, str]:
    device = s.get("versions", {}).get("device_name", "?")
    if s.get("device", "cpu") == "cpu":
        device += " (CPU rehearsal: not GPU evidence)"
    return s.get("started", "?")[:10], device, s.get("commit", "?")


def partial(s: dict) -> str | None:
    """None for a call that finished; else what a cut-off call reached, for its labels."""
    if s.get("stage") == "done":
        return None
    plan = s.get("plan", {}).get("steps")
    return (f"partial: the call was cut off in stage '{s.get('stage', '?')}' after step {s.get('steps', 0)}"
            + (f" of {plan} planned" if plan else ""))


def section(s: dict, table: str) -> str:
    date, device, commit = stamp(s)
    cut = partial(s)
    p0 = s.get("pi0_full_test")
    pi0 = (f"π₀'s greedy pass@1 on the full GSM8K test split: {p0['pass_at_1']:.4f} ({p0['n']} problems). "
           if p0 else "π₀'s full-test pass@1 was not measured in this call. ")
    return "\n".join([
        "![AsymRE δV sweep on GSM8K](llm-asymre-gsm8k.png)", "",
        f"Measured {date} on {device}, commit {commit}; {s.get('steps', '?')} steps, offline (μ = π₀), "
        f"`experiments/gpu/gsm8k_trend_call.sh` (docs/llm-gsm8k.md). {pi0}"
        + (f"**{cut[0].upper() + cut[1:]}.**" if cut else ""), "", table.strip(), "",
        f"**The paper's result, for comparison.** {PAPER} Here the model, the task and the regime differ "
        "(SmolLM2-135M, GSM8K, μ never refreshed), so only the ordering of the δV values is comparable."])


def rows(s: dict) -> str:
    date, device, commit = stamp(s)
    cut = partial(s)
    cell = lambda claim, value: f"| {claim} | {value}{f' ({cut})' if cut else ''} | {date} | {device} | {commit} |"
    out = []
    model = s.get("config", {}).get("train", {}).get("model", "smollm2")
    model = "SmolLM2-135M" if model == "smollm2" else f"the model {model}"
    ev, st = s.get("last_eval"), s.get("last_step")
    if ev:
        out.append(cell(f"{model} greedy generation, every run's held-out problems batched (trend call)",
                        f"{ev['tokens_per_s']} tokens/s ({ev['tokens']} tokens in {ev['seconds']} s, "
                        f"{s.get('eval_mode')} adapters)"))
    if st:
        out.append(cell("offline LoRA training, every run of the sweep in one process (trend call)",
                        f"{st['train_tokens_per_s']} completion tokens/s ({st['seconds']} s per step of all runs)"))
    if s.get("peak_memory_gb") is not None:
        out.append(cell("peak GPU memory of the trend call", f"{s['peak_memory_gb']:.1f} GB allocated"))
    p0 = s.get("pi0_full_test")
    if p0:
        out.append(cell(f"{model} greedy pass@1, full GSM8K test ({p0['n']} problems), and its wall time",
                        f"{p0['pass_at_1']:.4f} in {p0['seconds']} s"))
    return "\n".join(["| claim | value | date | device | commit |", "|---|---|---|---|---|", *out])


def collect(files_at: Path, figures: Path, readme: Path, gpu_doc: Path, echo=print) -> list[Path]:
    from banditlab.plumbing.protocol import Run
    from banditlab.reproduce import KIND, load_config, reproduce

    files_at = Path(files_at)
    found = {f: next(iter(sorted(files_at.rglob(f))), None) for f in FILES}
    if found["summary.json"] is None or found["metrics.jsonl"] is None:
        raise SystemExit(f"collect: no summary.json and metrics.jsonl under {files_at}")
    try:
        s = json.loads(found["summary.json"].read_text())
    except (OSError, ValueError) as err:
        raise SystemExit(f"collect: {found['summary.json']} is not JSON ({type(err).__name__})") from None
    if not isinstance(s, dict) or "pool" not in s:
        raise SystemExit(f"collect: {found['summary.json']} holds no pool: the call ended before training "
                         f"({s.get('error', 'no error recorded') if isinstance(s, dict) else 'not an object'})")
    data = figures / "data" / NAME
    # the experiment's data folder through the one run protocol: its record (the experiment's config), the call's
    # files replacing any earlier call's (a file this call did not write is removed, not left stale), DONE last
    with Run.open(data, KIND, load_config(NAME), option="--figures", adopt=True, replace=True) as run:
        run.write_record({"experiment": NAME, "source": "the GPU trend call"})
        for name, path in found.items():
            if path is not None:
                shutil.copyfile(path, data / name)
            else:
                (data / name).unlink(missing_ok=True)
        run.done()
    made = reproduce([NAME], figures, plot_only=True, progress=False, echo=echo)
    table = (figures / f"{NAME}.md").read_text()
    readme.write_text(replace_between(readme.read_text() if readme.exists() else "", NAME, section(s, table)))
    gpu_doc.write_text(replace_between(gpu_doc.read_text(), "trend-call", rows(s)))
    echo(f"collect: {data}, {', '.join(str(m) for m in made)}, {readme}, {gpu_doc}"
         + (f" ({partial(s)})" if partial(s) else ""))
    return made


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files_at", help="the folder the device call's $OUT files were copied into")
    ap.add_argument("--figures", default=str(ROOT / "figures"))
    ap.add_argument("--readme", default=str(ROOT / "figures" / "README.md"))
    ap.add_argument("--gpu-doc", default=str(ROOT / "docs" / "gpu.md"))
    a = ap.parse_args(argv)
    from banditlab.errors import UsageError

    try:
        collect(Path(a.files_at), Path(a.figures), Path(a.readme), Path(a.gpu_doc))
    except (SystemExit, UsageError) as err:
        print(" ".join(str(err).split()), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
