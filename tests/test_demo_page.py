"""The classroom page (`banditlab demo --html`): its frames are the simulator's and the theory's numbers, it is
one self-contained deterministic file, and in a real headless Chromium it draws and its slider changes the drawing.
The browser test skips where no Chromium is installed (CI installs Debian's `chromium`)."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest

from banditlab.science import bandits as B
from banditlab.science import theory
from banditlab.cli.app import main
from banditlab.classroom.page import REC_OFFSETS, page, three_arm_data

from cdp import Browser, find_chromium

REC = B.from_lists([0, 0.8, 1], [0.3, 0.6, 0.1])


@pytest.fixture(scope="module")
def html(tmp_path_factory):
    path = tmp_path_factory.mktemp("page") / "demo.html"
    with pytest.raises(SystemExit) as exit_:
        main(["demo", "--steps", "400", "--html", str(path)])
    assert exit_.value.code in (0, None)
    return path


def test_frames_are_the_simulated_paths_and_theorem_limits():
    d = three_arm_data(REC, steps=1500, lr=1.0)
    mu, r = REC.mu[0], REC.means[0]
    for i, off in enumerate(REC_OFFSETS):
        ends = d["pis"][-1, i]  # π_T of every start at this slider position
        if off <= -0.1:  # Theorem 4.2: every start converges to the same π*
            assert np.allclose(ends, theory.limit_policy(mu, r, d["Vs"][i]), atol=0.02), off
        if off >= 0.1:  # above V^μ: every start ends on a single arm
            assert (ends.max(-1) > 0.99).all(), off
    assert np.allclose(d["J"][0, 0, 0], theory.v_mu(mu, r))  # the first path starts at π₀ = μ
    assert d["pis"].shape[1] == len(REC_OFFSETS) and np.isclose(d["Vs"][25], REC.v_mu_total)  # V^μ is a position


def test_page_is_self_contained_and_has_a_frame_per_slider_position(html):
    text = html.read_text(encoding="utf-8")
    assert len(text.encode()) < 3_000_000
    assert not re.search(r"(src|href)\s*=|url\(|@import|<link|https?://", text)  # nothing fetched from anywhere
    for key in ("three", "paper"):
        section = text[text.index(f'<section id="{key}"'):]
        section = section[:section.index("</section>")]
        n = int(re.search(r'type="range" min="0" max="(\d+)"', section).group(1)) + 1
        frames = re.findall(r'data-f="(\d+)"', section)
        panels = section.count("<figure>")
        assert panels == 4 and sorted(set(map(int, frames))) == list(range(n))
        assert len(frames) == n * (panels + 1)  # every panel and the note have one group per position


@pytest.mark.slow
def test_page_is_byte_identical_when_rewritten(html):
    assert page(REC, 400, 1.0, REC.v_mu_total - 0.28, REC.v_mu_total + 0.12).encode() == html.read_bytes()


def test_html_into_a_folder_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["demo", "--html", str(tmp_path)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "--html" in err and len(err.splitlines()) == 1 and list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_demo_figure_is_byte_identical_when_redrawn(tmp_path):
    """A command that only redraws leaves its files byte-identical (no timestamps in the PNG or the PDF)."""
    blobs = []
    for run in ("a", "b"):
        with pytest.raises(SystemExit):
            main(["demo", "--steps", "200", "--out", str(tmp_path / run / "demo")])
        blobs.append([(tmp_path / run / f"demo.{ext}").read_bytes() for ext in ("png", "pdf")])
    assert blobs[0] == blobs[1]
    assert b"CreationDate" not in blobs[0][1] and b"tIME" not in blobs[0][0]


# ------------------------------------------------------------------------------------------------ the browser
def ink(png: bytes, box=None) -> np.ndarray:
    from PIL import Image

    im = Image.open(io.BytesIO(png)).convert("RGB")
    return np.asarray(im.crop(box) if box else im, dtype=np.int16)


@pytest.mark.slow
@pytest.mark.skipif(find_chromium() is None, reason="no Chromium here (Debian: apt-get install chromium)")
def test_page_draws_in_chromium_and_the_slider_changes_the_drawing(html):
    b = Browser(find_chromium(), 1280, 900)
    try:
        b.open(html)
        shot = ink(b.screenshot())
        assert (shot.sum(-1) < 600).mean() > 0.03 and len(np.unique(shot.reshape(-1, 3), axis=0)) > 50  # not blank
        seen = b.js("""[...document.querySelectorAll('#three figure svg')].map(s => s.getBoundingClientRect())
                       .filter(r => r.width > 200 && r.height > 150).length""")
        assert seen == 4
        assert b.js("document.querySelector('#paper').hidden") is True
        before = b.js("document.querySelector('#three .note p:not([style*=none])').textContent")
        assert "below" in before
        box = b.js("(r => [r.x, r.y, r.width, r.height])(document.querySelector('#three-v').getBoundingClientRect())")
        svg = b.js("(r => [r.x, r.y, r.right, r.bottom])(document.querySelector('#three svg').getBoundingClientRect())")
        b.click(box[0] + 0.95 * box[2], box[1] + box[3] / 2)  # a click near the right end of the slider's track
        value = int(b.js("document.querySelector('#three-v').value"))
        assert value > int(np.argmin(np.abs(REC_OFFSETS)))  # now above V^μ
        after = b.js("document.querySelector('#three .note p:not([style*=none])').textContent")
        assert "above" in after and after != before
        shown = b.js("""[...document.querySelectorAll('#three g[data-f]')].filter(g => g.style.display !== 'none')
                        .map(g => +g.dataset.f)""")
        assert shown and set(shown) == {value}
        crop = tuple(int(v) for v in svg)
        assert np.abs(ink(b.screenshot(), crop) - shot[crop[1]:crop[3], crop[0]:crop[2]]).sum(-1).max() > 100
        b.js("document.querySelectorAll('nav button')[1].click()")
        assert b.js("document.querySelector('#paper').hidden") is False
        assert b.js("document.querySelector('#three').hidden") is True
    finally:
        b.close()


@pytest.fixture(scope="module")
def demo_fig():
    from banditlab.classroom.demo import draw
    from banditlab.plots import style

    plt = style(seaborn=True)
    fig = draw(REC, REC.v_mu_total - 0.28, REC.v_mu_total + 0.12, 100, 1.0, plt)
    yield fig
    plt.close(fig)


def test_demo_figure_legends_share_no_row_with_an_arm_label(demo_fig):
    """The static figure's simplex legends lie clear of the vertex labels (arm 1, 2, 3 and their rewards)."""
    renderer = demo_fig.canvas.get_renderer()
    for ax in demo_fig.axes[:2]:
        legend = ax.get_legend().get_window_extent(renderer)
        labels = [t.get_window_extent(renderer) for t in ax.texts]
        assert len(labels) == 3 and all(legend.y1 < t.y0 or legend.y0 > t.y1 for t in labels)


def test_demo_figure_legend_shows_the_colours_of_the_dots(demo_fig):
    """The right panel's legend draws its dots in exactly the colours of the simulated dots."""
    import matplotlib.colors as mc
    from matplotlib.lines import Line2D

    ax = demo_fig.axes[2]
    shown = {mc.to_hex(a.get_color()) for a in ax.get_legend().findobj(Line2D) if a.get_marker() == "o"}
    drawn = {mc.to_hex(a.get_color()) for a in ax.get_lines() if a.get_marker() == "o" and len(a.get_xdata())}
    assert shown == drawn and len(drawn) == 6


def test_the_page_does_not_import_the_demo():
    """demo.py draws and writes the page (it imports page.py); both take the simplex from simplex.py."""
    import ast

    import banditlab.classroom.page as page

    with open(page.__file__) as f:
        tree = ast.parse(f.read())
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert "banditlab.classroom.demo" not in modules and "banditlab.classroom.simplex" in modules
