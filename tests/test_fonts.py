"""Every figure the project draws is set in matplotlib's own DejaVu Sans, text and math alike, whatever fonts the
machine has, so a redraw gives the same bytes everywhere.

For the length of each test here, matplotlib also knows two fonts named Arial and Liberation Sans (copies of its
DejaVu Serif, renamed): Arial, which both whitegrid themes list before DejaVu Sans, and Liberation Sans, which
matplotlib's lists before it too. A figure that took its font from a theme's list would be set in one of them
here, as it is on a machine with fonts-liberation (or Arial) installed."""

import shutil
from pathlib import Path

import matplotlib
import matplotlib.figure
import matplotlib.text
import pytest
from matplotlib import cbook, font_manager
from matplotlib.font_manager import FontProperties, findfont
from matplotlib.ft2font import FT2Font
from matplotlib.mathtext import MathTextParser

from conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]
FONTS = (Path(matplotlib.get_data_path()) / "fonts" / "ttf").resolve()
DEJAVU_SANS = {FONTS / f"DejaVuSans{face}.ttf" for face in ("", "-Bold", "-Oblique", "-BoldOblique")}
RIVALS = ("Arial", "Liberation Sans")


@pytest.fixture
def rivals(tmp_path):
    """Fonts named Arial and Liberation Sans, known to matplotlib until the test ends (beside any installed ones,
    which may win: either way a font by each name is there)."""
    from fontTools.ttLib import TTFont

    manager = font_manager.fontManager
    known = list(manager.ttflist)
    try:
        for name in RIVALS:
            font = TTFont(FONTS / "DejaVuSerif.ttf")
            for record in font["name"].names:
                if record.nameID in (1, 4, 16):  # family, full name, typographic family
                    record.string = name
                elif record.nameID == 6:  # PostScript name
                    record.string = name.replace(" ", "") + "-Regular"
            path = tmp_path / f"{name.replace(' ', '')}.ttf"
            font.save(path)
            manager.addfont(path)
            assert Path(findfont(FontProperties(family=name), fallback_to_default=False)).parent != FONTS
        yield
    finally:
        manager.ttflist = known
        manager._findfont_cached.cache_clear()  # no answer that names a rival outlives the test


def resolved() -> Path:
    """The file matplotlib sets text in under the current rcParams."""
    return Path(findfont(FontProperties(family=matplotlib.rcParams["font.family"]))).resolve()


def test_the_themes_own_font_lists_pick_a_rival(rivals):
    """What style() guards against, so that the tests below can fail: under either whitegrid theme's font list,
    text is set in a rival."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    with matplotlib.rc_context():
        matplotlib.rcdefaults()
        plt.style.use("seaborn-v0_8-whitegrid")
        assert resolved() not in DEJAVU_SANS
        matplotlib.rcdefaults()
        sns.set_theme(context="talk", style="whitegrid")
        assert resolved() not in DEJAVU_SANS


@pytest.mark.parametrize("seaborn", [False, True], ids=["sweep and LLM curves", "reproduce and demo"])
def test_style_sets_text_and_math_in_matplotlibs_dejavu_sans(rivals, seaborn):
    from banditlab.plots import style

    with matplotlib.rc_context():
        style(seaborn=seaborn)
        assert resolved() == FONTS / "DejaVuSans.ttf"
        math = MathTextParser("path").parse(r"$J(\pi_t)\ \delta V = V - V^{\mu_0} \geq 10^{-3}$", 72,
                                            FontProperties())
        assert {Path(g[0].fname).resolve() for g in math.glyphs} <= DEJAVU_SANS
        assert {Path(g[0].fname).name for g in math.glyphs} == {"DejaVuSans.ttf", "DejaVuSans-Oblique.ttf"}


# ------------------------------------------------------------------------------------------ drawn figures
def text_fonts(fig) -> tuple[set[Path], set[str]]:
    """(the font files of every visible text of the saved `fig`, the characters of its plain text that
    DejaVu Sans has no glyph for, which another font would draw). Text is laid out as the figure's renderer does:
    line by line, a line with $...$ glyph by glyph."""
    glyphs = FT2Font(str(FONTS / "DejaVuSans.ttf")).get_charmap()
    files, missing = set(), set()
    texts = [t for t in fig.findobj(matplotlib.text.Text) if t.get_visible() and t.get_text().strip()]
    assert len(texts) >= 10  # titles, labels, ticks, legends
    for t in texts:
        prop = t.get_fontproperties()
        for line in t.get_text().split("\n"):
            if t.get_parse_math() and cbook.is_math_text(line):
                files |= {Path(g[0].fname).resolve() for g in MathTextParser("path").parse(line, 72, prop).glyphs}
            else:
                files.add(Path(findfont(prop)).resolve())
                missing |= {c for c in line if not c.isspace() and ord(c) not in glyphs}
    return files, missing


def draw_sweep(tmp_path):
    code, _, err = run_cli(["sweep", "--arms", "3", "--steps", "5", "--baseline", "-0.2:0.2:3", "--out",
                            tmp_path / "s", "--no-progress"])
    assert code == 0, err


def draw_llm_curves(tmp_path):
    from banditlab.plots import plot_llm_runs

    plot_llm_runs([ROOT / "figures" / "data" / "llm-asymre-small" / "AsymRE-dV-0-s0"], tmp_path / "curves")


def draw_reproduce(name):
    """Redraws the reproduce figure `name` from its committed data."""

    def draw(tmp_path):
        from banditlab.reproduce import reproduce

        shutil.copytree(ROOT / "figures" / "data" / name, tmp_path / "data" / name,
                        ignore=shutil.ignore_patterns("*.pt", "adapter"))
        reproduce([name], tmp_path, plot_only=True, progress=False, echo=lambda *_: None)

    return draw


def draw_demo(tmp_path):
    code, _, err = run_cli(["demo", "--steps", "50", "--out", tmp_path / "demo"])
    assert code == 0, err


@pytest.mark.parametrize("draw", [draw_sweep, draw_llm_curves, draw_reproduce("rec-counterexample"),
                                  draw_reproduce("llm-asymre-small"), draw_demo],
                         ids=["sweep", "llm curves", "reproduce", "reproduce llm", "demo"])
def test_every_figure_kind_is_set_in_matplotlibs_dejavu_sans(rivals, saved, tmp_path, draw):
    draw(tmp_path)
    assert saved
    for fig in saved:
        files, missing = text_fonts(fig)
        assert files <= DEJAVU_SANS, fig.get_suptitle()
        assert FONTS / "DejaVuSans.ttf" in files
        assert missing == set(), fig.get_suptitle()
