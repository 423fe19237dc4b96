"""Commands that only redraw (`reproduce --plot-only`, `plot`) write the same bytes every time, equal to the
committed figures, and `plot` draws LLM runs from metrics.jsonl alone."""

import json
import re
import shutil
from pathlib import Path

import matplotlib
import pytest

from conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]
LLM_RUN = ROOT / "figures" / "data" / "llm-asymre-small" / "AsymRE-dV-0-s0"


def committed_matplotlib(pdf: Path) -> str | None:
    m = re.search(rb"/Creator \(Matplotlib v([0-9.]+)", pdf.read_bytes())
    return m.group(1).decode() if m else None


@pytest.mark.slow
def test_plot_only_redraw_is_byte_identical_to_the_committed_figure(tmp_path):
    """Equal to the committed files where this matplotlib made them, else equal to a second redraw."""
    figures = tmp_path / "figures"
    shutil.copytree(ROOT / "figures" / "data" / "rec-counterexample", figures / "data" / "rec-counterexample")
    committed = ROOT / "figures" / "rec-counterexample.pdf"
    same_version = committed_matplotlib(committed) == matplotlib.__version__
    drawn = []
    for _ in range(1 if same_version else 2):
        code, _, err = run_cli(["reproduce", "rec-counterexample", "--plot-only", "--figures", str(figures)])
        assert code == 0, err
        drawn.append({s: (figures / f"rec-counterexample.{s}").read_bytes() for s in ("png", "pdf")})
    assert b"CreationDate" not in drawn[0]["pdf"]
    reference = ({s: (ROOT / "figures" / f"rec-counterexample.{s}").read_bytes() for s in ("png", "pdf")}
                 if same_version else drawn[1])
    assert drawn[0] == reference


def test_committed_reproduce_pdfs_carry_no_creation_date():
    from banditlab.reproduce import EXPERIMENTS

    pdfs = [ROOT / "figures" / f"{name}.pdf" for name in EXPERIMENTS if (ROOT / "figures" / f"{name}.pdf").exists()]
    assert len(pdfs) >= 9
    assert [p.name for p in pdfs if b"/CreationDate" in p.read_bytes()] == []


@pytest.mark.slow
def test_plot_draws_llm_runs_and_leaves_their_files_alone(tmp_path):
    runs = []
    for name in ("AsymRE-dV-0-s0", "AsymRE-dV-p0-3-s0"):
        runs.append(tmp_path / name)
        shutil.copytree(LLM_RUN.parent / name, runs[-1])
    before = {p: p.read_bytes() for r in runs for p in r.iterdir()}
    code, out, err = run_cli(["plot", str(runs[0])])
    assert code == 0, err
    assert (runs[0] / "curves.png").exists() and str(runs[0] / "curves.png") in out
    first = (runs[0] / "curves.png").read_bytes()
    assert run_cli(["plot", str(runs[0])])[0] == 0
    assert (runs[0] / "curves.png").read_bytes() == first  # a redraw writes the same bytes
    both = tmp_path / "both"
    assert run_cli(["plot", *map(str, runs), "--out", str(both)])[0] == 0
    assert both.with_suffix(".png").stat().st_size > 0
    assert {p: p.read_bytes() for p in before} == before  # the runs' own files are untouched


def test_llm_panels_follow_the_metrics_present(tmp_path):
    from banditlab.plots import LLM_PANELS, read_metrics

    run = tmp_path / "run"
    run.mkdir()
    rows = [{"step": s, "reward_mean": -1 + 0.1 * s, "entropy": 1.0} for s in range(1, 4)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 4, "rew')
    assert read_metrics(run) == rows  # a partial last line (a run still writing) is skipped
    present = [t for t, _, keys in LLM_PANELS if any(k in r for r in rows for k in keys)]
    assert present == ["Reward of the sampled batch", "Entropy of π"]


def test_plot_refuses_a_folder_without_a_run(tmp_path):
    code, out, err = run_cli(["plot", str(tmp_path)])
    assert code == 2 and "holds no banditlab run" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_plot_refuses_out_when_no_run_is_an_llm_run(tmp_path):
    """--out names the LLM curves file; with only sweeps it would be ignored, so it is refused and nothing is
    drawn."""
    run = tmp_path / "s"
    assert run_cli(["sweep", "--arms", "3", "--steps", "5", "--baseline", "0", "--out", str(run),
                    "--no-progress"])[0] == 0
    before = (run / "sweep.png").stat().st_mtime_ns
    code, _, err = run_cli(["plot", str(run), "--out", str(tmp_path / "curves")])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--out" in err
    assert (run / "sweep.png").stat().st_mtime_ns == before and sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def test_plot_refuses_an_llm_run_with_no_training_step(tmp_path):
    run = tmp_path / "r"
    shutil.copytree(LLM_RUN, run)
    rows = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text(rows[0] + "\n")  # step 0 only: a run stopped in its first step
    code, _, err = run_cli(["plot", str(run), "--out", str(tmp_path / "c")])
    assert code == 2 and "no training step yet" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "c.png").exists()
