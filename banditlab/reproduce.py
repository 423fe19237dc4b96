"""`banditlab reproduce ID`: the papers' bandit figures, each from a config in experiments/reproduce/ID.toml.

Every experiment has two halves. `run` simulates and writes tidy files to figures/data/ID/. `plot` reads only those
files and draws figures/ID.png and .pdf, so `--plot-only` redraws any figure without rerunning. An experiment
whose data already exist is not rerun (use --force). `reproduce --all` therefore survives interruption one
experiment at a time: a data folder is complete only once its DONE marker is written (atomically, after every
data file); one without it is rerun. A data folder is locked while its experiment runs (a second `reproduce` of
it is refused). SIGTERM, like Ctrl-C, stops at once with one line and exit code 130 (banditlab.plumbing.folder).

Each experiment is one module beside its config, experiments/reproduce/ID.py + ID.toml (the way CleanRL keeps one
file per algorithm), discovered here: it defines CONFIG, SIMS (progress-bar steps), `run(cfg, data, tick)` and
FIGURES {figure id: (title, plot(cfg, data, out, plt))}. This module holds only the framework and the helpers the
modules share. The LLM experiment's module imports llm/; banditlab imports llm only to mount `banditlab llm`.
Deliberately left out: the papers' exact random draws (unpublished).
"""

from __future__ import annotations

import importlib.util
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from banditlab.errors import UsageError
from banditlab.plumbing.folder import is_complete, lock, mark_complete, stop_flag, unmark, write_arrays, write_table

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "experiments" / "reproduce"


# ------------------------------------------------------------------------------------------ shared helpers
def method(spec: list[str]):
    """["algo", "key=value", ...] → an Objective (the registry's CLI parser, so configs read like the CLI)."""
    from banditlab.registry.objectives import parse_algo_args

    return parse_algo_args(spec[0], list(spec[1:]))


def v_colors(values):
    import matplotlib as mpl

    cmap = mpl.colormaps["viridis"]
    return {v: cmap(i / max(1, len(values) - 1)) for i, v in enumerate(sorted(values))}


def methods_run(cfg, bandit, data, tick, record_every=0, mode="exact", seeds=1, behaviors=("fixed",), **kw):
    import pandas as pd

    from banditlab.science.simulator import run_grid

    frames, trajs = [], {}
    for label, spec in cfg["methods"].items():
        obj = method(spec)
        for beh in behaviors:
            off = [obj.params.get("offset", 0.0)]
            df, tr = run_grid(bandit, obj, off, seeds=seeds, mode=mode, steps=cfg["steps"], lr=cfg["lr"],
                              behavior=beh, record_every=record_every, progress=tick, **kw)
            frames.append(df.assign(method=label, behavior=beh))
            if tr is not None:
                trajs[label] = tr[:, 0, 0]
    df = pd.concat(frames)
    write_table(data / "steps.parquet", df.drop(columns=["baseline_offset", "baseline"]))
    if trajs:
        write_arrays(data / "policies.npz", **trajs, every=record_every)
    return df


@dataclass(frozen=True)
class Experiment:
    config: str                     # experiments/reproduce/<config>.toml and .py
    run: Callable | None            # None: reads another experiment's data (the same config's)
    plot: Callable
    title: str
    sims: int                       # progress-bar steps, roughly


def discover(folder: Path = CONFIGS) -> dict[str, Experiment]:
    """Every experiment module in `folder`, in a fixed order (bandit figures first, by file name)."""
    found = {}
    rank = {"asymre": 0, "rec": 1, "topr": 2, "staleness": 3, "algorithm": 4, "llm": 5}  # the figures index's order
    files = sorted(folder.glob("*.py"), key=lambda f: (rank.get(f.stem.split("-")[0], 4), f.stem))
    for f in files:
        spec = importlib.util.spec_from_file_location(f"banditlab_experiment_{f.stem.replace('-', '_')}", f)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        for i, (fig, (title, plot)) in enumerate(mod.FIGURES.items()):
            found[fig] = Experiment(mod.CONFIG, mod.run if i == 0 else None, plot, title, mod.SIMS if i == 0 else 0)
    return found


EXPERIMENTS = discover() if CONFIGS.is_dir() else {}
BANDIT_EXPERIMENTS = [k for k in EXPERIMENTS if not k.startswith("llm-")]


