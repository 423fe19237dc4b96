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
    try:
        return cls(**base)
    except TypeError as err:
        raise UsageError(f"--config: {err}") from None
