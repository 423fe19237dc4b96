"""Run folders: the helpers that decide what a run does to its folder, for `sweep`, `llm train` and `reproduce`;
banditlab.plumbing.protocol strings them into the one life of a run (claim → record → steps → outputs → DONE).

    config.json   the run record {"kind": "sweep" | "llm-train" | "reproduce", "identity": {...}, ...}: a folder of another kind,
                  or of the same kind with another identity (the options that determine the numbers), is refused
    .lock         an exclusive `flock` held for the whole run: a second run on the same folder is refused
    DONE          the completion marker, written atomically and last, after every output exists: a folder
                  without it is unfinished, and rerunning the same command finishes it (from its checkpoint)

    claim(out, kind)              every check before anything is written; locks the folder (no `out`: a new
                                  default folder runs/KIND-…-TIME, unique even for runs started in the same second)
    check_identity / write_record the run record: refused in one line naming the options that differ
    atomic_write / atomic_save /  a temporary file, then `os.replace`: a signal or a full disk leaves the old
      atomic_output               file or the new one, never half of one
    write_table / write_csv /     data files (Parquet, CSV, .npz), atomically; a file that already holds the
      write_arrays                same numbers to DIGITS significant digits is left byte for byte
    stop_flag()                   SIGINT/SIGTERM → a flag polled at step boundaries (or, `at_once`, an Interrupted)
    Cadence                       when to checkpoint: every N steps or N seconds, and on the last or a stopped step
    mark_complete / is_complete   the marker

Figures are not written atomically (a rerun redraws them before the marker), nor appended metrics rows
(`llm.train.read_metrics` drops a last row cut short). The stop handlers stay installed until the run has written
its marker. The lock is released by the operating system when the process ends, even after kill -9. Folders written
before run kinds existed are recognised by their config.json's keys. Progress bars: banditlab.plumbing.progress.Bar.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import time
from pathlib import Path

from banditlab.errors import UsageError

KINDS = ("sweep", "llm-train", "reproduce")
MARKER = "DONE"


class Interrupted(Exception):
    """A run stopped by a signal after saving its state; the CLI prints it and exits 130."""


# ------------------------------------------------------------------------------------------ atomic writes
def atomic_output(path: Path, write, option: str | None = None) -> None:
    """The one writer of every output: `write(tmp)` then rename tmp to `path`, so readers see the old file or the
    new one. A `path` that exists and is not a regular file (a device, a pipe, a symbolic link) is refused before
    anything is written (`safeio.replaceable`); so is a temporary name that is not a regular file. A failed write
    leaves no temporary file behind (it would hold the space a full disk needs)."""
    from banditlab.plumbing.safeio import replaceable

    path = replaceable(path, option)
    tmp = replaceable(path.with_name(path.name + ".tmp"), option)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, Exception) and not is_disk_full(err) and _nearly_full(path.parent):
            # libraries report ENOSPC in their own way (torch.save a RuntimeError, matplotlib's PDF writer an
            # AttributeError of its half-closed stream): a write that failed on a full disk is a full disk
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


def is_disk_full(err: BaseException) -> bool:
    """A write that failed because the disk (or the user's quota) is full; libraries differ in how they say it."""
    return (isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)) or \
        "No space left on device" in str(err) or "Disk quota exceeded" in str(err)


# ------------------------------------------------------------------------------------------ data files
DIGITS = 10
"""Significant digits to which a data file's numbers must agree with a rerun's for the file to be left as it is.
A rerun on another machine (another CPU's exp, another BLAS) moves float64 results in their last digits only, by
at most 3.6e-12 across figures/data; the figures resolve 1e-4 of an axis at best and the texts quote 4 digits.
Ten digits keep every drawn or quoted number with 6 digits to spare and lie well above that noise. The files
themselves hold every float64 exactly (CSV: the shortest text that reads back as the same number), so a figure
drawn from fresh data and one drawn from the committed data get the same numbers to those digits, and files that
are joined on a value (theory.csv's V with steps.parquet's) still match exactly."""
RTOL = 10.0 ** (1 - DIGITS)  # one unit of the 10th significant digit, relative
ATOL = 1e-11                 # values that are 0 up to that noise (a KL at π = μ, a loss that cancels)


