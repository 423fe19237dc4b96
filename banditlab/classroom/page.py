"""`banditlab demo --html FILE`: the classroom demo as one self-contained web page.

A slider moves the baseline V across V^μ. Two presets:
  * a 3-armed bandit (by default REC's counterexample): paths of π_t on the simplex from several starts, J(π_t)
    over the steps, the limit J against V (Theorem 4.2 below V^μ, simulated ends above), the support size;
  * the AsymRE paper's 100-armed bandit: J(π_t), J and support of the limit against V, and π_T over the arms.
Every number is computed here in Python by the simulator (`simulate.run_grid`, exact expected updates) and the
theory (`theory.limit_policy`), and written into the page as SVG, one group per slider position; the page's few
lines of script only show the group of the slider's position. No network, no server, no library in the page.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from banditlab.science import bandits as B
from banditlab.science import theory
from banditlab.classroom.simplex import paths, to_xy
from banditlab.classroom.svg import COLORS, NOW_COLOR, VMU_COLOR, Chart, esc, frame_group, linear_ticks, svg

SUPPORT_EPS = theory.SUPPORT_EPS                # an arm is in the support when π(a) ≥ this (as in the simulator)
REC_OFFSETS = np.arange(-25, 16) * 0.02         # (V − V^μ) / (max r − min r) at the slider's positions, 3 arms
PAPER_OFFSETS = np.arange(-21, 15) * 0.025      # V − V^μ at the slider's positions, 100 arms
PAPER_STEPS = 20000                             # as experiments/reproduce/asymre-limit.toml
LOG_TICKS = [(0, "0"), (10, "10"), (100, "100"), (1000, "1000"), (10000, "10⁴")]


def log_steps(steps: int, n: int = 140) -> np.ndarray:
    """Record indices 0 and about n log-spaced steps up to `steps` (the dynamics move fastest at the start)."""
    return np.unique(np.concatenate([[0], np.round(np.geomspace(1, steps, n)).astype(int)]))


def logx(v):
    return np.log10(1.0 + np.asarray(v, float))


def fmt(p) -> str:
    return "[" + ", ".join(f"{v:.2f}" for v in p) + "]"


# ------------------------------------------------------------------------------------------------ 3 arms
def three_arm_data(bandit: B.Bandit, steps: int, lr: float, n_starts: int = 6) -> dict:
    """π_t from `n_starts` starts at every slider V (one vectorised exact run), and Theorem 4.2's limits."""
    mu, r = bandit.mu[0], bandit.means[0]
    vmu = bandit.v_mu_total
    Vs = vmu + REC_OFFSETS * (r.max() - r.min())  # the slider's positions scale with the rewards' range
    t = log_steps(steps)
    pis = paths(bandit, Vs, steps, lr, n_starts, record_every=1)[t]          # [T, V, starts, 3]
    J = np.apply_along_axis(theory.expected_reward, -1, pis, r)              # [T, V, starts]
    support = np.apply_along_axis(lambda p: theory.support_size(p), -1, pis[-1])
    star = [theory.limit_policy(mu, r, V) if off <= 0 else None for V, off in zip(Vs, REC_OFFSETS)]
    dense = np.linspace(Vs[0], vmu, 300)
    limits = [theory.limit_policy(mu, r, v) for v in dense]
    return {"bandit": bandit, "mu": mu, "r": r, "vmu": vmu, "Vs": Vs, "t": t, "pis": pis, "J": J,
            "support": support, "star": star, "dense": dense, "v1": theory.single_arm_from(mu, r)[0],
            "dense_J": np.array([theory.expected_reward(p, r) for p in limits]),
            "dense_support": np.array([theory.support_size(p) for p in limits])}


def simplex_xy(p):
    """Barycentric → the triangle's box: arm 1 bottom left, arm 2 bottom right, arm 3 on top."""
    x, y = to_xy(np.asarray(p))
    return 50 + 340 * x, 340 - 340 * y


