"""The `banditlab` command line. Thin: every command resolves options into a config and calls the library.

Each command's options are the fields of one config dataclass (SweepConfig, TrainConfig, the small ones below):
name, default, help and range are written there once; banditlab.cli.options builds the options and their help from
them, and banditlab.cli.docs writes docs/commands.md. Options left unset fall back to `--config FILE.toml`, then
to the dataclass defaults, so a TOML file and the command line can be mixed. Bad input ends with one line on stderr naming the option, and exit code 2.
Heavy libraries (pandas, matplotlib, transformers) are imported inside the commands that need them.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import typer

from banditlab.cli.options import Controls, command, make, tidy_help
from banditlab.plumbing.fields import option
from banditlab.errors import RunFailed, UsageError
from banditlab.sweep import SweepConfig
from banditlab.plumbing.threads import ThreadsOption, use_threads

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Controlled experiments on off-policy REINFORCE (AsymRE, TOPR, REC).")


def version() -> str:
    """The installed package's version (its metadata); from a checkout that is not installed, its pyproject.toml's."""
    from importlib.metadata import PackageNotFoundError, version as installed
    from pathlib import Path

    try:
        return installed("banditlab")
    except PackageNotFoundError:
        import tomllib

        source = Path(__file__).resolve().parents[2] / "pyproject.toml"
        return tomllib.loads(source.read_text())["project"]["version"]


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"banditlab {version()}")
        raise typer.Exit(0)


@app.callback()
def _root(show_version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                            help="print the version and exit")):
    pass


# ----------------------------------------------------------------------------------------- options
THEORY_OPTIONS = ("baseline", "absolute", "bandit", "arms", "contexts", "bandit_seed", "rewards", "mu", "noise",
                  "threads")


@dataclass
class MergeConfig:
    shards: list = option(help="the finished shard folders (--shard 1/N ... N/N)", argument=True, metavar="SHARD_DIR")
    out: str = option(help="the merged run folder (new)")


@dataclass
class PlotConfig:
    runs: list = option(help="sweep or llm-train run folders", argument=True, metavar="RUN_DIR")
    out: str = option("", "LLM curves file, .png and .pdf", shown="RUN_DIR/curves for one run, ./curves for several")


@dataclass
class ReproduceConfig:
    ids: list = option(help="experiment IDs (see --list)", factory=list, argument=True, metavar="ID")
    all_: bool = option(False, "every bandit experiment (llm-* ones run by name: they take ~1 h)", flag="--all")
    list_: bool = option(False, "list the experiments and exit", flag="--list")
    force: bool = option(False, "rerun even if the data exist", flag="--force")
    plot_only: bool = option(False, "only plot: redraw the figures from FIGURES/data/ID/ without running anything",
                             flag="--plot-only")
    figures: str = option("figures", "output folder: ID.png/.pdf, data in data/")
    configs: str = option("", "folder of ID.toml configs", shown="experiments/reproduce")
    progress: bool = option(True, "show progress: a bar on a terminal, else a line on stderr every "
                                  "BANDITLAB_PROGRESS_SECONDS (30 s)", flag="--progress/--no-progress")


@dataclass
class DemoConfig:
    rewards: str = option("0,0.8,1", "mean rewards of the 3 arms")
    mu: str = option("0.3,0.6,0.1", "behaviour probabilities")
    below: float | None = option(None, "a V below V^μ (unset: V^μ − 0.28)")
    above: float | None = option(None, "a V above V^μ (unset: V^μ + 0.12)")
    steps: int = option(3000, "exact-update steps per path", 1, 10**6)
    lr: float = option(1.0, "learning rate", 0.0, 10.0, lo_open=True)
    out: str = option("figures/demo", "figure path without extension (.png and .pdf are written)")
    interactive: bool = option(False, "a window with a slider for V (needs a display)", flag="--interactive")
    html: str = option("", "write the self-contained web page with a slider for V to this file instead of the figure")


@dataclass
class AlgosConfig:
    references: bool = option(False, "print the parity table with Trinity-RFT, verl and TRL (Markdown)",
                              flag="--references")


# ----------------------------------------------------------------------------------------- commands
@command(app, SweepConfig, Controls)
def sweep(options: dict, controls: dict):
    """Sweep the baseline of an off-policy objective on a bandit; print the table, write tidy files and a figure."""
    from banditlab.cli.configfile import merged_config
    from banditlab.sweep import format_table, run_sweep

    ctl = make(Controls, controls)
    cfg = merged_config(SweepConfig, ctl.config or None, options, section="sweep")
    folder = run_sweep(cfg, progress=ctl.progress)  # sets the threads (banditlab.plumbing.threads)
    typer.echo(format_table(folder))


@command(app, MergeConfig, ThreadsOption, name="merge")
def merge_cmd(options: dict, threads: dict):
    """Join sharded sweep folders into one run folder, equal to the unsharded run's; print its table."""
    from pathlib import Path

    from banditlab.sweep import format_table, merge

    cfg = make(MergeConfig, options)
    use_threads(make(ThreadsOption, threads).threads)
    typer.echo(format_table(merge([Path(s) for s in cfg.shards], Path(cfg.out))))