def same_numbers(old, new) -> bool:
    """Two arrays of one shape, equal to DIGITS significant digits where numeric, |new − old| ≤ RTOL |old| + ATOL
    (NaN equals NaN), and exactly equal otherwise."""
    import numpy as np

    old, new = np.asarray(old), np.asarray(new)
    if old.shape != new.shape:
        return False
    if old.dtype.kind in "biuf" and new.dtype.kind in "biuf":
        return bool(np.allclose(new.astype(float), old.astype(float), rtol=RTOL, atol=ATOL, equal_nan=True))
    return old.tolist() == new.tolist()


def same_frame(old, new) -> bool:
    """Two tables with the same columns in the same order, and equal values (`same_numbers`)."""
    if list(old.columns) != list(new.columns) or len(old) != len(new):
        return False
    return all(same_numbers(old[c].to_numpy(), new[c].to_numpy()) for c in new.columns)


def _unchanged(path: Path, same, read) -> bool:
    """`path` exists and `same(read(path))`: then a data file is left as it is, byte for byte, so that rerunning
    an experiment on another machine leaves committed data untouched. An unreadable file is rewritten."""
    if not path.is_file():
        return False
    try:
        return same(read(path))
    except Exception:  # damaged or of another format: write it anew
        return False


def write_table(path: Path, df) -> bool:
    """A tidy table as Parquet, atomically (zstd, a third smaller than the default snappy on these tables), unless
    the file already holds these numbers to DIGITS digits (`same_frame`). Returns whether it was written."""
    import pandas as pd

    path = Path(path)
    if _unchanged(path, lambda old: same_frame(old, df), pd.read_parquet):
        return False
    atomic_output(path, lambda tmp: df.to_parquet(tmp, index=False, compression="zstd"))
    return True


def write_csv(path: Path, df) -> bool:
    """A table as CSV, atomically, unless the file already holds these numbers to DIGITS digits (`same_frame`, both
    tables parsed from CSV text the same way). Returns whether it was written."""
    import io

    import pandas as pd

    path = Path(path)
    text = df.to_csv(index=False)
    if _unchanged(path, lambda old: same_frame(old, pd.read_csv(io.StringIO(text))), pd.read_csv):
        return False
    atomic_write(path, text)
    return True


def write_arrays(path: Path, **arrays) -> bool:
    """Named arrays as .npz, atomically, unless the file already holds the same names and numbers to DIGITS digits
    (np.savez also stamps the time into the file, so an equal rewrite would still differ). Returns whether it was
    written."""
    import numpy as np

    path = Path(path)

    def same(old) -> bool:
        with old:
            return set(old.files) == set(arrays) and all(same_numbers(old[k], arrays[k]) for k in arrays)

    def save(tmp: Path) -> None:
        with tmp.open("wb") as f:  # a file object: given a name, np.savez would append ".npz" to it
            np.savez(f, **arrays)

    if _unchanged(path, same, np.load):
        return False
    atomic_output(path, save)
    return True


# ------------------------------------------------------------------------------------------ completion
def mark_complete(folder: Path) -> None:
    """The completion marker: call last, once every output of the run exists."""
    atomic_write(Path(folder) / MARKER, "complete\n")


def is_complete(folder: Path) -> bool:
    return (Path(folder) / MARKER).is_file()


def unmark(folder: Path) -> None:
    (Path(folder) / MARKER).unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------ stop signals
STOPPED: list[str] = []  # why a run was stopped at once (the CLI prints the last one)


