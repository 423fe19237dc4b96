"""Config files: `merged_config` is the one reader for `banditlab sweep --config` and `banditlab llm train --config`,
over the fields a config dataclass declares (banditlab.plumbing.fields: help, range, command-line spelling).

A TOML file holds any fields of the config dataclass (dashes or underscores), optionally under a [section]
table; `algo_args` may be a table ({a_neg = 0}) or a list (["a_neg=0"]). Precedence: command line (options that
were given) > file > dataclass defaults.
"""

from __future__ import annotations

import tomllib
from dataclasses import fields

from banditlab.errors import UsageError
from banditlab.plumbing.fields import check_ranges, option_name


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
        controls = {"config", "progress"}  # how the command runs, not what it runs: given on the command line
        hint = "; give it on the command line (--config and --progress are not config keys)" \
            if unknown[0] in controls else ""
        raise UsageError(f"--config: {path}: unknown key {unknown[0]!r}{hint}")
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
