"""Run folders: each belongs to one kind of run and is locked while a run writes it.

    config.json   {"kind": "sweep" | "llm-train", ...}: written first; a folder of another kind is refused
    .lock         an exclusive `flock` held for the whole run: a second run on the same folder is refused
    DONE          the completion marker, written atomically and last, after every output exists: a folder
                  without it is unfinished, and rerunning the same command finishes it (from its checkpoint)

Checkpoints, run records and tables are written through `atomic_write` / `atomic_save` / `atomic_output` (a
temporary file, then `os.replace`), so a signal or a full disk leaves the old file or the new one, never half of
one. Figures are not (a rerun redraws them before the marker), nor appended metrics rows (`llm.train.
read_metrics` drops a last row cut short). `stop_flag()` turns the first
SIGINT/SIGTERM into a flag that the run polls at step boundaries (a second one interrupts at once); it stays
installed until the run has written its marker.

`claim(out, kind)` does every check before anything is written, and returns the open lock file (keep it open for
the run; the operating system releases it when the process ends, even after kill -9). Folders written before
run kinds existed are recognised by their config.json's keys.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
from pathlib import Path

from .errors import UsageError

KINDS = ("sweep", "llm-train")
MARKER = "DONE"


class Interrupted(Exception):
    """A run stopped by a signal after saving its state; the CLI prints it and exits 130."""


def atomic_output(path: Path, write) -> None:
    """`write(tmp)` then rename tmp to `path`: readers see the old file or the new one. A failed write leaves no
    temporary file behind (it would hold the space a full disk needs)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, RuntimeError) and _nearly_full(path.parent):  # torch.save reports ENOSPC this way
            raise OSError(errno.ENOSPC, "No space left on device", str(path)) from None
        raise


def atomic_write(path: Path, data: str | bytes) -> None:
    """Text or bytes to `path`, atomically."""
    atomic_output(path, lambda tmp: tmp.write_bytes(data.encode() if isinstance(data, str) else data))


def atomic_save(path: Path, obj) -> None:
    """torch.save(obj) to `path` atomically (tensors and plain data only, so `safeio.load_tensors` reads it)."""
    import torch

    atomic_output(path, lambda tmp: torch.save(obj, tmp))


def _nearly_full(folder: Path) -> bool:
    import shutil

    try:
        return shutil.disk_usage(folder).free < 2**20
    except OSError:
        return False


def mark_complete(folder: Path) -> None:
    """The completion marker: call last, once every output of the run exists."""
    atomic_write(Path(folder) / MARKER, "complete\n")


def is_complete(folder: Path) -> bool:
    return (Path(folder) / MARKER).is_file()


def unmark(folder: Path) -> None:
    (Path(folder) / MARKER).unlink(missing_ok=True)


def is_disk_full(err: BaseException) -> bool:
    """A write that failed because the disk (or the user's quota) is full; libraries differ in how they say it."""
    return (isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)) or \
        "No space left on device" in str(err) or "Disk quota exceeded" in str(err)


STOPPED: list[str] = []  # why a run was stopped at once (the CLI prints the last one)


@contextlib.contextmanager
def stop_flag():
    """Yields a dict whose "stop" turns True at the first SIGINT/SIGTERM; a second one raises KeyboardInterrupt
    at once, for a step that is stuck (the last checkpoint stays). The previous handlers come back on exit."""
    flag = {"stop": False}

    def handler(signum, frame):
        if flag["stop"]:
            STOPPED.append(f"stopped at once by a second {signal.Signals(signum).name}; the last checkpoint is "
                           "kept and the same command resumes")
            raise KeyboardInterrupt(STOPPED[-1])
        flag["stop"] = True

    old = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            old[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread
            pass
    try:
        yield flag
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


def kind_of(folder: Path) -> str | None:
    """The kind of run in `folder` (None: no config.json); UsageError if config.json is unreadable."""
    from .safeio import read_text

    f = Path(folder) / "config.json"
    if not f.exists():
        return None
    try:
        rec = json.loads(read_text(f, "--out"))
    except (UsageError, json.JSONDecodeError, RecursionError) as err:
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

    from .safeio import check_path

    out = check_path(out, "--out")
    for parent in [out, *out.parents]:
        if parent.exists() and not parent.is_dir():
            raise UsageError(f"--out: {parent} is a file, not a folder")
        if parent.exists():
            break
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        if is_disk_full(err):
            raise
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
