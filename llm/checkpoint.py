"""The trainer's run folder and checkpoints.

Run folder lifecycle (written by the main process only):
    check_out   before anything is loaded: --out can hold this run, and --resume is given exactly when it holds
                one (of the same configuration, or the same but for its length: `extension`)
    open_run    claim and lock the folder (held until the run ends); a new run records its identity in
                config.json (the DONE marker removed) and starts metrics.jsonl empty; a resumed one reloads the
                checkpoint, cuts metrics.jsonl back to the checkpoint's step and, when made longer, records its
                new length
    DONE        written by `folder.mark_complete` once the last step is saved; a complete run asked again returns
                (`complete`: at once, before anything is loaded, for `train.train`)
checkpoint.pt   {step, policy (the LoRA tensors), behaviour, behaviour_version, history, optimizer, rng}, beside the
                adapter folder (`save_pretrained`).

A run resumes with --resume; with the constant schedule it may also be made longer (--resume with a larger
--steps or --epochs): batches are a pure function of the step, so the longer run is the one that would have been
trained from the start (`extension`).
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from banditlab.errors import UsageError
from banditlab.plumbing.folder import (atomic_save, atomic_write, check_claim, check_identity, claim, is_complete,
                                       jsonable, read_record, unmark, write_record)

from .metrics import read_metrics

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
    """checkpoint.pt (the trainer's `state` and every generator's) and the adapter folder."""
    atomic_save(out / "checkpoint.pt", {**state, "rng": rng_state()})
    model.save_pretrained(out / "adapter")


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
    """Whether --out holds this very run (its recorded identity is `cfg`'s), marked complete: nothing to train."""
    out = Path(cfg.out) if cfg.out else None
    if out is None or not (holds_run(out) and is_complete(out)):
        return False
    rec = read_record(out)
    return isinstance(rec, dict) and rec.get("identity") == jsonable(cfg.identity())


def check_out(cfg, resume: bool) -> None:
    """--out can hold this run, and --resume is given exactly when it holds one (of the same configuration):
    checked before anything is loaded or written."""
    check_claim(cfg.out, "llm-train", ("llm", cfg.algo))
    out = Path(cfg.out) if cfg.out else None
    if out is not None and holds_run(out):
        rec = read_record(out)
        if not resume and length_only(rec, cfg):
            raise UsageError(f"--out: {out} holds this run with another --steps/--epochs; pass --resume to continue "
                             "it to the new length, or choose another --out")
        if not (resume and extension(rec, cfg)):
            check_identity(out, cfg.identity())
        if not resume:
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
    """Claim the run folder (`tr.out`, locked in `tr.lock` until the run ends) and start or resume the run in it;
    returns whether it resumed (the trainer's state then is the checkpoint's)."""
    c, main = tr.cfg, tr.dist.main  # only the main process writes the run folder
    check_out(c, resume)
    if main:
        tr.lock = claim(c.out, "llm-train", name=("llm", c.algo))
        tr.out = tr.lock.folder
    tr.dist.barrier()
    if not holds_run(tr.out):  # check_out: a run found there is the same run, --resume given
        if main:
            unmark(tr.out)
            write_record(tr.out, "llm-train", {"config": asdict(c), "identity": c.identity(),
                                                "world_size": tr.dist.world,
                                                "objective": {"name": tr.objective.name,
                                                              "params": tr.objective.params}})
            atomic_write(tr.out / "metrics.jsonl", "")
        return False
    tr.load()
    if tr.step > tr.total_steps:
        raise UsageError(f"--steps: the run in {tr.out} has already taken {tr.step} steps; ask for at "
                         f"least that many (it asks for {tr.total_steps})")
    if main:
        metrics = tr.out / "metrics.jsonl"
        atomic_write(metrics, "".join(json.dumps(r) + "\n" for r in read_metrics(metrics) if r["step"] <= tr.step))
        rec = read_record(tr.out)
        if length_only(rec, c):  # a longer run (`extension`): it records its new length
            unmark(tr.out)
            write_record(tr.out, "llm-train", {**{k: v for k, v in rec.items() if k != "kind"},
                                                "config": asdict(c), "identity": c.identity()})
    return True
