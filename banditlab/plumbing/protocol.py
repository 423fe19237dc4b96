"""The run protocol: the one life every run folder goes through, for `sweep`, `reproduce` and `llm train`.

    with Run.open(out, "sweep", identity, name=("sweep", algo)) as run:  # claim: kind + identity checked, locked
        if run.complete:                             # DONE is there: finished, nothing is rewritten
            return run.folder
        state = load(run.folder) or fresh            # resume from the folder's checkpoint, if it has one
        run.write_record({"sweep": config})          # config.json {"kind", "identity", ...}; DONE removed
        with run.running() as flag:                  # SIGINT/SIGTERM → flag["stop"], until DONE is written
            cadence = Cadence(seconds=10)            # checkpoints: every N steps or seconds, and the last
            for step in steps: ...; if cadence.due(step, final=flag["stop"]): save a checkpoint
            if stopped: raise Interrupted(...)       # the same command resumes from the checkpoint
            write every output; run.done()           # DONE, last

The helpers it strings together live in banditlab.plumbing.folder (claim, lock, record, marker, stop_flag,
Cadence). A command's own rules sit on top, through the options of `Run.check` and `Run.open`:
    option   the option that named the folder, in every message ("--out", "--figures")
    adopt    a folder holding files but no record is taken as this run's (reproduce's data folders that carry no
             record: a complete one stands as made from the current config)
    replace  a record of another identity is taken over instead of refused (`reproduce --force`)
    accept   accept(record) → True: a record of another identity this run may continue (`llm train --resume`
             to a new length); with replace, `changed` is True and `write_record(keep=True)` keeps its other keys
    remedy   the end of the line that refuses another identity ("choose another --out")
    writer   False on a distributed run's other ranks: they check, but claim, lock and write nothing
A command that must load something slow first (a model) calls `Run.check` with the same arguments before it,
and `Run.open` after; `Run.check` returns the record found, for rules of its own (llm train's --resume).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from banditlab.errors import UsageError
from banditlab.plumbing.folder import (Claim, check_claim, claim, identity_diff, is_complete, jsonable,
                                       mark_complete, read_record, stop_flag, unmark, write_record)


class Run:
    """A claimed run folder: `folder`, `kind`, `identity` (as JSON keeps it), `previous` (the record found, None
    for a new folder or one adopted without a record), `changed` (that record's identity differs and was taken
    over: `replace` or `accept`) and `writer`. The lock is held until `close()` or the end of a `with` block."""

    def __init__(self, folder: Path | None, kind: str, identity: dict, previous: dict | None, changed: bool,
                 held: Claim | None = None, writer: bool = True):
        self.folder, self.kind, self.identity = folder, kind, jsonable(identity)
        self.previous, self.changed, self.held, self.writer = previous, changed, held, writer

    # -------------------------------------------------------------------------------------- opening
    @staticmethod
    def check(out: Path | str | None, kind: str, identity: dict, *, name: tuple = (), option: str = "--out",
              adopt: bool = False, replace: bool = False, accept: Callable[[dict], bool] | None = None,
              remedy: str | None = None) -> tuple[dict | None, bool]:
        """Everything `open` would refuse, found without creating, locking or writing anything: (the record found
        in `out`, whether its identity differs and is taken over). Refused in one line: another kind of run,
        files without a record (unless `adopt`), another identity (unless `replace` or `accept(record)`)."""
        target = check_claim(out, kind, name, option, adopt)
        rec = read_record(target, option) if out and target.is_dir() else None
        diff = identity_diff(rec, identity)
        if diff and not replace and not (accept is not None and accept(rec)):
            raise UsageError(f"{option}: {target} holds a different run (differs in: {', '.join(diff)}); "
                             f"{remedy or f'choose another {option}'}")
        return rec, bool(diff)

    @classmethod
    def open(cls, out: Path | str | None, kind: str, identity: dict, *, name: tuple = (), option: str = "--out",
             adopt: bool = False, replace: bool = False, accept: Callable[[dict], bool] | None = None,
             remedy: str | None = None, writer: bool = True) -> "Run":
        """Check (`check`), then create and lock the folder (no `out`: a new one, default_name(*name)). The
        record is read again under the lock, so a run that wrote it meanwhile is seen."""
        if not writer:
            rec, changed = cls.check(out, kind, identity, name=name, option=option, adopt=adopt, replace=replace,
                                     accept=accept, remedy=remedy)
            return cls(Path(out) if out else None, kind, identity, rec, changed, None, writer=False)
        held = claim(out, kind, name, option, adopt)
        try:
            rec, changed = cls.check(held.folder, kind, identity, option=option, adopt=adopt, replace=replace,
                                     accept=accept, remedy=remedy)
        except BaseException:
            held.close()
            raise
        return cls(held.folder, kind, identity, rec, changed, held)

    def close(self) -> None:
        """Release the lock (the operating system also does when the process ends)."""
        if self.held is not None:
            self.held.close()
            self.held = None

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -------------------------------------------------------------------------------------- the run
    @property
    def complete(self) -> bool:
        """The folder holds this very run, finished (DONE); a taken-over record is never complete."""
        return self.folder is not None and not self.changed and is_complete(self.folder)

    def write_record(self, fields: dict | None = None, keep: bool = False) -> None:
        """config.json = {"kind", "identity", **fields} (`keep`: over the previous record's other keys), after
        removing DONE: from here until `done()` the folder holds an unfinished run. Nothing on a non-writer."""
        if not self.writer:
            return
        base = {k: v for k, v in (self.previous or {}).items() if k != "kind"} if keep else {}
        unmark(self.folder)
        write_record(self.folder, self.kind, {**base, "identity": self.identity, **(fields or {})})
        self.previous, self.changed = read_record(self.folder), False

    def unmark(self) -> None:
        """Remove DONE without touching the record (a run that reruns into its folder)."""
        if self.writer:
            unmark(self.folder)

    @contextmanager
    def running(self, at_once: str | None = None):
        """The stop flag (folder.stop_flag), held until the block ends: call `done()` inside it."""
        with stop_flag(at_once) as flag:
            yield flag

    def done(self) -> None:
        """DONE, written last, once every output exists. Nothing on a non-writer."""
        if self.writer:
            mark_complete(self.folder)