def simplex_panel(d: dict, shown: int) -> str:
    r, mu = d["r"], d["mu"]
    corners = [simplex_xy(np.eye(3)[k]) for k in range(3)]
    tri = " ".join(f"{x:.1f},{y:.1f}" for x, y in corners)
    body = [f'<polygon points="{tri}" fill="#fafafa" stroke="#444" stroke-width="1.5"/>']
    for k, (x, y) in enumerate(corners):
        dy = [24, 24, -28][k]
        body.append(f'<text x="{x:.1f}" y="{y + dy:.1f}" class="label" text-anchor="middle">arm {k + 1}</text>'
                    f'<text x="{x:.1f}" y="{y + dy + 17:.1f}" class="tick" text-anchor="middle">r = {r[k]:g}</text>')
    for i in range(len(d["Vs"])):
        g = []
        for j in range(d["pis"].shape[2]):
            x, y = simplex_xy(d["pis"][:, i, j])
            pts = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(x, y))
            g.append(f'<polyline points="{pts}" fill="none" stroke="{COLORS[j]}" stroke-width="2.2"/>'
                     f'<circle cx="{x[0]:.1f}" cy="{y[0]:.1f}" r="5" fill="{COLORS[j]}"/>'
                     f'<path d="M{x[-1] - 6:.1f},{y[-1] - 6:.1f}l12,12m0,-12l-12,12" stroke="#111" '
                     f'stroke-width="3.5"/><path d="M{x[-1] - 6:.1f},{y[-1] - 6:.1f}l12,12m0,-12l-12,12" '
                     f'stroke="{COLORS[j]}" stroke-width="2"/>')
        if d["star"][i] is not None:
            x, y = simplex_xy(d["star"][i])
            g.append(f'<rect x="{x - 11:.1f}" y="{y - 11:.1f}" width="22" height="22" fill="none" stroke="#111" '
                     f'stroke-width="2.5"/>')
        body.append(frame_group(i, shown, "".join(g)))
    x, y = simplex_xy(mu)
    body.append(f'<text x="{x:.1f}" y="{y:.1f}" class="star" text-anchor="middle" dy="0.35em">★</text>')
    return svg(440, 390, "".join(body), "paths of the policy on the simplex of three arms")


def three_arm_step_panel(d: dict, shown: int) -> str:
    r = d["r"]
    span = r.max() - r.min()
    c = Chart((0, d["t"][-1]), (r.min() - 0.02 * span, r.max() + 0.02 * span), fx=logx)
    xt = [tk for tk in LOG_TICKS if tk[0] <= d["t"][-1]]
    yt = linear_ticks(r.min(), r.max(), 0.2 * span, "{:.3g}")
    body = [c.axes(xt, yt, "step t (log scale)", "J(πₜ) = Σ πₜ r"),
            c.hline(d["vmu"], VMU_COLOR, "6 4")]
    for i in range(len(d["Vs"])):
        g = [c.line(d["t"], d["J"][:, i, j], COLORS[j], 2.2) for j in range(d["J"].shape[2])]
        if d["star"][i] is not None:
            g.append(c.hline(theory.expected_reward(d["star"][i], r), "#111", "3 3", 2))
        body.append(frame_group(i, shown, "".join(g)))
    return svg(c.w, c.h, "".join(body), "expected reward over the steps")


def limit_panel(c: Chart, d: dict, dense_y, ends, shown: int, ylabel: str, yticks, xticks) -> str:
    """Theorem 4.2 against V (black), the simulated ends (one colour per start), V^μ, the slider's V."""
    Vs, vmu = d["Vs"], d["vmu"]
    body = [c.span(vmu, c.xlim[1], "#fbeaea"), c.axes(xticks, yticks, "baseline V", ylabel),
            c.vline(vmu, VMU_COLOR, "6 4", 2)]
    n = ends.shape[1]
    jitter = (np.arange(n) - (n - 1) / 2) * 0.004 * (c.xlim[1] - c.xlim[0])
    for j in range(n):
        body.append(c.dots(Vs + jitter[j], ends[:, j], COLORS[j], 2.5, ' opacity="0.8"'))
    body.append(c.line(d["dense"], dense_y, "#111", 3))
    for i, V in enumerate(Vs):
        g = [c.vline(V, NOW_COLOR, "", 2.5)]
        g += [c.dots([V + jitter[j]], [ends[i, j]], COLORS[j], 6, ' stroke="#111" stroke-width="1.2"')
              for j in range(n)]
        body.append(frame_group(i, shown, "".join(g)))
    return svg(c.w, c.h, "".join(body), ylabel + " against the baseline V")


