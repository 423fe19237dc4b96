"""Methods as the experiment configs (experiments/reproduce/*.toml) name them, and their runs to tidy files.

A config's `[methods]` table maps a label to ["algo", "key=value", ...], read by the registry's own CLI parser so
that a config reads like the command line. `methods_run` runs every method of such a table on one bandit and writes
its steps (and, when recorded, its policies) into an experiment's data folder.
"""

from __future__ import annotations

from pathlib import Path

from banditlab.plumbing.folder import write_arrays, write_table


def method(spec: list[str]):
    """["algo", "key=value", ...] → an Objective (the registry's CLI parser, so configs read like the CLI)."""
    from banditlab.registry.objectives import parse_algo_args

    return parse_algo_args(spec[0], list(spec[1:]))


def methods_run(cfg: dict, bandit, data: Path, tick, record_every: int = 0, mode: str = "exact", seeds: int = 1,
                behaviors=("fixed",), **kw):
    """Every method of cfg["methods"] under every behaviour, cfg["steps"] steps at cfg["lr"], each at its own
    offset (0 where it has none): data/steps.parquet (a `method` and a `behavior` column), and with
    `record_every` the policies every that many steps, data/policies.npz (one array per method). Returns the
    tidy frame."""
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
    write_table(Path(data) / "steps.parquet", df.drop(columns=["baseline_offset", "baseline"]))
    if trajs:
        write_arrays(Path(data) / "policies.npz", **trajs, every=record_every)
    return df
