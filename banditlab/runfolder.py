"""Run folders: each belongs to one kind of run and is locked while a run writes it.

    config.json   {"kind": "sweep" | "llm-train", ...}: written first; a folder of another kind is refused
    .lock         an exclusive `flock` held for the whole run: a second run on the same folder is refused

`claim(out, kind)` does every check before anything is written, and returns the open lock file (keep it open for
the run; the operating system releases it when the process ends, even after kill -9). Folders written before
run kinds existed are recognised by their config.json's keys.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import UsageError

KINDS = ("sweep", "llm-train")


def kind_of(folder: Path) -> str | None:
    """The kind of run in `folder` (None: no config.json); UsageError if config.json is unreadable."""
    f = folder / "config.json"
    if not f.exists():
        return None
    try:
        rec = json.loads(f.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UsageError(f"--out: {f} is unreadable ({type(err).__name__}); move the folder aside or choose "
                         "another --out") from None
    if not isinstance(rec, dict):
        raise UsageError(f"--out: {f} is not a banditlab run record")
    if "kind" in rec:
        return rec["kind"]
    if "sweep" in rec:
        return "sweep"
    if "config" in rec and "identity" in rec:
        return "llm-train"
    return "unknown"


def claim(out: Path, kind: str):
    """Check that `out` can hold a run of `kind` and lock it; returns the lock's open file."""
    import fcntl

    out = Path(out)
    for parent in [out, *out.parents]:
        if parent.exists() and not parent.is_dir():
            raise UsageError(f"--out: {parent} is a file, not a folder")
        if parent.exists():
            break
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"--out: cannot create {out}: {err.strerror or err}") from None
    if not os.access(out, os.W_OK):
        raise UsageError(f"--out: {out} is not writable")
    found = kind_of(out)
    if found is not None and found != kind:
        raise UsageError(f"--out: {out} holds a {found} run, not a {kind} run; choose another folder")
    if found is None and any(p.name != ".lock" for p in out.iterdir()):
        raise UsageError(f"--out: {out} is not empty and holds no banditlab run; choose an empty or new folder")
    lock = open(out / ".lock", "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.seek(0)
        pid = lock.read().strip() or "?"
        lock.close()
        raise UsageError(f"--out: {out} is in use by another run (pid {pid}); wait for it or choose another "
                         "folder") from None
    lock.seek(0)
    lock.truncate()
    lock.write(str(os.getpid()))
    lock.flush()
    return lock
