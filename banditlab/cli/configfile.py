"""Config fields and config files. `option` declares a field of a command's config dataclass with its help, range
and command-line spelling (banditlab.cli.options turns the fields into the command's options); `check_ranges` enforces
the ranges; `merged_config` is the one reader for `banditlab sweep --config` and `banditlab llm train --config`.

A TOML file holds any fields of the config dataclass (dashes or underscores), optionally under a [section]
table; `algo_args` may be a table ({a_neg = 0}) or a list (["a_neg=0"]). Precedence: command line (options that
were given) > file > dataclass defaults.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import MISSING, field, fields

from banditlab.errors import UsageError


def option(default=MISSING, help: str = "", lo=None, hi=None, lo_open: bool = False, hi_open: bool = False, *,
           factory=None, flag: str | None = None, name: str | None = None, shown: str | None = None,
           argument: bool = False, metavar: str | None = None, cli: bool = True, outside: str = ""):
    """A config field that is also a command-line option: its one-line `help`, its allowed range [lo, hi] (ends
    open where asked, None for no bound; `check_ranges` enforces it before a command writes anything, adding the
    `outside` hint where a value out of range has another spelling) and how the command line spells it: `name`
    (default --field-name), `flag` for a boolean ("--offline/--online"), `shown` for the default of a text field
    whose empty value means something ("the hub"), `argument` for a positional argument, `cli=False` for a
    config-file key with no option. banditlab.cli.options builds the options from these."""
    meta = {"help": help, "flag": flag, "name": name, "shown": shown, "argument": argument, "metavar": metavar,
            "cli": cli, "outside": outside}
    if lo is not None or hi is not None:
        meta["range"] = (lo, hi, lo_open, hi_open)
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def ranged(default, lo=None, hi=None, lo_open: bool = False, hi_open: bool = False, help: str = ""):
    """`option` with its range first: a dataclass field whose allowed range is declared beside it."""
    return option(default, help, lo, hi, lo_open, hi_open)


def default_of(f):
    """The default value of a dataclass field (MISSING when it has none)."""
    return f.default_factory() if f.default_factory is not MISSING else f.default


def option_name(f) -> str:
    """How the command line spells a field: its declared name, else --field-name ("--list" for `list_`)."""
    return f.metadata.get("name") or "--" + f.name.rstrip("_").replace("_", "-")


def range_text(f) -> str:
    """The declared range of a field as text, "[1, 1e6]" or "(0, 1]"; "" when it declares none."""
    if "range" not in f.metadata:
        return ""
    lo, hi, lo_open, hi_open = f.metadata["range"]
    return f"{'(' if lo_open else '['}{_bound(lo, '-inf')}, {_bound(hi, 'inf')}{')' if hi_open else ']'}"


def _bound(x, none: str) -> str:
    if x is None:
        return none
    if isinstance(x, int) and x >= 2**20 and x & (x - 1) == 0:
        return f"2^{x.bit_length() - 1}"
    return f"{x:g}".replace("e+0", "e").replace("e+", "e")  # 1e6, not 1e+06


def check_ranges(cfg) -> None:
    """UsageError naming the first field of `cfg` outside its declared range."""
    for f in fields(cfg):
        if "range" not in f.metadata or getattr(cfg, f.name) is None:
            continue
        lo, hi, lo_open, hi_open = f.metadata["range"]
        v = getattr(cfg, f.name)
        ok = (lo is None or (v > lo if lo_open else v >= lo)) and (hi is None or (v < hi if hi_open else v <= hi))
        if not ok or (isinstance(v, float) and not math.isfinite(v)):
            hint = f" ({f.metadata['outside']})" if f.metadata.get("outside") else ""
            raise UsageError(f"{option_name(f)}: must be in {range_text(f)}, got {v!r}{hint}")


def read_toml(path: str, section: str | None = None) -> dict:
    """The keys of a TOML config: its [section] table, or its top level when it has no such table (not both)."""
    from banditlab.plumbing.safeio import read_text

    try:
        data = tomllib.loads(read_text(path, "--config"))
    except (tomllib.TOMLDecodeError, RecursionError) as err:
        raise UsageError(f"--config: {path} is not valid TOML: {str(err)[:200] or type(err).__name__}") from None
    if section and isinstance(data.get(section), dict):
        others = sorted(k for k in data if k != section)
        if others:
            raise UsageError(f"--config: {path}: key {others[0]!r} sits beside the [{section}] table; put every "
                             f"key under [{section}] or none")
        data = data[section]
    keys = [k.replace("-", "_") for k in data]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise UsageError(f"--config: {path}: key {dup[0]!r} is given twice (with a dash and an underscore)")
    data = {k.replace("-", "_"): v for k, v in data.items()}
    if isinstance(data.get("algo_args"), dict):
        data["algo_args"] = [f"{k}={_toml_value(v)}" for k, v in data["algo_args"].items()]
    return data


def _toml_value(v) -> str:
    """A TOML value as the `--algo-arg key=value` text that means it (true → "true", not Python's "True")."""
    return str(v).lower() if isinstance(v, bool) else str(v)


def check_algo_args(args: list[str]) -> None:
    """Each `--algo-arg` is key=value and names its key once (the objective registry checks keys and values)."""
    keys = []
    for a in args:
        if "=" not in a:
            raise UsageError(f"--algo-arg: expected key=value, got {a!r}")
        keys.append(a.split("=", 1)[0].strip().replace("-", "_"))
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise UsageError(f"--algo-arg: {dup[0]} is given twice")


def merged_config(cls, path: str | None, options: dict, section: str | None = None):
    """An instance of the dataclass `cls` from the file at `path` (if any) overridden by the non-None options."""
    names = {f.name for f in fields(cls)}
    base = read_toml(path, section) if path else {}
    unknown = sorted(set(base) - names)
    if unknown:
        raise UsageError(f"--config: {path}: unknown key {unknown[0]!r}")
    base.update({k: v for k, v in options.items() if v is not None and k in names})
    for f in fields(cls):  # numbers given where the dataclass wants text (baseline = 0.1)
        if f.type in ("str", str) and isinstance(base.get(f.name), (int, float)) and not isinstance(
                base.get(f.name), bool):
            base[f.name] = str(base[f.name])
    for f in fields(cls):
        if f.name in base:
            base[f.name] = _typed(f, base[f.name], path if f.name not in options or options[f.name] is None else None)
    if "algo_args" in base:
        check_algo_args(base["algo_args"])
    cfg = cls(**base)
    check_ranges(cfg)
    return cfg


def _typed(f, value, path):
    """`value` checked against the field's declared type; one-line UsageError naming the key otherwise."""
    import math

    where = f"--config {path}: " if path else ""
    name = f"{where}{f.name}" if path else option_name(f)
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    if kind.startswith("float"):
        if value is None and "None" in kind:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UsageError(f"{name}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise UsageError(f"{name}: expected a finite number, got {value!r}")
        return float(value)
    if kind == "int":
        if isinstance(value, float) and value.is_integer() and math.isfinite(value):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(f"{name}: expected an integer, got {value!r}")
        if abs(value) >= 2**63:
            raise UsageError(f"{name}: {value} is out of range (|n| < 2^63)")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise UsageError(f"{name}: expected true or false, got {value!r}")
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise UsageError(f"{name}: expected text, got {value!r}")
        return value
    if kind == "list":
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise UsageError(f"{name}: expected a list of key=value strings, got {value!r}")
        return value
    return value