@command(app, (SweepConfig, THEORY_OPTIONS), (Controls, ("config",)))
def theory(options: dict, controls: dict):
    """Print the closed-form limit (Theorem 4.2) for a bandit and baseline range, instantly, without simulating."""
    import numpy as np

    from banditlab.science import theory as T
    from banditlab.cli.configfile import merged_config
    from banditlab.sweep import make_bandit, parse_range

    cfg = merged_config(SweepConfig, make(Controls, controls).config or None, options, section="sweep")
    use_threads(cfg.threads)
    values = parse_range(cfg.baseline)
    b = make_bandit(cfg)
    work = len(values) * b.contexts * b.arms  # one closed form per baseline and context, each over the arms
    if len(values) * b.contexts > THEORY_FORMS_MAX:
        raise UsageError(f"--baseline × contexts: {len(values)} × {b.contexts} closed forms, over the "
                         f"{THEORY_FORMS_MAX} that keep `theory` to seconds; give fewer baselines or contexts")
    if work > THEORY_WORK_MAX:
        raise UsageError(f"--baseline × contexts × arms: {len(values)} × {b.contexts} × {b.arms} = {work:.2g} arms "
                         f"to solve for, over the {THEORY_WORK_MAX:.0e} that keep `theory` to seconds; give fewer "
                         "baselines, contexts or arms".replace("e+0", "e"))
    typer.echo(f"bandit {b.name}: {b.contexts} context(s) × {b.arms} arms, V^μ = {b.v_mu_total:.4f}, "
               f"best arm J = {float(b.context_probs @ b.means.max(-1)):.4f}")
    for x in range(b.contexts):
        m, r = b.mu[x], b.means[x]
        a = m * (r - T.v_mu(m, r))
        typer.echo(f"  context {x + 1}: V^μ = {T.v_mu(m, r):.4f}; at V = V^μ π concentrates on arm "
                   f"{int(a.argmax()) + 1} (r = {r[a.argmax()]:.4f}); best arm {int(r.argmax()) + 1} "
                   f"(r = {r.max():.4f}) [arms and contexts numbered from 1, as in the figures]")
    eps = cfg.support_eps  # the same support rule as `sweep`: π(a) ≥ eps
    typer.echo(f"{'δV':>7} {'V':>7} {'J(π*)':>8} {'support':>8} {'entropy':>8}  improves on V^μ   "
               f"(support: arms with π*(a) ≥ {eps:g}, as in sweep)")
    vmu = np.array([T.v_mu(m, r) for m, r in zip(b.mu, b.means)])
    for v in values:  # each context's limit, averaged with p(x) as in the sweep's summary.csv
        s = T.averaged_limit_summary(b.mu, b.means, np.full(b.contexts, v) if cfg.absolute else vmu + v,
                                     b.context_probs, eps)
        J, sup, ent = (s[k] for k in T.LIMIT_KEYS)
        off = v - b.v_mu_total if cfg.absolute else v
        V = v if cfg.absolute else b.v_mu_total + v
        if np.isnan(J):
            typer.echo(f"{off:>+7.3f} {V:>7.4f} {'—':>8} {'—':>8} {'—':>8}  depends on π₀ (V > V^μ): simulate")
        else:
            typer.echo(f"{off:>+7.3f} {V:>7.4f} {J:>8.4f} {sup:>8.1f} {ent:>8.3f}  {'yes' if J > b.v_mu_total else 'no'}")


