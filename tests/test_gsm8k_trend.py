"""The GSM8K δV trend (experiments/reproduce/llm-asymre-gsm8k.py, experiments/gpu/gsm8k_trend_*.py) on CPU: the
pool rule, the table's comparison point after a cut-off, the collection step, and the whole call in-process with
the tiny model on the shipped GSM8K slices."""

import json
import shutil
import sys

import pytest

from banditlab import reproduce as R
from banditlab.cli.app import main as cli

sys.path.insert(0, str(R.ROOT / "experiments" / "gpu"))
import gsm8k_trend_call as call  # noqa: E402
import gsm8k_trend_collect as collect  # noqa: E402

from banditlab_llm.screen import pool_of, read_counts  # noqa: E402


def test_pool_keeps_the_problems_with_mixed_outcomes(tmp_path):
    f = tmp_path / "screen-train.jsonl"
    f.write_text("".join(json.dumps({"index": i, "successes": s, "k": 8}) + "\n" for i, s in enumerate([0, 3, 8, 1]))
                 + '{"index": 4, "succ')  # the last line cut off when a device call ended
    counts = read_counts(f)
    assert counts == {0: 0, 1: 3, 2: 8, 3: 1}
    p = pool_of(counts, 8)
    assert p["index"] == [1, 3] and p["pass_rate"] == [0.375, 0.125] and p["never"] == 1 and p["always"] == 1
    assert p["mean_pass_rate_screened"] == pytest.approx(12 / 32) and p["mean_pass_rate_pool"] == pytest.approx(0.25)
    assert pool_of(counts, 8, "all")["index"] == [0, 1, 2, 3]