@contextlib.contextmanager
def stop_flag(at_once: str | None = None):
    """Yields a dict whose "stop" turns True at the first SIGINT/SIGTERM; a second one raises KeyboardInterrupt
    at once, for a step that is stuck (the last checkpoint stays). With `at_once` (a message), the first signal
    raises Interrupted("stopped by SIGNAL; <at_once>") instead, for work that has no step boundary to stop at.
    A signal the process started out ignoring stays ignored (a script's background job ignores SIGINT from its
    start, as `nohup` does), so a run honours the same signals from its first second to its last. The previous
    handlers come back on exit."""
    flag = {"stop": False}

    def handler(signum, frame):
        name = signal.Signals(signum).name
        if at_once is not None:
            raise Interrupted(f"stopped by {name}; {at_once}")
        if flag["stop"]:
            STOPPED.append(f"stopped at once by a second {name}; the last checkpoint is kept and the same "
                           "command resumes")
            raise KeyboardInterrupt(STOPPED[-1])
        flag["stop"] = True
        if os.environ.get("RANK", "0") == "0":  # acknowledged at once: a step (a whole offline dataset) can be long
            os.write(2, f"banditlab: {name}: stopping at the next safe point, saving what is done (a second one "
                        "stops at once)\n".encode())

    old = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) is signal.SIG_IGN:
            continue
        try:
            old[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread
            pass
    try:
        yield flag
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


class Cadence:
    """When to write a checkpoint: `due(step, final)` is True every `steps` steps (step % steps == 0), once
    `seconds` have passed since the last True, and whenever `final` (the last step, or a stop was asked for)."""

    def __init__(self, steps: int | None = None, seconds: float | None = None):
        self.steps, self.seconds = steps, seconds
        self.last = time.monotonic()

    def due(self, step: int, final: bool = False) -> bool:
        now = time.monotonic()
        if final or (self.steps and step % self.steps == 0) or \
                (self.seconds is not None and now - self.last > self.seconds):
            self.last = now
            return True
        return False


# ------------------------------------------------------------------------------------------ kind and identity
def jsonable(x):
    """`x` as JSON keeps it: non-finite floats as strings, numpy scalars as Python numbers, tuples as lists."""
    import math

    import numpy as np

    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, np.generic):
        return x.item()
    return x


def read_record(folder: Path, option: str = "--out") -> dict | None:
    """The run record in `folder`/config.json (None: there is none); UsageError if it is unreadable."""
    from banditlab.plumbing.safeio import read_json

    f = Path(folder) / "config.json"
    if not f.exists():
        return None
    try:
        rec = read_json(f, option)
    except UsageError as err:
        raise UsageError(f"{option}: {f} is unreadable ({type(err).__name__}); move the folder aside or choose "
                         f"another {option}") from None
    if not isinstance(rec, dict):
        raise UsageError(f"{option}: {f} is not a banditlab run record")
    return rec


def read_metrics(path: Path, option: str) -> list[dict]:
    """The rows of a run's metrics.jsonl (`safeio.read_json_lines`; none when there is no file). A last line cut
    short (the process died while appending) is dropped; damage anywhere else, or a row without its integer step,
    is refused with its line."""
    from banditlab.plumbing.safeio import read_json_lines

    if not Path(path).exists():
        return []
    rows = read_json_lines(path, option, cut_last=True)
    for n, row in enumerate(rows, 1):
        if not isinstance(row, dict) or isinstance(row.get("step"), bool) or not isinstance(row.get("step"), int):
            raise UsageError(f"{option}: {path} row {n} is damaged (no integer step)")
    return rows


def kind_of(folder: Path, option: str = "--out") -> str | None:
    """The kind of run in `folder` (None: no config.json); UsageError if config.json is unreadable."""
    rec = read_record(folder, option)
    if rec is None:
        return None
    if "kind" in rec:
        return rec["kind"]
    if "sweep" in rec:
        return "sweep"
    if "config" in rec and "identity" in rec:
        return "llm-train"
    return "unknown"


def identity_diff(rec: dict | None, identity: dict) -> list[str]:
    """The keys in which the record's identity differs from `identity` (none: the same run, or no record)."""
    if rec is None:
        return []
    new, old = jsonable(identity), rec.get("identity")
    if old == new:
        return []
    old = old if isinstance(old, dict) else {}
    return sorted(k for k in new.keys() | old.keys() if k not in old or k not in new or old[k] != new[k])