# the work `theory` takes on: each bound about 5 s on one core of the 2-core Intel Xeon (idle)
THEORY_FORMS_MAX, THEORY_WORK_MAX = 2000, 5 * 10**6  # baselines × contexts; baselines × contexts × arms


@command(app, PlotConfig, ThreadsOption)
def plot(options: dict, threads: dict):
    """Redraw figures from run folders, without rerunning: a sweep's figure (RUN_DIR/sweep.png), and the
    curves of LLM runs, several overlaid (reward, accuracy, entropy, ratio range, KL, throughput)."""
    from pathlib import Path

    from banditlab.plumbing.folder import kind_of

    cfg = make(PlotConfig, options)
    use_threads(make(ThreadsOption, threads).threads)
    out = cfg.out
    folders = [Path(r) for r in cfg.runs]
    kinds = {}
    for p in folders:
        if not p.is_dir():
            raise UsageError(f"RUN_DIR: {p} is not a folder")
        kinds[p] = kind_of(p)
        if kinds[p] not in ("sweep", "llm-train"):
            raise UsageError(f"RUN_DIR: {p} holds {'no banditlab run' if kinds[p] is None else 'a ' + kinds[p] + ' run'}")
        need = ("summary.csv", "steps.parquet") if kinds[p] == "sweep" else ("metrics.jsonl",)
        if not all((p / f).exists() for f in need):
            raise UsageError(f"RUN_DIR: {p} is not a finished {kinds[p]} folder (no {' / '.join(need)})")
    llm = [p for p in folders if kinds[p] == "llm-train"]
    if out and not llm:
        raise UsageError("--out: names the LLM curves file, and no RUN_DIR is an LLM run; a sweep's figure is "
                         "redrawn in its own folder (RUN_DIR/sweep.png)")
    from banditlab.plumbing.safeio import writable_target

    for p in folders:  # a sweep's figure is redrawn inside its folder
        if kinds[p] == "sweep":
            writable_target(p / "sweep.png", "RUN_DIR")
    if llm and out:
        from banditlab.plots import check_figure

        check_figure(out, "--out")
    from banditlab.plots import read_metrics

    for p in llm:
        if not any(isinstance(r, dict) and isinstance(r.get("step"), (int, float)) and r["step"] >= 1
                   for r in read_metrics(p)):
            raise UsageError(f"RUN_DIR: {p} has no training step yet (metrics.jsonl holds step 0 only); nothing to "
                             "draw")
    files = []
    try:
        from banditlab.plots import plot_llm_runs, plot_sweep

        for p in folders:
            if kinds[p] == "sweep":
                files += plot_sweep(p)
        if llm:
            files += plot_llm_runs(llm, Path(out) if out else (llm[0] / "curves" if len(llm) == 1 else Path("curves")))
    except Exception as err:  # truncated csv, corrupt parquet, edited config.json
        from banditlab.plumbing.folder import is_disk_full

        if is_disk_full(err) or isinstance(err, UsageError):  # the disk-full line; a refusal of its own
            raise
        raise UsageError(f"RUN_DIR: cannot redraw {p}: its files are damaged ({type(err).__name__}: "
                         f"{str(err).splitlines()[0][:120] if str(err) else ''})") from None
    for f in files:
        typer.echo(f)