def three_arm_text(d: dict, i: int) -> str:
    V, vmu, r = d["Vs"][i], d["vmu"], d["r"]
    off, p = V - vmu, d["star"][i]
    head = f"<b>V = {V:.2f}</b>, V − V<sup>μ</sup> = {off:+.2f}: "
    if p is not None and off < 0:
        return head + (f"below V<sup>μ</sup>. Every start meets at π* = {fmt(p)} (Theorem 4.2, the square), "
                       f"J(π*) = {theory.expected_reward(p, r):.3f} &gt; V<sup>μ</sup> = {vmu:.3f}; "
                       f"support {theory.support_size(p)} arms.")
    ends = d["pis"][-1, i].argmax(-1)
    where = ", ".join(f"arm {k + 1}: {int((ends == k).sum())}" for k in range(3) if (ends == k).any())
    tail = f"(starts ending on {where}); support {d['support'][i].max()} arm."
    if p is not None:  # V = V^μ
        k = int(p.argmax())
        return head + (f"at V<sup>μ</sup>, π concentrates on arm {k + 1} = argmax μ(r − V<sup>μ</sup>) "
                       f"(the square), r = {r[k]:g} {tail}")
    return head + f"above V<sup>μ</sup>: each start ends on one arm, which one depends on π<sub>0</sub> {tail}"


def three_arm_section(d: dict, shown: int, above: int) -> str:
    r, span = d["r"], d["r"].max() - d["r"].min()
    lim_c = Chart((d["Vs"][0] - 0.02 * span, d["Vs"][-1] + 0.02 * span), (r.min() - 0.03 * span, r.max() + 0.03 * span))
    sup_c = Chart(lim_c.xlim, (0.5, 3.5))
    xt = linear_ticks(*lim_c.xlim, 0.2 * span, "{:.3g}")
    yt = linear_ticks(r.min(), r.max(), 0.2 * span, "{:.3g}")
    starts = starts_key(d["J"].shape[-1])
    panels = [
        ("Paths of π<sub>t</sub> on the simplex", simplex_panel(d, shown),
         starts + "● start, ✕ end; ★ behaviour μ (the blue path starts there); "
                  "□ Theorem 4.2's π* (V ≤ V<sup>μ</sup>)"),
        ("Expected reward J(π<sub>t</sub>) over the steps", three_arm_step_panel(d, shown),
         starts + f"{key(VMU_COLOR, True)} J = V<sup>μ</sup> (the behaviour); {key('#111', True)} J(π*)"),
        ("The limit J(π<sub>∞</sub>) against V",
         limit_panel(lim_c, d, d["dense_J"], d["J"][-1], shown, "J of the limit", yt, xt),
         starts + f"{key('#111')} Theorem 4.2 (V ≤ V<sup>μ</sup>); dots: simulated J(π<sub>T</sub>); "
                  f"{key(VMU_COLOR, True)} V = V<sup>μ</sup> = {d['vmu']:.2f}; {key(NOW_COLOR)} the slider's V"),
        ("Support size of the limit",
         limit_panel(sup_c, d, d["dense_support"], d["support"].astype(float), shown,
                     f"arms with π ≥ {SUPPORT_EPS:g}", [(1, "1"), (2, "2"), (3, "3")], xt),
         starts + f"{key('#111')} Theorem 4.2's π*; dots: simulated π<sub>T</sub>. π* is one arm from "
                  f"V = {d['v1']:.2f} on, before V<sup>μ</sup>: once V<sup>μ</sup> − V is at most the lead "
                  f"of the largest μ(y)(r(y) − V) over the next, no other arm keeps probability "
                  f"(<code>theory.single_arm_from</code>)"),
    ]
    texts = [three_arm_text(d, i) for i in range(len(d["Vs"]))]
    return section("three", d, shown, texts, panels, above)


