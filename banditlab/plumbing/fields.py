"""Declared fields: the one schema of every command's options and config keys. A config dataclass declares each
field with `option` (or `ranged`): its help, its allowed range and how the command line spells it; the command
line (banditlab.cli.options), config files (banditlab.cli.configfile), the generated reference (docs/commands.md)
and `check_ranges` all read these declarations, so a range is written once.
"""

from __future__ import annotations

import math
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