@command(app, ReproduceConfig, ThreadsOption)
def reproduce(options: dict, threads: dict):
    """Reproduce the papers' bandit figures from experiments/reproduce/*.toml into figures/ (--plot-only: only
    redraw them from figures/data/ID/, without running)."""
    from pathlib import Path

    from banditlab.reproduce import CONFIGS, EXPERIMENTS, bandit_experiments, reproduce as run

    c = make(ReproduceConfig, options)
    if c.list_:
        for k, e in EXPERIMENTS.items():
            typer.echo(f"{k:<25} {e.title}")
        return
    if not c.ids and not c.all_:
        raise UsageError("ID: name an experiment (banditlab reproduce --list) or pass --all")
    if c.force and c.plot_only:
        raise UsageError("--force and --plot-only: --force reruns, --plot-only never runs; give one")
    use_threads(make(ThreadsOption, threads).threads)
    run(bandit_experiments() if c.all_ else list(c.ids), Path(c.figures), force=c.force, plot_only=c.plot_only,
        progress=c.progress, echo=typer.echo,
        configs=Path(c.configs) if c.configs else CONFIGS)


@command(app, DemoConfig, ThreadsOption)
def demo(options: dict, threads: dict):
    """The classroom demo: the V-versus-V^μ phase transition on a 3-armed bandit, explained with numbers."""
    from banditlab.classroom.demo import run_demo

    c = make(DemoConfig, options)
    if c.html and c.out != DemoConfig.out:
        raise UsageError("--out: names the figure, and --html writes the page instead of it; give one of them")
    use_threads(make(ThreadsOption, threads).threads)
    run_demo(c.rewards, c.mu, c.below, c.above, c.steps, c.lr, c.out, c.interactive, echo=typer.echo,
             html=c.html or None)


@command(app, AlgosConfig)
def algos(options: dict):
    """List the objective registry with each objective's parameters."""
    from banditlab.registry.objectives import OBJECTIVES

    if make(AlgosConfig, options).references:
        from banditlab.registry.references import markdown

        typer.echo(markdown())
        return
    for o in OBJECTIVES.values():
        typer.echo(f"{o.name:<11} {o.summary}")
        typer.echo(" " * 12 + ", ".join(f"{k}={v}" for k, v in o.params.items()))


def _mount_plugins() -> None:
    """Command groups registered by other packages under the entry-point group `banditlab.commands` (this
    project's pyproject registers `llm = "banditlab_llm.cli:app"`): banditlab itself never imports the LLM package.
    Without installed metadata (a checkout on PYTHONPATH alone, see experiments/gpu/kit.py), the checkout's own
    pyproject.toml names them."""
    from importlib.metadata import EntryPoint, entry_points
    from pathlib import Path

    found = list(entry_points(group="banditlab.commands"))
    source = Path(__file__).resolve().parents[2] / "pyproject.toml"
    if not found and source.exists():  # run from a source checkout that is not installed (PYTHONPATH only)
        import tomllib

        table = tomllib.loads(source.read_text()).get("project", {}).get("entry-points", {})
        found = [EntryPoint(n, v, "banditlab.commands") for n, v in table.get("banditlab.commands", {}).items()]
    for ep in found:
        try:
            app.add_typer(ep.load(), name=ep.name)
        except ImportError:  # a plugin whose package is gone: its commands are simply absent
            pass


_mount_plugins()


def _click_errors() -> tuple:
    """Typer ≥ 0.29 vendors click (typer.TyperException); older releases raise click's own exceptions."""
    errors = [typer.TyperException] if hasattr(typer, "TyperException") else []
    try:
        import click

        errors.append(click.ClickException)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


def _working_directory() -> None:
    """A deleted working directory makes later libraries (oneMKL, torch) abort; say so in one line instead."""
    import os

    try:
        os.getcwd()
    except OSError:
        typer.echo("banditlab: error: the working directory no longer exists; cd to an existing folder", err=True)
        sys.exit(2)