# ------------------------------------------------------------------------------------------------ 100 arms
def paper_data(lr: float, steps: int = PAPER_STEPS) -> dict:
    """J(π_t) from π₀ = μ at every slider V (one exact run), π_T, and Theorem 4.2's J and support against V."""
    from banditlab.registry.objectives import get_objective
    from banditlab.science.simulator import run_grid

    b = B.paper(noise="none")
    mu, r, vmu = b.mu[0], b.means[0], b.v_mu_total
    Vs = vmu + PAPER_OFFSETS
    every = 10  # logging every step would cost more than the run itself
    df, traj = run_grid(b, get_objective("asymre", baseline="absolute"), Vs, steps=steps, lr=lr, log_every=every,
                        record_every=steps)
    t = np.unique(np.round(log_steps(steps) / every).astype(int) * every)
    J = df.pivot(index="step", columns="run", values="expected_reward").loc[t].to_numpy()   # [T, V]
    support = df[df.step == df.step.max()].sort_values("run")["support_size"].to_numpy()
    dense = np.linspace(Vs[0], vmu, 400)
    summ = [theory.limit_summary(mu, r, v, eps=SUPPORT_EPS) for v in dense]
    star = [theory.limit_policy(mu, r, V) if off < 0 else None for V, off in zip(Vs, PAPER_OFFSETS)]
    return {"mu": mu, "r": r, "vmu": vmu, "Vs": Vs, "t": t, "J": J, "support": support, "piT": traj[-1, :, 0],
            "star": star, "dense": dense, "dense_J": np.array([s["theory_expected_reward"] for s in summ]),
            "dense_support": np.array([s["theory_support_size"] for s in summ])}


def paper_step_panel(d: dict, shown: int) -> str:
    c = Chart((0, d["t"][-1]), (0.5, 1.0), fx=logx)
    body = [c.axes(LOG_TICKS, linear_ticks(0.5, 1.0, 0.1, "{:.1f}"), "step t (log scale)", "J(πₜ)"),
            c.hline(d["vmu"], VMU_COLOR, "6 4", 2)]
    for i in range(len(d["Vs"])):
        g = [c.line(d["t"], d["J"][:, i], COLORS[0], 2.5)]
        if d["star"][i] is not None:
            g.append(c.hline(theory.expected_reward(d["star"][i], d["r"]), "#111", "3 3", 2))
        body.append(frame_group(i, shown, "".join(g)))
    return svg(c.w, c.h, "".join(body), "expected reward over the steps, 100 arms")


def arms_panel(d: dict, shown: int) -> str:
    c = Chart((0, 1), (0, 1), fy=np.sqrt)
    yt = [(v, f"{v:g}") for v in (0, 0.01, 0.05, 0.2, 0.5, 1)]
    body = [c.axes(linear_ticks(0, 1, 0.2, "{:.1f}"), yt, "mean reward r(a) of the arm", "probability (√ scale)"),
            c.dots(d["r"], d["mu"], "#888", 2.5)]
    for i in range(len(d["Vs"])):
        bars = (c.line([x, x], [0, y], COLORS[0], 2.5) for x, y in zip(d["r"], d["piT"][i]) if y >= SUPPORT_EPS)
        body.append(frame_group(i, shown, "".join(bars)))
    return svg(c.w, c.h, "".join(body), "final policy over the arms")


def paper_text(d: dict, i: int) -> str:
    V, vmu, p = d["Vs"][i], d["vmu"], d["star"][i]
    off, J, sup = V - vmu, d["J"][-1, i], d["support"][i]
    head = f"<b>V = {V:.3f}</b>, V − V<sup>μ</sup> = {off:+.3f}: "
    if p is not None:
        return head + (f"below V<sup>μ</sup> = {vmu:.3f}. Theorem 4.2: "
                       f"J(π*) = {theory.expected_reward(p, d['r']):.3f} on "
                       f"{theory.support_size(p)} arms; simulated after {d['t'][-1]} steps: "
                       f"J = {J:.3f} on {sup:.0f} arms.")
    return head + (f"{'at' if off == 0 else 'above'} V<sup>μ</sup> = {vmu:.3f}: the policy runs to one arm "
                   f"(simulated J = {J:.3f}, support {sup:.0f}); the best arm has r = {d['r'].max():.3f}.")


