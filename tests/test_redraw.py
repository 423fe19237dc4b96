"""Commands that only redraw (`reproduce --plot-only`, `plot`) write the same bytes every time, equal to the
committed figures, and `plot` draws LLM runs from metrics.jsonl alone; what the figures say: ticks that read as
numbers, legends that hide no data, labels true to the run (exact mode, a refreshed behaviour)."""

import json
import re
import shutil
from pathlib import Path

import matplotlib
import matplotlib.figure
import matplotlib.text
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


def test_committed_pdfs_embed_only_dejavu_sans():
    """Every committed figure was drawn in matplotlib's DejaVu Sans (tests/test_fonts.py: on every machine)."""
    pdfs = sorted((ROOT / "figures").glob("*.pdf"))
    assert len(pdfs) >= 10
    for pdf in pdfs:
        fonts = set(re.findall(rb"/BaseFont /(?:[A-Z]{6}\+)?([\w.-]+)", pdf.read_bytes()))
        assert b"DejaVuSans" in fonts and fonts <= {b"DejaVuSans", b"DejaVuSans-Oblique"}, (pdf.name, fonts)


def test_committed_reproduce_pdfs_carry_no_creation_date():
    from banditlab.reproduce import EXPERIMENTS

    pdfs = [ROOT / "figures" / f"{name}.pdf" for name in EXPERIMENTS if (ROOT / "figures" / f"{name}.pdf").exists()]
    assert len(pdfs) >= 9
    assert [p.name for p in pdfs if b"/CreationDate" in p.read_bytes()] == []


@pytest.mark.slow
def test_plot_draws_llm_runs_and_leaves_their_files_alone(tmp_path):
    runs = []
    for name in ("AsymRE-dV-0-s0", "AsymRE-dV-p0-1-s0"):
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


# ------------------------------------------------------------------------------------------ what the figures say
def texts(fig) -> list[str]:
    return [t.get_text() for t in fig.findobj(matplotlib.text.Text) if t.get_visible() and t.get_text()]


def test_llm_curves_tick_plain_numbers_and_keep_legends_off_the_data(tmp_path, saved):
    """A run whose ratios stay within 10 % of 1 and whose entropy moves in the fifth digit: every tick label is a
    plain number (no 1.05×10⁰, no "+4.579" offset), steps tick at whole numbers, and every legend lies outside
    every panel. Ratios spread over more than a factor of 100 keep a log axis."""
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from banditlab.plots import plot_llm_runs, ratio_scale

    run = tmp_path / "near-one"
    run.mkdir()
    rows = [{"step": s, "reward_mean": -0.9, "accuracy": 0.1 * (s % 3), "ratio_mean": 1 + 0.01 * (-1) ** s,
             "ratio_min": 0.93 + 0.001 * s, "ratio_max": 1.07 + 0.002 * s, "entropy": 4.5794 + 1e-5 * s}
            for s in range(1, 11)] + [{"step": s, "test_accuracy": 0.2} for s in (0, 10)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    plot_llm_runs([run], tmp_path / "near-one-curves")
    near, = saved
    panels = [ax for ax in near.axes if ax.get_visible()]
    assert len(panels) == 4
    for ax in panels:
        for axis in (ax.xaxis, ax.yaxis):
            assert axis.get_offset_text().get_text() == ""
            for label in [*axis.get_majorticklabels(), *axis.get_minorticklabels()]:
                if label.get_text():
                    float(label.get_text().replace("\N{MINUS SIGN}", "-"))  # a plain number, or ValueError
        lo, hi = ax.get_xlim()
        steps = [x for x in ax.get_xticks() if lo <= x <= hi]
        assert len(steps) >= 3 and all(float(x).is_integer() for x in steps), steps
    legends = [ax.get_legend() for ax in panels if ax.get_legend()]
    assert len(legends) == 2  # accuracy (3 metrics) and ratio (3 metrics)
    FigureCanvasAgg(near).draw()  # a canvas again: plot_llm_runs closed the figure
    renderer = near.canvas.get_renderer()
    for legend in legends:
        assert not any(legend.get_window_extent(renderer).overlaps(ax.get_window_extent(renderer)) for ax in panels)
    assert [ax.get_yscale() for ax in panels if ax.get_title().startswith("Ratio")] == ["linear"]
    fig, axes = plt.subplots(1, 3)
    for ax, values in zip(axes, ([1e-14, 0.9, 120.0], [0.0, 0.02, 1.9], [0.01, 2.0])):
        ratio_scale(ax, values)  # the zero (an underflowed ratio) cannot sit on a log axis and is left out
    plt.close(fig)
    assert [ax.get_yscale() for ax in axes] == ["log", "linear", "log"]


def test_sweep_figure_labels_follow_the_mode_and_the_behaviour(tmp_path, saved):
    """Exact mode draws its one deterministic run per baseline: no "one seed" points, no "mean over seeds". Under
    lag:N the horizontal line is the first behaviour's value and δV counts from the current behaviour's. The
    support panel's legend is framed, so that its marker is not read as a data point."""
    for name, args in [("exact", ["--mode", "exact"]), ("lag", ["--behavior", "lag:2"])]:
        code, _, err = run_cli(["sweep", "--arms", "3", "--steps", "6", "--baseline", "-0.2:0.2:3", "--out",
                                tmp_path / name, "--no-progress", *args])
        assert code == 0, err
    exact, lag = saved
    said = " | ".join(texts(exact))
    assert "one seed" not in said and "mean over seeds" not in said and "simulation (exact, deterministic)" in said
    said = " | ".join(texts(lag))
    assert "one seed" in said and "mean over seeds" in said and "(8 seeds)" in said
    assert r"$V^{\mu_0}$ = " in said and "(initial behaviour)" in said and "(behaviour)" not in said
    assert r"$\delta V = V - V^{\mu_t}$" in lag.axes[0].get_xlabel()
    assert exact.axes[0].get_xlabel() == r"baseline offset $\delta V = V - V^\mu$"
    assert all(fig.axes[1].get_legend().get_frame_on() for fig in (exact, lag))