def check_identity(folder: Path, identity: dict, option: str = "--out", remedy: str = "choose another --out"
                   ) -> dict | None:
    """The folder's run record, refused in one line when its identity is not `identity` (None: no record)."""
    rec = read_record(folder, option)
    diff = identity_diff(rec, identity)
    if diff:
        raise UsageError(f"{option}: {folder} holds a different run (differs in: {', '.join(diff)}); {remedy}")
    return rec


def write_record(folder: Path, kind: str, record: dict) -> None:
    """config.json = {"kind": kind, **record}, atomically (record holds "identity")."""
    atomic_write(Path(folder) / "config.json", json.dumps(jsonable({"kind": kind, **record}), indent=2, default=str))


# ------------------------------------------------------------------------------------------ names and the lock
def default_name(*parts: str, root: str | Path = "runs", now: float | None = None, suffix: str = "") -> Path:
    """root/PART-PART-…-YYYYmmdd-HHMMSS[suffix], the default run folder or result file (`claim` makes a folder
    unique when it creates it)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    return Path(root) / ("-".join([*(str(p) for p in parts), stamp]) + suffix)


def _create_new(base: Path) -> Path:
    """Create `base`, or base-2, base-3, … : the first that no one (no other process either) has created."""
    base.parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10**6):
        folder = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue
    raise UsageError(f"--out: too many folders named {base}-N; choose --out")


class Claim:
    """A locked run folder: `folder`, and the lock held until `close()` (or the process ends)."""

    def __init__(self, folder: Path, file):
        self.folder, self.file = folder, file

    def close(self) -> None:
        self.file.close()


def lock(folder: Path, option: str = "--out") -> Claim:
    """An exclusive lock on `folder` (a file `.lock` holding the owner's pid); refused when another run holds it."""
    import fcntl

    f = open(Path(folder) / ".lock", "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        pid = f.read().strip() or "?"
        f.close()
        raise UsageError(f"{option}: {folder} is in use by another run (pid {pid}); wait for it or choose another "
                         "folder") from None
    f.seek(0)
    f.truncate()
    f.write(str(os.getpid()))
    f.flush()
    return Claim(Path(folder), f)


def claim(out: Path | str | None, kind: str, name: tuple = (), option: str = "--out", adopt: bool = False
          ) -> Claim:
    """Check that `out` can hold a run of `kind` (`check_claim`), create it and lock it. Without `out`: a new
    folder default_name(*name)."""
    target = check_claim(out, kind, name, option, adopt)
    if not out:
        _create(target.parent, option)
        return lock(_create_new(target), option)
    return lock(_create(target, option), option)


def check_claim(out: Path | str | None, kind: str, name: tuple = (), option: str = "--out", adopt: bool = False
                ) -> Path:
    """The folder `claim` would take, with everything it would refuse found without creating or locking
    anything (for a command with slow work, loading a model, before it claims): a file in the way, a folder
    that cannot be written, or one holding another kind of run or other files (`adopt`: files without a record
    are taken as this kind's). `option` names the folder in messages."""
    from banditlab.plumbing.safeio import check_path

    target = check_path(out or default_name(*name), option)
    if out and target.is_dir():
        found = kind_of(target, option)
        if found is not None and found != kind:
            raise UsageError(f"{option}: {target} holds a {found} run, not a {kind} run; choose another folder")
        if found is None and not adopt and any(p.name != ".lock" for p in target.iterdir()):
            raise UsageError(f"{option}: {target} is not empty and holds no banditlab run; choose an empty or new "
                             "folder")
    for parent in [target, *target.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"{option}: {parent} is a file, not a folder")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise UsageError(f"{option}: cannot create {target}: permission denied in {parent}"
                                 if parent != target else f"{option}: {target} is not writable")
            break
    return target


def _create(out: Path, option: str = "--out") -> Path:
    """`out` and its parents created; a failure (a folder the OS refuses) in one line, a full disk raised."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        if is_disk_full(err):
            raise
        raise UsageError(f"{option}: cannot create {out}: {err.strerror or err}") from None
    return out
