"""A minimal SVG chart writer for the classroom page (`banditlab demo --html`): axes, ticks, lines, dots.

Deliberately small: linear and log-like axes given as a mapping function, text as SVG text, numbers printed
with a fixed precision so that the same data always give the same bytes. No plotting logic lives in the
browser; the page only shows or hides groups that Python wrote here.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Callable

import numpy as np

# matplotlib's tab10, the colours of the static figure's paths
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
VMU_COLOR = "#d62728"   # the V = V^μ line, as in the static figures
NOW_COLOR = "#1f4e9c"   # the slider's current V


def num(x: float) -> str:
    """A coordinate with two decimals, without a trailing '.00' or '-0'."""
    s = f"{x:.2f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def esc(text: str) -> str:
    return escape(text, quote=True)


@dataclass
class Chart:
    """A plot box inside an SVG of size w × h; `fx`, `fy` map data to [0, 1] (default linear on the limits)."""

    xlim: tuple[float, float]
    ylim: tuple[float, float]
    w: int = 440
    h: int = 360
    left: int = 64
    right: int = 12
    top: int = 10
    bottom: int = 56
    fx: Callable | None = None
    fy: Callable | None = None

    def _unit(self, v, lim, f):
        v = np.asarray(v, float)
        if f is not None:
            return (f(v) - f(lim[0])) / (f(lim[1]) - f(lim[0]))
        return (v - lim[0]) / (lim[1] - lim[0])

    def x(self, v):
        return self.left + self._unit(v, self.xlim, self.fx) * (self.w - self.left - self.right)

    def y(self, v):
        return self.h - self.bottom - self._unit(v, self.ylim, self.fy) * (self.h - self.top - self.bottom)

    def axes(self, xticks, yticks, xlabel: str, ylabel: str) -> str:
        """Grid, tick labels and axis labels; ticks are (value, label) pairs."""
        x0, x1, y0, y1 = self.left, self.w - self.right, self.h - self.bottom, self.top
        out = [f'<rect x="{x0}" y="{y1}" width="{x1 - x0}" height="{y0 - y1}" class="box"/>']
        for v, lab in xticks:
            px = num(self.x(v))
            out.append(f'<line x1="{px}" x2="{px}" y1="{y1}" y2="{y0}" class="grid"/>')
            out.append(f'<text x="{px}" y="{y0 + 21}" class="tick" text-anchor="middle">{esc(lab)}</text>')
        for v, lab in yticks:
            py = num(self.y(v))
            out.append(f'<line x1="{x0}" x2="{x1}" y1="{py}" y2="{py}" class="grid"/>')
            out.append(f'<text x="{x0 - 6}" y="{py}" class="tick" text-anchor="end" dy="0.35em">{esc(lab)}</text>')
        out.append(f'<text x="{(x0 + x1) / 2:.0f}" y="{self.h - 8}" class="label" text-anchor="middle">'
                   f'{xlabel}</text>')
        out.append(f'<text transform="translate(17 {(y0 + y1) / 2:.0f}) rotate(-90)" class="label" '
                   f'text-anchor="middle">{ylabel}</text>')
        return "".join(out)

    def line(self, xs, ys, color: str, width: float = 2, dash: str = "", extra: str = "") -> str:
        pts = " ".join(f"{num(a)},{num(b)}" for a, b in zip(self.x(xs), self.y(ys)) if np.isfinite(b))
        d = f' stroke-dasharray="{dash}"' if dash else ""
        return f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="{width}"{d}{extra}/>'

    def dots(self, xs, ys, color: str, r: float = 3.5, extra: str = "") -> str:
        return "".join(f'<circle cx="{num(a)}" cy="{num(b)}" r="{r}" fill="{color}"{extra}/>'
                       for a, b in zip(self.x(xs), self.y(ys)) if np.isfinite(b))

    def vline(self, v: float, color: str, dash: str = "", width: float = 1.5) -> str:
        return self.line([v, v], [self.ylim[0], self.ylim[1]], color, width, dash)

    def span(self, lo: float, hi: float, color: str) -> str:
        """A shaded band lo ≤ x ≤ hi over the whole plot height."""
        a, b = self.x([lo, hi])
        return (f'<rect x="{num(a)}" y="{self.top}" width="{num(b - a)}" height="{self.h - self.top - self.bottom}" '
                f'fill="{color}"/>')

    def hline(self, v: float, color: str, dash: str = "", width: float = 1.5) -> str:
        return self.line([self.xlim[0], self.xlim[1]], [v, v], color, width, dash)


def svg(w: int, h: int, body: str, label: str) -> str:
    return (f'<svg viewBox="0 0 {w} {h}" role="img" aria-label="{esc(label)}">{body}</svg>')


def frame_group(i: int, shown: int, body: str) -> str:
    """One slider position's drawing; the page's script shows the group whose data-f is the slider's value."""
    hide = "" if i == shown else ' style="display:none"'
    return f'<g data-f="{i}"{hide}>{body}</g>'


def linear_ticks(lo: float, hi: float, step: float, fmt: str = "{:g}") -> list[tuple[float, str]]:
    first = np.ceil(lo / step - 1e-9) * step
    return [(float(v), fmt.format(round(float(v), 10) + 0.0)) for v in np.arange(first, hi + 1e-9, step)]
