"""The trainer's run folder and checkpoints.

Run folder lifecycle: the run protocol (banditlab.plumbing.protocol.Run, kind "llm-train"), with the trainer's own
rules on top (`rules`, `check_out`):
    check_out   before anything is loaded (`Run.check`): --out can hold this run, and --resume is given exactly
                when it holds one (of the same configuration, or the same but for its length: `extension`)
    open_run    `Run.open`, by the main process only (the others check and write nothing): the folder claimed and
                locked until the run ends; a new run records its identity in config.json (the DONE marker removed)
                and starts metrics.jsonl empty; a resumed one reloads the checkpoint, cuts metrics.jsonl back to the
                checkpoint's step and, when made longer, records its new length
    DONE        `Run.done` once the last step is saved; a complete run asked again returns (`complete`: at once,
                before anything is loaded, for `train.train`)
checkpoint.pt   {step, policy (the LoRA tensors), behaviour, behaviour_version, history, optimizer, rng}, written
                after the adapter folder (`save_adapter`), so a checkpoint's step never runs ahead of the adapter.

A run resumes with --resume; with the constant schedule it may also be made longer (--resume with a larger
--steps or --epochs): batches are a pure function of the step, so the longer run is the one that would have been
trained from the start (`extension`).
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from banditlab.errors import UsageError
from banditlab.plumbing.folder import atomic_save, atomic_write, is_complete, is_disk_full, jsonable, read_record
from banditlab.plumbing.protocol import Run

from .metrics import read_metrics

KIND = "llm-train"
LENGTH = ("steps", "epochs")
STATE_KEYS = {"step", "policy", "optimizer", "rng"}


# ------------------------------------------------------------------------------------------ checkpoints
def rng_state() -> dict:
    """Every generator's state as tensors and plain data (what `safeio.load_tensors` reads back)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"python": random.getstate(), "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss,
                                                     gauss],
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(s: dict) -> None:
    random.setstate(s["python"])
    name, keys, pos, has_gauss, gauss = s["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.int64).astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(s["torch"])
    if s["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def save(out: Path, model, state: dict) -> None:
    """The adapter folder, then checkpoint.pt (the trainer's `state` and every generator's): a write that fails
    leaves the last checkpoint, and a resumed run writes the adapter again."""
    save_adapter(model, out / "adapter")
    atomic_save(out / "checkpoint.pt", {**state, "rng": rng_state()})


def save_adapter(model, folder: Path) -> None:
    """peft's `save_pretrained` into FOLDER.tmp, then each file renamed into `folder`: every file is the old one or
    the new one, never half of one. A full disk is raised as OSError(ENOSPC) naming `folder` (safetensors reports
    it as a SafetensorError), and the temporary folder is removed (it would hold the space a rerun needs)."""
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained(tmp)
        folder.mkdir(exist_ok=True)
        for f in sorted(tmp.iterdir()):
            os.replace(f, folder / f.name)
        tmp.rmdir()
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if not isinstance(err, OSError) and (is_disk_full(err) or "os error 28" in str(err)):
            raise OSError(errno.ENOSPC, "No space left on device", str(folder)) from None
        raise


def load(out: Path) -> dict:
    """The checkpoint in `out` (`set_rng_state` restores its generators); a file that is not one is refused."""
    from banditlab.plumbing.safeio import load_tensors

    path = out / "checkpoint.pt"
    s = load_tensors(path, "--resume", "delete the folder to start over")
    if not (isinstance(s, dict) and STATE_KEYS <= set(s)):
        raise UsageError(f"--resume: {path} is not a trainer checkpoint; delete the folder to start over")
    return s


def save_run(tr) -> None:
    """The trainer's checkpoint, written by the main process (every process holds the same weights)."""
    from .models import lora_state

    if tr.dist.main:
        save(tr.out, tr.model, {"step": tr.step, "policy": lora_state(tr.model), "behaviour": tr.behaviour,
                                "behaviour_version": tr.behaviour_version, "history": tr.mu.history,
                                "optimizer": tr.opt.state_dict()})
    tr.dist.barrier()


def load_run(tr) -> None:
    """The checkpoint's adapter, μ, optimizer and generators into the trainer; μ pushed to the backend."""
    from .models import lora_params

    s = load(tr.out)
    with torch.no_grad():
        for n, p in lora_params(tr.model).items():
            p.copy_(s["policy"][n])
    tr.step, tr.behaviour, tr.behaviour_version = s["step"], s["behaviour"], s["behaviour_version"]
    tr.mu.history = s["history"]
    tr.opt.load_state_dict(s["optimizer"])
    set_rng_state(s["rng"])
    if not tr.cfg.offline:
        tr.backend.sync(tr.behaviour, tr.behaviour_version)


# ------------------------------------------------------------------------------------------ the run folder
def holds_run(out: Path) -> bool:
    return (out / "config.json").exists() and (out / "checkpoint.pt").exists()


def complete(cfg) -> bool:
    """Whether --out holds this very run (its recorded identity is `cfg`'s), marked complete: nothing to train.
    The record and the marker decide, not the weights: a finished run committed without its checkpoint and adapter
    (figures/data keeps metrics and records only) is complete."""
    out = Path(cfg.out) if cfg.out else None
    if out is None or not ((out / "config.json").exists() and is_complete(out)):
        return False
    rec = read_record(out)
    return isinstance(rec, dict) and rec.get("identity") == jsonable(cfg.identity())


def rules(cfg, resume: bool) -> dict:
    """The trainer's options to `Run.check` and `Run.open`. A record of another identity is refused unless it is
    this run but for its length and --resume asks to continue it (`extension`; without --resume: refused, naming
    --resume); a folder without checkpoint.pt holds no run yet (one stopped before its first checkpoint), and its
    record is replaced."""
    def accept(rec: dict) -> bool:
        if not resume and length_only(rec, cfg):
            raise UsageError(f"--out: {Path(cfg.out)} holds this run with another --steps/--epochs; pass --resume to "
                             "continue it to the new length, or choose another --out")
        return resume and extension(rec, cfg)

    return {"name": ("llm", cfg.algo), "accept": accept,
            "replace": not (cfg.out and (Path(cfg.out) / "checkpoint.pt").exists())}


def check_out(cfg, resume: bool) -> None:
    """--out can hold this run (`Run.check` with `rules`), and --resume is given exactly when it holds one (of the
    same configuration): checked before anything is loaded or written."""
    Run.check(cfg.out, KIND, cfg.identity(), **rules(cfg, resume))
    out = Path(cfg.out) if cfg.out else None
    if out is not None and holds_run(out) and not resume:
        raise UsageError(f"--out: {out} already holds a run; pass --resume to continue it")
    if not resume:
        return
    if not cfg.out:
        raise UsageError("--resume: needs --out, the run folder to continue")
    if not (Path(cfg.out) / "checkpoint.pt").exists():
        what = "does not exist" if not Path(cfg.out).exists() else "holds no checkpoint.pt"
        raise UsageError(f"--resume: {cfg.out} {what}; run without --resume to start a new run there")


def length_only(rec: dict | None, cfg) -> bool:
    """Whether `cfg` is the recorded run but for its length (--steps, --epochs)."""
    old = rec.get("identity") if isinstance(rec, dict) else None
    new = jsonable(cfg.identity())
    return (isinstance(old, dict) and old != new and set(old) == set(new)
            and all(old[k] == new[k] for k in new if k not in LENGTH))


def extension(rec: dict | None, cfg) -> bool:
    """Whether `cfg` asks to continue the recorded run for another number of steps, which is allowed only with the
    constant schedule (a linear or cosine schedule is laid out over the run's length, so a longer run would have
    taken its earlier steps at other learning rates). Raises UsageError where only the length differs but the
    schedule forbids it; returns False where anything else differs (`check_identity` names it)."""
    if not length_only(rec, cfg):
        return False
    if cfg.schedule != "constant":
        raise UsageError(f"--steps/--epochs: this run's {cfg.schedule} schedule is laid out over its own length, so "
                         "a longer run would have taken its earlier steps at other learning rates; start a new run")
    return True


def open_run(tr, resume: bool) -> bool:
    """Open the run folder (`Run.open`, kept in `tr.folder_run`, locked until the run ends) and start or resume the
    run in it; returns whether it resumed (the trainer's state then is the checkpoint's). Only the main process
    claims and writes; the others keep the folder they were given."""
    c, main = tr.cfg, tr.dist.main
    check_out(c, resume)
    tr.folder_run = run = Run.open(c.out, KIND, c.identity(), **rules(c, resume), writer=main)
    if main:
        tr.out = run.folder
    tr.dist.barrier()
    if not holds_run(tr.out):  # check_out: a run found there is the same run, --resume given
        run.write_record({"config": asdict(c), "world_size": tr.dist.world,
                          "objective": {"name": tr.objective.name, "params": tr.objective.params}})
        if main:
            atomic_write(tr.out / "metrics.jsonl", "")
        return False
    tr.load()
    if tr.step > tr.total_steps:
        raise UsageError(f"--steps: the run in {tr.out} has already taken {tr.step} steps; ask for at "
                         f"least that many (it asks for {tr.total_steps})")
    if main:
        metrics = tr.out / "metrics.jsonl"
        atomic_write(metrics, "".join(json.dumps(r) + "\n" for r in read_metrics(metrics) if r["step"] <= tr.step))
    if run.changed:  # a longer run (`extension`): it records its new length
        run.write_record({"config": asdict(c)}, keep=True)
    return True