def load_config(name: str, configs: Path = CONFIGS) -> dict:
    """An experiment's TOML config; keys the shipped config does not have are refused (a typo would be ignored)."""
    from banditlab.plumbing.safeio import read_text

    path = Path(configs) / f"{name}.toml"
    if not path.exists():
        raise UsageError(f"ID: config {path} not found (reproduce runs from a source checkout)")
    try:
        cfg = tomllib.loads(read_text(path, "--configs"))
        shipped = CONFIGS / f"{name}.toml"
        if Path(configs) != CONFIGS and shipped.exists():
            schema = tomllib.loads(shipped.read_text())
            unknown = sorted(set(cfg) - set(schema))
            if unknown:
                raise UsageError(f"--configs: {path}: unknown key {unknown[0]!r}")
            for k, v in cfg.items():
                _check_value(v, schema[k], f"--configs: {path}: {k}")
        return cfg
    except FileNotFoundError:
        raise UsageError(f"ID: config {path} not found (reproduce runs from a source checkout)") from None
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"ID: {path} is not valid TOML: {err}") from None


COUNT_MAX = 10**9


def _check_value(value, shipped, where: str) -> None:
    """`value` has the shipped config's type for its key (an integer may stand for a float, a boolean for
    nothing else; list items like the shipped list's); numbers are finite and integers are counts in
    [0, COUNT_MAX]. Checked before any data folder is made."""
    import math

    kind = type(shipped)
    ok = type(value) is kind or (kind is float and type(value) is int)
    if not ok:
        raise UsageError(f"{where}: expected {kind.__name__}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise UsageError(f"{where}: expected a finite number, got {value!r}")
    if type(value) is int and not 0 <= value <= COUNT_MAX:
        raise UsageError(f"{where}: expected a count in [0, {COUNT_MAX:.0e}], got {value}")
    if isinstance(value, list) and shipped:
        if not value:
            raise UsageError(f"{where}: expected a non-empty list")
        for x in value:
            _check_value(x, shipped[0], where)


def check_figures(figures: Path) -> None:
    """--figures can hold the figures and their data: a creatable, writable folder."""
    import os

    from banditlab.plumbing.safeio import check_path

    figures = check_path(figures, "--figures")
    for d in [figures / "data", figures, *figures.parents]:  # the deepest folder that exists must be writable
        if d.exists():
            if not d.is_dir():
                raise UsageError(f"--figures: {d} is a file, not a folder")
            if not os.access(d, os.W_OK):
                raise UsageError(f"--figures: {d} is not writable")
            break


def reproduce(ids: list[str], figures: Path, force: bool = False, plot_only: bool = False,
              progress: bool = True, echo=print, configs: Path = CONFIGS) -> list[Path]:
    """Run (unless its data exist) and plot each experiment; return the figure paths."""
    from banditlab.plots import save, style

    unknown = [i for i in ids if i not in EXPERIMENTS]
    if unknown:
        raise UsageError(f"ID: unknown experiment {unknown[0]!r} (choose from: {', '.join(EXPERIMENTS)}, or --all)")
    check_figures(figures)
    for name in ids:  # every config read and checked before anything is written
        load_config(EXPERIMENTS[name].config, configs)
    plt = style(seaborn=True)
    made, ran = [], set()
    for name in ids:
        exp = EXPERIMENTS[name]
        cfg = load_config(exp.config, configs)
        data = figures / "data" / exp.config
        owner = EXPERIMENTS[exp.config]
        if not is_complete(data) or (force and exp.run is not None):
            if plot_only:
                raise UsageError(f"--plot-only: no data for {name} in {data}; run without --plot-only first")
            _run(exp.config, owner, cfg, data, progress)
            ran.add(exp.config)
        elif exp.config not in ran:
            echo(f"{name}: --plot-only: redrawing from {data}, running nothing" if plot_only else
                 f"{name}: data exist in {data}: redrawing only (--force reruns)")
        try:
            fig = exp.plot(cfg, data, figures / name, plt)
        except (OSError, KeyError, ValueError, TypeError, IndexError) as err:
            raise UsageError(f"{name}: cannot draw from {data}: its files are missing or damaged "
                             f"({type(err).__name__}); rerun with --force") from None
        made += save(fig, figures / name)
        plt.close(fig)
        echo(f"{name}: {figures / name}.png")
    return made


def _run(name: str, owner: Experiment, cfg: dict, data: Path, progress: bool) -> None:
    """Run one experiment into its locked data folder and mark it complete; a signal stops it at once, unmarked."""
    from banditlab.plumbing.progress import Bar

    data.mkdir(parents=True, exist_ok=True)
    held = lock(data, "--figures")
    try:
        unmark(data)
        with stop_flag(at_once="this experiment's data are incomplete and will be rerun"), \
                Bar(name, total=owner.sims, show=progress) as bar:
            owner.run(cfg, data, bar.advance if progress else None)
            mark_complete(data)
    except (KeyError, TypeError, ValueError) as err:
        raise UsageError(f"{name}.toml: a value has the wrong type or is missing "
                         f"({type(err).__name__}: {str(err)[:120]})") from None
    finally:
        held.close()