def paper_section(d: dict, shown: int) -> str:
    lim_c = Chart((d["Vs"][0] - 0.02, d["Vs"][-1] + 0.02), (0.5, 1.0))
    sup_c = Chart(lim_c.xlim, (0.8, 120), fy=np.log10)
    xt = linear_ticks(*lim_c.xlim, 0.2, "{:.1f}")
    sup_ticks = [(v, f"{v}") for v in (1, 3, 10, 30, 100)]
    panels = [
        ("Expected reward J(π<sub>t</sub>) from π<sub>0</sub> = μ", paper_step_panel(d, shown),
         f"{key(VMU_COLOR, True)} J = V<sup>μ</sup>; {key('#111', True)} J(π*), Theorem 4.2"),
        ("The limit J against V",
         limit_panel(lim_c, d, d["dense_J"], d["J"][-1][:, None], shown, "J of the limit",
                     linear_ticks(0.5, 1.0, 0.1, "{:.1f}"), xt),
         f"{key('#111')} Theorem 4.2; dots: simulated, {d['t'][-1]} steps; {key(NOW_COLOR)} the slider's V"),
        ("Support size of the limit",
         limit_panel(sup_c, d, d["dense_support"], d["support"][:, None], shown, f"arms with π ≥ {SUPPORT_EPS:g}",
                     sup_ticks, xt),
         f"{key('#111')} Theorem 4.2; dots: simulated (log scale)"),
        ("The final policy π<sub>T</sub> over the 100 arms", arms_panel(d, shown),
         f"bars: π<sub>T</sub>(a) ≥ {SUPPORT_EPS:g}; grey dots: the behaviour μ(a)"),
    ]
    texts = [paper_text(d, i) for i in range(len(d["Vs"]))]
    return section("paper", d, shown, texts, panels, nearest(d["Vs"], d["vmu"] + 0.1), hidden=True)


# ------------------------------------------------------------------------------------------------ the page
def key(color: str, dashed: bool = False) -> str:
    """A legend swatch: a short solid or dashed line."""
    return f'<i class="{"dash" if dashed else "line"}" style="border-color:{color}"></i>'


def starts_key(n: int) -> str:
    return "".join(f'<i class="dot" style="background:{COLORS[j]}"></i>' for j in range(n)) + \
        " one colour per start π<sub>0</sub>; "


def nearest(Vs, V: float) -> int:
    return int(np.argmin(np.abs(np.asarray(Vs) - V)))


def section(key: str, d: dict, shown: int, texts: list[str], panels, above: int, hidden: bool = False) -> str:
    """One preset: the slider with its jump buttons, the note per position, and the panels."""
    Vs, vmu = d["Vs"], d["vmu"]
    at = nearest(Vs, vmu)
    notes = "".join(frame_note(i, shown, t) for i, t in enumerate(texts))
    jumps = "".join(f'<button data-to="{k}">V {rel} V<sup>μ</sup></button>'
                    for k, rel in [(shown, "&lt;"), (at, "="), (above, "&gt;")])
    figs = "".join(f'<figure><figcaption>{title}</figcaption>{body}<p class="legend">{leg}</p></figure>'
                   for title, body, leg in panels)
    return (f'<section id="{key}" class="preset"{" hidden" if hidden else ""}><div class="controls">'
            f'<label for="{key}-v">baseline V</label><input id="{key}-v" type="range" min="0" max="{len(Vs) - 1}" '
            f'step="1" value="{shown}" list="{key}-ticks"><datalist id="{key}-ticks"><option value="{at}"></option>'
            f'</datalist><span class="range">{Vs[0]:.2f} … <b style="color:{VMU_COLOR}">V<sup>μ</sup> = {vmu:.3f}'
            f'</b> … {Vs[-1]:.2f}</span><span class="jump">{jumps}</span></div><div class="note">{notes}</div>'
            f'<div class="grid">{figs}</div></section>')


def frame_note(i: int, shown: int, text: str) -> str:
    return f'<p data-f="{i}"{"" if i == shown else " style=display:none"}>{text}</p>'


