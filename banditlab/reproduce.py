"""`banditlab reproduce ID`: the papers' bandit figures, each from a config in experiments/reproduce/ID.toml.

Every experiment has two halves. `run` simulates and writes tidy files to figures/data/ID/. `plot` reads only those
files and draws figures/ID.png and .pdf, so `--plot-only` redraws any figure without rerunning. An experiment
whose data already exist is not rerun (use --force). A data folder is a run folder (banditlab.plumbing.protocol,
kind "reproduce"): locked while its experiment runs (a second `reproduce` of it is refused), complete only once its
DONE marker is written (atomically, after every data file; one without it is rerun, so `reproduce --all` survives
interruption one experiment at a time), and recorded in its config.json with the experiment's config as identity.
SIGTERM, like Ctrl-C, stops at once with one line and exit code 130.

Data made from another config are never redrawn as if they were this config's, nor silently replaced: every
named experiment's data folder is checked before anything runs, and one whose record names another config is
refused in one line (the differing keys) that points at --force, which reruns it from the current config (a rerun
can take an hour, and the data may be the committed ones). A data folder without a record (the committed
figures/data/*) stands as made from the current config: it is redrawn as it is, and gets its record when its
experiment next runs.

Each experiment is one module beside its config, experiments/reproduce/ID.py + ID.toml (the way CleanRL keeps one
file per algorithm): it defines CONFIG, SIMS (progress-bar steps), `run(cfg, data, tick)` and FIGURES {figure id:
(title, plot(cfg, data, out, plt))}. The modules are imported on first use of EXPERIMENTS (listing, running or
plotting), not with this module; what they share lives in banditlab.methods and banditlab.plots. The LLM
experiments' modules import llm/; banditlab imports llm only to mount `banditlab llm`. Deliberately left out: the
papers' exact random draws (unpublished).
"""

from __future__ import annotations

import importlib.util
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from banditlab.errors import UsageError
from banditlab.plumbing.folder import is_complete
from banditlab.plumbing.protocol import Run

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "experiments" / "reproduce"
KIND = "reproduce"


@dataclass(frozen=True)
class Experiment:
    config: str                     # experiments/reproduce/<config>.toml and .py
    run: Callable | None            # None: reads another experiment's data (the same config's)
    plot: Callable
    title: str
    sims: int                       # progress-bar steps, roughly
    check: Callable | None = None   # the module's check(cfg): its own values refused before any folder is made
    partial: bool = False           # PARTIAL = True: its plot draws the runs finished so far (--plot-only, unfinished)


def discover(folder: Path = CONFIGS) -> dict[str, Experiment]:
    """Every experiment module in `folder`, imported, in a fixed order (bandit figures first, by file name)."""
    found = {}
    rank = {"asymre": 0, "rec": 1, "topr": 2, "staleness": 3, "algorithm": 4, "llm": 5}  # the figures index's order
    files = sorted(folder.glob("*.py"), key=lambda f: (rank.get(f.stem.split("-")[0], 4), f.stem))
    for f in files:
        spec = importlib.util.spec_from_file_location(f"banditlab_experiment_{f.stem.replace('-', '_')}", f)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        for i, (fig, (title, plot)) in enumerate(mod.FIGURES.items()):
            found[fig] = Experiment(mod.CONFIG, mod.run if i == 0 else None, plot, title, mod.SIMS if i == 0 else 0,
                                    getattr(mod, "check", None), getattr(mod, "PARTIAL", False))
    return found


class Catalog(Mapping):
    """figure id → Experiment: `discover(folder)`, run on first use and kept."""

    def __init__(self, folder: Path):
        self.folder, self._found = Path(folder), None

    def _all(self) -> dict[str, Experiment]:
        if self._found is None:
            self._found = discover(self.folder) if self.folder.is_dir() else {}
        return self._found

    def __getitem__(self, key: str) -> Experiment:
        return self._all()[key]

    def __iter__(self):
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


EXPERIMENTS: Mapping[str, Experiment] = Catalog(CONFIGS)


def bandit_experiments() -> list[str]:
    """The figure ids `reproduce --all` draws: every experiment but the LLM ones."""
    return [k for k in EXPERIMENTS if not k.startswith("llm-")]


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
    from banditlab.plots import check_figure

    for name in ids:  # every figure's files writable before any experiment runs
        check_figure(figures / name, "--figures")
    rerun = {EXPERIMENTS[i].config for i in ids if force and EXPERIMENTS[i].run is not None}
    for name in ids:  # every config read, and its data folder checked against it, before anything is written
        config = EXPERIMENTS[name].config
        own = EXPERIMENTS[config].check
        if own is not None:
            try:
                own(load_config(config, configs))
            except UsageError as err:
                raise UsageError(f"{config}.toml: {err}") from None
        check_data(figures / "data" / config, config, load_config(config, configs), config in rerun, plot_only)
    plt = style(seaborn=True)
    made, ran = [], set()
    for name in ids:
        exp = EXPERIMENTS[name]
        cfg = load_config(exp.config, configs)
        data = figures / "data" / exp.config
        owner = EXPERIMENTS[exp.config]
        if plot_only and not is_complete(data) and EXPERIMENTS[exp.config].partial and data.is_dir():
            echo(f"{name}: --plot-only: the experiment is unfinished; drawing the runs finished so far")
        elif not is_complete(data) or (exp.config in rerun and exp.run is not None):
            if plot_only:
                raise UsageError(f"--plot-only: no data for {name} in {data}; run without --plot-only first")
            _run(exp.config, owner, cfg, data, progress, replace=exp.config in rerun)
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


def remedy(config: str, plot_only: bool) -> str:
    """The end of the line refusing a data folder made from another config."""
    return (f"made from another {config}.toml; " +
            ("rerun it with --force instead of --plot-only" if plot_only else "--force reruns it"))


def check_data(data: Path, config: str, cfg: dict, replace: bool, plot_only: bool) -> None:
    """`data` can hold this experiment's run: not another kind of run, nor data made from another config (unless
    `replace`, for --force); files without a record are taken as the current config's."""
    Run.check(data, KIND, cfg, option="--figures", adopt=True, replace=replace, remedy=remedy(config, plot_only))


def _run(name: str, owner: Experiment, cfg: dict, data: Path, progress: bool, replace: bool = False) -> None:
    """Run one experiment into its claimed data folder (record first, DONE last); a signal stops it at once,
    unmarked."""
    from banditlab.plumbing.progress import Bar

    with Run.open(data, KIND, cfg, option="--figures", adopt=True, replace=replace,
                  remedy=remedy(name, False)) as run:
        run.write_record({"experiment": name})
        try:
            with run.running(at_once="this experiment's data are incomplete and will be rerun"), \
                    Bar(name, total=owner.sims, show=progress) as bar:
                owner.run(cfg, data, bar.advance if progress else None)
                run.done()
        except (KeyError, TypeError, ValueError) as err:
            raise UsageError(f"{name}.toml: a value has the wrong type or is missing "
                             f"({type(err).__name__}: {str(err)[:120]})") from None
