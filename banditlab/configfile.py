"""Config files: one reader for `banditlab sweep --config` and `banditlab llm train --config`.

A TOML file holds any fields of the config dataclass (dashes or underscores), optionally under a [section]
table; `algo_args` may be a table ({a_neg = 0}) or a list (["a_neg=0"]). Precedence: command line (options that
were given) > file > dataclass defaults.
"""

from __future__ import annotations

import tomllib
from dataclasses import fields
from pathlib import Path

from .errors import UsageError


def read_toml(path: str, section: str | None = None) -> dict:
    try:
        data = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UsageError(f"--config: file not found: {path}") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise UsageError(f"--config: cannot read {path}: {err}") from None
    if section and isinstance(data.get(section), dict):
        data = data[section]
    data = {k.replace("-", "_"): v for k, v in data.items()}
    if isinstance(data.get("algo_args"), dict):
        data["algo_args"] = [f"{k}={v}" for k, v in data["algo_args"].items()]
    return data


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
    return cls(**base)


def _typed(f, value, path):
    """`value` checked against the field's declared type; one-line UsageError naming the key otherwise."""
    import math

    where = f"--config {path}: " if path else ""
    name = f"{where}{f.name}" if path else f"--{f.name.replace('_', '-')}"
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