CSS = """
body{font:16px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1900px;
 padding:8px 16px;color:#111}
h1{font-size:1.35em;margin:4px 0}
button{font:inherit;border:1px solid #888;background:#f3f3f3;cursor:pointer}
nav{margin:6px 0}nav button{padding:6px 12px;margin:0 6px 6px 0;border-radius:6px}
nav button[aria-pressed=true]{background:#1f4e9c;color:#fff}
.controls{display:flex;flex-wrap:wrap;align-items:center;gap:4px 12px;position:sticky;top:0;background:#fff;
 padding:6px 0;z-index:1}
.controls input{flex:1 1 260px;min-width:200px;height:28px;accent-color:#1f4e9c}
.range{white-space:nowrap;font-size:.9em}
.jump button{font-size:.9em;padding:3px 8px;margin-right:4px;border-radius:5px}
.note{min-height:3em}.note p{margin:2px 0}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(420px,100%),1fr));gap:8px 18px}
figure{margin:0}figcaption{font-weight:600}svg{width:100%;height:auto;display:block;max-height:calc(100vh - 240px)}
svg text{font-family:inherit}.tick{font-size:15px;fill:#333}.label{font-size:17px;fill:#111}.star{font-size:30px}
.box{fill:none;stroke:#999}line.grid{stroke:#e4e4e4}
.legend{font-size:.85em;margin:2px 0 8px}.legend i{display:inline-block;vertical-align:middle;margin:0 3px}
i.dot{width:10px;height:10px;border-radius:50%}i.line,i.dash{width:22px;height:0;border-top:3px solid}
i.dash{border-top-style:dashed}
footer{font-size:.85em;color:#444;margin-top:10px}
"""

# the page's only script: show the slider position's groups, jump buttons, preset buttons; it computes nothing
SCRIPT = """
for (const sec of document.querySelectorAll('.preset')) {
  const s = sec.querySelector('input[type=range]');
  const show = () => {
    for (const g of sec.querySelectorAll('[data-f]')) g.style.display = g.dataset.f === s.value ? '' : 'none';
  };
  s.addEventListener('input', show);
  for (const b of sec.querySelectorAll('button[data-to]')) {
    b.addEventListener('click', () => { s.value = b.dataset.to; show(); });
  }
  show();
}
const presets = document.querySelectorAll('nav button');
for (const b of presets) b.addEventListener('click', () => {
  for (const o of presets) {
    o.setAttribute('aria-pressed', o === b);
    document.getElementById(o.dataset.p).hidden = o !== b;
  }
});
"""


def page(bandit: B.Bandit, steps: int, lr: float, below: float, above: float) -> str:
    """The whole page as one string: no timestamps, so the same arguments give the same bytes. The slider starts
    at the position nearest `below` (below V^μ); the "V > V^μ" button goes to the one nearest `above`."""
    d3, dp = three_arm_data(bandit, steps, lr), paper_data(lr)
    at = nearest(d3["Vs"], d3["vmu"])
    rec = np.allclose(d3["r"], [0, 0.8, 1]) and np.allclose(d3["mu"], [0.3, 0.6, 0.1])
    name3 = ("REC's counterexample (3 arms)" if rec else "3 arms") + f": r = {fmt(d3['r'])}, μ = {fmt(d3['mu'])}"
    three = three_arm_section(d3, min(nearest(d3["Vs"], below), at - 1), max(nearest(d3["Vs"], above), at + 1))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>banditlab: the phase transition at V = V^μ</title><style>{CSS}</style></head><body>
<h1>Off-policy REINFORCE with baseline V on a fixed behaviour μ: the phase transition at V = V<sup>μ</sup></h1>
<nav><button data-p="three" aria-pressed="true">{esc(name3)}</button><button data-p="paper" aria-pressed="false">
The AsymRE paper's bandit (100 arms)</button></nav>
{three}
{paper_section(dp, nearest(dp["Vs"], dp["vmu"] - 0.25))}
<footer>Expected (infinite-batch) updates Δl(y) = η μ(y)(r(y) − V) − η (V<sup>μ</sup> − V) π(y),
η = {lr:g};
3 arms: {steps} steps, 100 arms: {dp['t'][-1]} steps. Below V<sup>μ</sup> every start converges to Theorem 4.2's π*
(AsymRE, arXiv 2506.20520) and improves on μ; its support is one arm at the latest at V<sup>μ</sup> (earlier when one
arm's μ(y)(r(y) − V) leads the next by more than V<sup>μ</sup> − V); above V<sup>μ</sup> the policy collapses to one
arm. Every number on this page
was computed by banditlab's simulator and theory (<code>banditlab demo --html FILE</code>); the page only shows the
slider's precomputed frame.</footer>
<script>{SCRIPT}</script></body></html>
"""


def write_page(bandit: B.Bandit, steps: int, lr: float, below: float, above: float, path: Path) -> Path:
    """Write the page atomically (`runfolder.atomic_write`)."""
    from banditlab.plumbing.folder import atomic_write

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, page(bandit, steps, lr, below, above))
    return path