def _os_error(e: OSError) -> tuple[str, int]:
    """The one line and exit code for a failed read or write: a full disk, a read-only or forbidden path."""
    from banditlab.plumbing.folder import is_disk_full

    where = f" writing {e.filename}" if getattr(e, "filename", None) else ""
    if is_disk_full(e):
        return (f"banditlab: error: the disk is full{where}; free some space and run the same command again "
                "(an unfinished run folder resumes; `llm train` with --resume)"), 1
    return f"banditlab: error: {e.strerror or e}{' at ' + str(e.filename) if e.filename else ''}", 2


def click_command():
    """The click command tree of `banditlab`, with its help tidied (banditlab.cli.options.tidy_help)."""
    cmd = typer.main.get_command(app)
    tidy_help(cmd)
    return cmd


def _repeated_option(cmd, argv: list[str]) -> str | None:
    """The first option given twice on the command line (click keeps the last, silently); options made to be
    repeated (--algo-arg, --set) are exempt, and a flag pair (--progress/--no-progress) counts as one option."""
    args = list(argv)
    while hasattr(cmd, "commands"):  # a group (click's, or the one typer vendors): descend to `llm train ...`
        i = next((k for k, a in enumerate(args) if not a.startswith("-")), None)
        sub = cmd.commands.get(args[i]) if i is not None else None
        if sub is None:
            return None
        cmd, args = sub, args[i + 1:]
    names = {n: p.name for p in cmd.params if p.param_type_name == "option" and not p.multiple
             for n in p.opts + p.secondary_opts}
    seen = {}
    for a in args[:args.index("--")] if "--" in args else args:
        name = a.split("=", 1)[0]
        if name in names:
            if names[name] in seen:
                return f"{seen[names[name]]} and {name}" if seen[names[name]] != name else name
            seen[names[name]] = name
    return None


def main(argv: list[str] | None = None) -> None:
    from banditlab.plumbing.folder import Interrupted

    _working_directory()
    cmd = click_command()
    twice = _repeated_option(cmd, sys.argv[1:] if argv is None else [str(a) for a in argv])
    if twice:
        typer.echo(f"banditlab: error: {twice}: the same option given twice; give it once", err=True)
        sys.exit(2)
    try:
        from banditlab.plumbing.environment import check

        check()
        code = cmd.main(args=argv, prog_name="banditlab", standalone_mode=False)
        if code == 130:  # typer turns KeyboardInterrupt into exit code 130 without a word
            from banditlab.plumbing.folder import STOPPED

            typer.echo(f"banditlab: {STOPPED[-1] if STOPPED else 'interrupted'}", err=True)
    except typer.Exit as e:
        code = e.exit_code
    except (Interrupted, typer.Abort, KeyboardInterrupt) as e:
        typer.echo(f"banditlab: {e or 'interrupted'}", err=True)
        code = 130
    except UsageError as e:
        typer.echo(f"banditlab: error: {e}", err=True)
        code = 2
    except RunFailed as e:
        typer.echo(f"banditlab: run failed: {e}", err=True)
        code = 1
    except _click_errors() as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # typer has printed the help already
            code = 2
        else:
            param = getattr(e, "param", None)
            if getattr(param, "opts", None) and getattr(e, "message", None):  # a value the parser refused
                msg = f"{max(param.opts, key=len)}: {e.message[:1].lower()}{e.message[1:]}"
            else:
                msg = e.format_message() if hasattr(e, "format_message") else str(e)
            typer.echo(f"banditlab: error: {' '.join(msg.split())}", err=True)
            code = 2
    except OSError as e:
        if __import__("os").environ.get("BANDITLAB_DEBUG"):
            raise
        line, code = _os_error(e)
        typer.echo(line, err=True)
    except RecursionError:
        typer.echo("banditlab: error: an input is nested too deeply (a path or a file)", err=True)
        code = 2
    except Exception as e:  # the last net: one line, never a traceback (BANDITLAB_DEBUG=1 shows it)
        import os

        if os.environ.get("BANDITLAB_DEBUG"):
            raise
        first = (str(e).strip().splitlines() or [""])[0][:300]
        typer.echo(f"banditlab: failed: {type(e).__name__}: {first} (set BANDITLAB_DEBUG=1 for the traceback)",
                   err=True)
        code = 1
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