def test_plot_only_without_data_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli(["reproduce", "llm-asymre-gsm8k", "--plot-only", "--figures", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and "--plot-only" in err and len(err.splitlines()) == 1


def _cfg():
    return {"seeds": [0, 1], "methods": {"A": ["asymre"], "B": ["topr"]}}


def test_the_table_compares_methods_at_the_last_evaluation_every_run_reached(tmp_path):
    """A call cut off inside an evaluation (only some runs have step 4) and inside a line: the table is taken at
    step 2, and its numbers are the hand-computed means and changes."""
    mod = call.experiment_module()
    ev = lambda m, s, step, x: {"kind": "eval", "method": m, "seed": s, "step": step, "held_out_pass1": x, "n": 10}
    tr = lambda m, s, step: {"kind": "train", "method": m, "seed": s, "step": step, "entropy": 1.0 + step,
                             "ratio_min": 0.5, "kl_behaviour": 0.0}
    lines = [ev(m, s, 0, 0.2) for m in "AB" for s in (0, 1)]
    lines += [tr(m, s, st) for st in (1, 2) for m in "AB" for s in (0, 1)]
    lines += [ev("A", 0, 2, 0.3), ev("A", 1, 2, 0.5), ev("B", 0, 2, 0.1), ev("B", 1, 2, 0.0), ev("A", 0, 4, 0.9)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"kind": "ev')
    pool = {"screened": 9, "index": [1, 2]}
    (tmp_path / "summary.json").write_text(json.dumps({"pool": {"k": 8, "keep": "mixed", "train": pool, "test": pool}}))
    table = mod.table_markdown(_cfg(), tmp_path)
    assert "at step 2 " in table
    assert "| A | 0.400 | 0.300, 0.500 | +0.200 | 3.000 | 0.5 |" in table
    assert "| B | 0.050 | 0.100, 0.000 | -0.150 | 3.000 | 0.5 |" in table


def test_collect_refuses_a_call_that_ended_before_training_in_one_line(tmp_path, capsys):
    (tmp_path / "got").mkdir()
    (tmp_path / "got" / "metrics.jsonl").write_text("")
    (tmp_path / "got" / "summary.json").write_text(json.dumps({"stage": "loaded", "error": "CUDA error: boom\nline 2"}))
    code = collect.main([str(tmp_path / "got"), "--figures", str(tmp_path / "f")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "ended before training" in err and "boom" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "f").exists()
    assert collect.main([str(tmp_path / "nothing")]) == 2


def test_a_section_between_markers_is_replaced_not_repeated():
    text = "a\n<!-- x -->\nold\n<!-- /x -->\nb\n"
    once = collect.replace_between(text, "x", "new")
    assert once == "a\n<!-- x -->\nnew\n<!-- /x -->\nb\n" and collect.replace_between(once, "x", "new") == once
    assert collect.replace_between("a\n", "y", "z").endswith("<!-- y -->\nz\n<!-- /y -->\n")


@pytest.mark.slow
def test_the_trend_call_in_process_then_collect(tmp_path):
    """The call's code with the tiny model (every run in one process), then the collection into a copy of the
    figures index and docs/gpu.md: figure, data, section and rows, labelled as a CPU rehearsal."""
    out = tmp_path / "out"
    assert call.main(["--rehearse", "--model", "tiny", "--deadline-s", "300", "--out", str(out)]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["stage"] == "done" and s["steps"] == 3 and s["eval_mode"] in ("mixed", "sequential")
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    evals = sorted({r["step"] for r in rows if r["kind"] == "eval"})
    assert evals == [0, 2, 3] and len([r for r in rows if r["kind"] == "train"]) == 3 * 4
    assert len(read_counts(out / "screen-train.jsonl")) == 8 == len(s["pool"]["train"]["index"])
    readme, doc = tmp_path / "README.md", tmp_path / "gpu.md"
    readme.write_text("# Figures\n")
    shutil.copyfile(R.ROOT / "docs" / "gpu.md", doc)
    made = collect.collect(out, tmp_path / "figs", readme, doc, echo=lambda *_: None)
    assert tmp_path / "figs" / "llm-asymre-gsm8k.png" in made
    assert (tmp_path / "figs" / "llm-asymre-gsm8k.png").stat().st_size > 10_000
    assert (tmp_path / "figs" / "data" / "llm-asymre-gsm8k" / "DONE").exists()
    assert "<!-- llm-asymre-gsm8k -->" in readme.read_text() and "δV ≥ 0 collapsing" in readme.read_text()
    assert readme.read_text().count("CPU rehearsal: not GPU evidence") == 1
    assert "full GSM8K test (48 problems)" in doc.read_text()


def test_a_call_cut_off_in_training_is_collected_marked_partial():
    """The section and every row of a cut-off call say where it stopped; a finished call's say nothing of it."""
    s = {"stage": "training", "steps": 7, "plan": {"steps": 40}, "device": "cuda", "started": "2030-01-02 03:04 UTC",
         "commit": "abc", "versions": {"device_name": "GPU"},
         "last_step": {"seconds": 1.0, "tokens": 10, "train_tokens_per_s": 10}}
    said = "partial: the call was cut off in stage 'training' after step 7 of 40 planned"
    assert said[1:] in collect.section(s, "| table |") and collect.rows(s).count(said) == 1
    done = {**s, "stage": "done"}
    assert "partial" not in collect.section(done, "| table |") + collect.rows(done)


def test_a_call_cut_off_after_its_first_evaluation_collects_and_one_cut_before_it_is_refused(tmp_path, capsys):
    """The earliest partial call that collects: step 0's evaluation and no training step (figure, table at step 0,
    rows marked partial); a call that has its pool but no evaluation yet is refused in one line."""
    got = tmp_path / "got"
    got.mkdir()
    pool = {"screened": 4, "index": [0, 1]}
    s = {"stage": "screened", "device": "cpu", "started": "2030-01-02 03:04 UTC", "commit": "abc",
         "versions": {"device_name": "CPU"}, "pool": {"k": 2, "keep": "all", "train": pool, "test": pool},
         "config": {**_cfg(), "train": {"model": "tiny", "lora_r": 8, "prompts_per_step": 2, "lr": 0.003}}}
    (got / "summary.json").write_text(json.dumps(s))
    assert collect.main([str(got), "--figures", str(tmp_path / "f")]) == 2
    assert "no summary.json and metrics.jsonl" in capsys.readouterr().err and not (tmp_path / "f").exists()
    (got / "metrics.jsonl").write_text("".join(
        json.dumps({"kind": "eval", "method": m, "seed": x, "step": 0, "held_out_pass1": 0.5, "n": 2}) + "\n"
        for m in "AB" for x in (0, 1)))
    readme, doc = tmp_path / "README.md", tmp_path / "gpu.md"
    readme.write_text("# Figures\n")
    shutil.copyfile(R.ROOT / "docs" / "gpu.md", doc)
    made = collect.collect(got, tmp_path / "f", readme, doc, echo=lambda *_: None)
    assert tmp_path / "f" / "llm-asymre-gsm8k.png" in made
    assert "at step 0 " in (tmp_path / "f" / "llm-asymre-gsm8k.md").read_text()
    assert "cut off in stage 'screened' after step 0" in readme.read_text()
