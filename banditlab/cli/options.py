"""Command-line options built from config dataclasses: a field's name, default, help and range are written once,
in the dataclass (`banditlab.cli.configfile.option`), and every command's options, its `--help` and docs/commands.md
are made from them.

    @command(app, SweepConfig, Controls)
    def sweep(options: dict, controls: dict): ...

The command receives, per dataclass, a dict of the options given on the command line (nothing for an option left
at its default), so a `--config FILE.toml` can fill the rest. `tidy_help` drops the `<bool>` type that the help
would otherwise print beside flags.
"""

from __future__ import annotations

import inspect
from dataclasses import MISSING, dataclass, fields
from typing import List, Optional

import typer

from banditlab.plumbing.fields import default_of, option, option_name

from banditlab.cli.configfile import merged_config

@dataclass
class Controls:
    """How a command runs, beside its config: where its config file is, whether a bar shows progress."""

    config: str = option("", "a TOML file with this command's run options, all but --config and --progress (the "
                              "command line wins)")
    progress: bool = option(True, "show progress: a bar on a terminal, else a line every BANDITLAB_PROGRESS_SECONDS (30 s)", flag="--progress/--no-progress")


def make(cls, given: dict):
    """The dataclass `cls` from the options given on the command line (defaults for the rest), types and declared
    ranges checked: one-line UsageError otherwise."""
    return merged_config(cls, None, given)


_TYPES = {"int": int, "float": float, "str": str, "bool": bool, "list": List[str]}


def cli_fields(spec) -> list:
    """The fields of a spec that are command-line options: a dataclass, or (dataclass, field names) for a part."""
    cls, names = spec if isinstance(spec, tuple) else (spec, None)
    return [f for f in fields(cls) if f.metadata.get("cli", True) and (names is None or f.name in names)]


def _annotation(f):
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    base = _TYPES[kind.split("|")[0].strip()]
    return base if f.metadata.get("argument") and default_of(f) is MISSING else Optional[base]


def shown_default(f) -> str | None:
    """The default as `--help` shows it: the declared text, else the value (a flag pair: the name that is on);
    None where there is nothing to show (no default, an empty one, an unset flag)."""
    value = default_of(f)
    if f.metadata.get("shown"):
        return f.metadata["shown"]
    if value is MISSING or value is None or value == "" or value == []:
        return None
    if isinstance(value, bool):
        flags = (f.metadata.get("flag") or "").split("/")
        return flags[0 if value else 1].lstrip("-") if len(flags) == 2 else None
    return str(value)


def _param(f):
    """The typer Option or Argument of a field. Its default is the field's, for the help to show; whether the user
    gave it is read from click's parameter source, so the default itself is never passed on."""
    m, value = f.metadata, default_of(f)
    required = value is MISSING
    shown = shown_default(f)
    if m.get("argument"):
        return typer.Argument(... if required else None, help=m.get("help", ""), metavar=m.get("metavar"),
                              show_default=False)
    default = ... if required else m.get("shown") or (None if value is None or isinstance(value, list) else value)
    decls = [m["flag"]] if m.get("flag") else [option_name(f)]
    return typer.Option(default, *decls, help=m.get("help", ""), metavar=m.get("metavar"),
                        show_default=shown is not None)


def command(app: typer.Typer, *specs, name: str | None = None):
    """Register `fn` as a command of `app` whose options are the fields of `specs` (dataclasses, or (dataclass,
    field names) pairs); `fn` is called with one dict per spec of the options the user gave."""

    def decorate(fn):
        owner, params = {}, [inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)]
        for i, spec in enumerate(specs):
            for f in cli_fields(spec):
                assert f.name not in owner, f"{f.name} is an option of two specs"
                owner[f.name] = i
                params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=_param(f),
                                                annotation=_annotation(f)))

        def run(ctx: typer.Context, **values):
            given = [{} for _ in specs]
            for key, value in values.items():
                source = ctx.get_parameter_source(key)
                if source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP"):
                    given[owner[key]][key] = list(value) if isinstance(value, tuple) else value
            return fn(*given)

        run.__signature__ = inspect.Signature(params)
        run.__annotations__ = {p.name: p.annotation for p in params}
        run.__name__, run.__doc__, run.__module__ = fn.__name__, fn.__doc__, fn.__module__
        run.specs = specs  # for banditlab.cli.docs
        app.command(name)(run)
        return fn

    return decorate


def tidy_help(cmd) -> None:
    """Flags take no value: no `<bool>` type beside them (nor beside --help) in any command's help; a required
    argument reads RUN_DIR... in the usage line, as in a man page (typer would write {RUN_DIR}...)."""
    for sub in getattr(cmd, "commands", {}).values():
        tidy_help(sub)
    ctx = cmd.context_class(cmd, info_name=cmd.name)
    for p in [*cmd.params, cmd.get_help_option(ctx)]:
        if p is not None and getattr(p, "is_flag", False):
            p.metavar = ""
        if p is not None and p.param_type_name == "argument" and p.required:
            p._usage_display_name = lambda p=p: p.display_name_raw + ("..." if p.nargs != 1 else "")
