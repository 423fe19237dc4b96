"""`banditlab sweep`: one objective, one bandit, a grid of baselines × seeds, run as one vectorised simulation.

Data flow (Spinning Up style): SweepConfig → Simulator → tidy files in the run folder → table and figure.
    config.json      the resolved config and the bandit itself: enough to rerun
    steps.parquet    one row per (run, logged step): baseline_offset, baseline, seed, step, the METRICS
    summary.csv      one row per (baseline, seed): final metrics; the expected update's J after the same steps
                     and Theorem 4.2's limit, where each applies
    table.csv        one row per baseline: mean and 95 % Student-t CI over seeds, the share of seeds that improved
                     with its Wilson interval, the two references (banditlab.stats)
    pairs.csv        one row per two neighbouring baselines: the mean and CI of their per-seed difference
    sweep.png/.pdf   drawn from the files above by banditlab.plots
    state.pt         the simulator state (a checkpoint while running; the final policies afterwards)
    DONE             written last, once every file above exists (banditlab.plumbing.folder)

Baselines: values are offsets δV from the behaviour's V^μ (`baseline_ref = "vmu"`), from the sampled group mean
(`"group"`), or raw V (`absolute = true`). The theorem's prediction is filled in for REINFORCE-type objectives
(reinforce, asymre) on a fixed behaviour, per context; for a sampled group mean with G pulls the effective offset
is δV·G/(G−1) (theory.group_baseline_offset).

The baseline's names, one per concept; inside this module the swept values are `baseline_offset` throughout, and
`per_run_params` and `registry_baseline` are the one place that maps them to the registry's parameters:
    CLI option (config key)     SweepConfig field        output column               registry parameter
    --baseline                  baseline                 baseline_offset (δV)        offset (one per run)
    --baseline-ref, --absolute  baseline_ref, absolute   baseline (V^μ + δV, or V)   baseline (vmu|group|absolute)
With --absolute the values are raw V: the registry's offset is V and the column baseline_offset is V − V^μ.

Pulls (sampled mode): with `pulls = "shared"` the runs of one seed draw the same random numbers at every baseline
(common random numbers), so with a fixed behaviour they learn from the same pulls and two baselines' difference is
measured on the same data; seeds stay independent of each other, so the per-baseline CIs over seeds are those
of independent runs. `pulls = "independent"` gives every run its own, and so does RED-Drop, whose random drops
are drawn inside the objective, per run.

Interruption: SIGINT/SIGTERM set a flag; the loop stops at the next step boundary, writes state.pt and exits 130.
A checkpoint is also written every `checkpoint_seconds`. The same command on the same folder resumes from it and
ends with results identical to an uninterrupted run (the generator state is part of the checkpoint). A folder
whose simulation finished but whose outputs were cut short (a signal, a full disk) has state.pt and no DONE: the
same command writes the missing outputs from state.pt. Runs whose loss or logits leave the finite range are
flagged `diverged` in summary.csv and counted under the table.
"""

from __future__ import annotations

import textwrap
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from banditlab.science import bandits as B
from banditlab.science import theory
from banditlab.plumbing.fields import option
from banditlab.errors import UsageError
from banditlab.plumbing.folder import (Cadence, Interrupted, atomic_output, atomic_save, is_complete, read_record,
                                      write_table)
from banditlab.plumbing.protocol import Run
from banditlab.plumbing.threads import HELP as THREADS_HELP


@dataclass
class SweepConfig:
    """The options of `banditlab sweep` (and the keys of its config file): each field's help, range and default
    are the command's (banditlab.cli.options) and docs/commands.md's."""

    baseline: str = option("-0.5:0.5", "START:STOP[:NUM] (NUM: 21 if absent), a comma list, or one value; offsets "
                                       "δV from V^μ unless --absolute")
    absolute: bool = option(False, "--absolute reads --baseline as raw V, --offset as offsets δV",
                            flag="--absolute/--offset")
    baseline_ref: str = option("vmu", "offsets from: vmu (exact V^μ of the behaviour) | group (sampled group mean)")
    algo: str = option("asymre", "objective from `banditlab algos`")
    algo_args: list = option(help="objective parameter key=value (repeatable)", factory=list, name="--algo-arg",
                             metavar="KEY=VALUE")
    bandit: str = option("paper", "paper (the paper-style random bandit) or a TOML bandit file")
    arms: int = option(100, "arms of the paper-style random bandit", 2, 10**6)
    contexts: int = option(1, "contexts of the paper-style random bandit, each with its own rewards and V^μ(x)",
                           1, 10**5)
    bandit_seed: int = option(B.PAPER_SEED, "seed of the paper-style bandit's random mean rewards", 0, 2**32,
                              hi_open=True)
    rewards: str = option("", "explicit mean rewards, e.g. 0,0.8,1 (instead of the random draw)")
    mu: str = option("", "explicit behaviour probabilities for --rewards, e.g. 0.3,0.6,0.1", shown="uniform")
    noise: str = option("bernoulli", "reward noise: none | bernoulli | gaussian")
    low: float = option(0.0, "Bernoulli low reward value; for the drawn bandit also the low end of its means", -1e6, 1e6)
    high: float = option(1.0, "Bernoulli high reward value; for the drawn bandit also the high end of its means (beyond "
                              "±1e6 the updates overflow)", -1e6, 1e6)
    sigma: float = option(0.1, "Gaussian noise scale", 0.0, 1e6, lo_open=True)
    mode: str = option("sampled", "exact (expected update) | sampled (--batch pulls per step)")
    seeds: int = option(8, "replicas per baseline, sampled mode (exact mode is deterministic: one run per baseline)",
                        1, 10**5)
    steps: int = option(3000, "SGD steps", 1, 10**9)
    batch: int = option(64, "pulls per group per step, sampled mode", 1, 10**6)
    lr: float = option(1.0, "SGD learning rate on the logits (the paper's is 1)", 0.0, 1e6, lo_open=True)
    behavior: str = option("fixed", "fixed | on-policy | lag:N | delay:K | mix:A[:init|uniform], comma-combined")
    seed: int = option(0, "seed of the simulation's random stream", 0, 2**63, hi_open=True)
    pulls: str = option("shared", "sampled mode: shared (the runs of one seed draw the same random numbers at "
                                  "every baseline: paired comparisons; not RED-Drop, whose drops are per run) | "
                                  "independent (every run its own)")
    log_every: int = option(0, "record metrics every N steps (0: steps // 200)", 0, 10**9)
    support_eps: float = option(theory.SUPPORT_EPS, "π(a) ≥ this counts as support", 0.0, 1.0, lo_open=True)
    dtype: str = option("float64", "float64 | float32")
    device: str = option("cpu", "cpu | cuda (cuda is untested: docs/gpu.md)")
    threads: int = option(0, THREADS_HELP, 0, 1024)
    shard: str = option("", "I/N: run only the I-th of N blocks of the grid's runs, for a job array; join the "
                            "folders with `banditlab merge`", shown="all runs")
    checkpoint_seconds: float = option(10.0, "write state.pt at most this often while running, in seconds", 0.01,
                                       86400.0, cli=False)
    out: str = option("", "run folder; the same command on the same folder resumes", shown="runs/sweep-ALGO-TIME")

    def identity(self) -> dict:
        """The fields that determine the numbers (everything but where and how often to save)."""
        d = asdict(self)
        for k in ("out", "checkpoint_seconds", "device", "threads"):
            d.pop(k)
        if self.pulls == "independent" or self.mode == "exact":  # the numbers of a grid without shared draws
            d.pop("pulls")
        return d


# ------------------------------------------------------------------------------------------ parsing
def parse_floats(text: str, option: str) -> list[float]:
    try:
        vals = [float(v) for v in text.split(",")]  # an empty item ("0,,1") is refused, not skipped
    except ValueError:
        raise UsageError(f"{option}: expected comma-separated numbers, got {text!r}") from None
    if not vals or any(not np.isfinite(v) for v in vals):
        raise UsageError(f"{option}: expected finite numbers, got {text!r}")
    return vals


def parse_range(text: str, option: str = "--baseline", default_num: int = 21) -> np.ndarray:
    """START:STOP[:NUM] (inclusive, NUM points), a comma list, or one number; values are rounded to 10 decimals
    and must be distinct however they are written (a range whose points round to one value, `0:0:5`, is refused
    as a list naming a value twice is: one run per value, never copies pooled as if they were seeds)."""
    if ":" not in text:
        vals = np.round(np.array(parse_floats(text, option)), 10) + 0.0
    else:
        parts = text.split(":")
        try:
            if len(parts) not in (2, 3):
                raise ValueError
            start, stop = float(parts[0]), float(parts[1])
            num = int(parts[2]) if len(parts) == 3 else default_num
        except ValueError:
            raise UsageError(f"{option}: expected START:STOP[:NUM], got {text!r}") from None
        if not (np.isfinite(start) and np.isfinite(stop)):
            raise UsageError(f"{option}: range ends must be finite, got {text!r}")
        if start > stop:
            raise UsageError(f"{option}: range is reversed ({start} > {stop})")
        if num > 10_000:
            raise UsageError(f"{option}: at most 10,000 points, got {num}")
        if num < 1 or (num == 1 and start != stop):
            raise UsageError(f"{option}: NUM must be ≥ 2 for a range, got {num}")
        vals = np.round(np.linspace(start, stop, num), 10) + 0.0  # no "-0.0"
    ordered = np.sort(vals)
    twice = ordered[1:][np.diff(ordered) == 0]
    if twice.size:
        raise UsageError(f"{option}: {text!r} gives the value {twice[0]:g} more than once (values are rounded to "
                         "10 decimals); give distinct values")
    return vals


# the fields a bandit's checks name, by the command-line option that sets each
FIELD_OPTIONS = {"mu": "--mu", "behavior": "--mu", "rewards": "--rewards", "noise": "--noise", "sigma": "--sigma",
                 "reward range": "--low/--high", "arms": "--arms", "context weights": "--contexts",
                 "contexts": "--contexts"}


def option_error(err: B.BanditError) -> UsageError:
    """A bandit's check ("field: problem") as the option that set the field ("--option: problem")."""
    field, sep, rest = str(err).partition(": ")
    return UsageError(f"{FIELD_OPTIONS[field]}: {rest}" if sep and field in FIELD_OPTIONS else str(err))


def make_bandit(cfg: SweepConfig) -> B.Bandit:
    """The bandit the config names: a TOML file, explicit lists, or the paper-style random draw."""
    check_conflicts(cfg)
    if not 0 <= cfg.bandit_seed < 2**32:
        raise UsageError(f"--bandit-seed: must be in [0, 2^32), got {cfg.bandit_seed}")
    try:
        if cfg.bandit != "paper":
            return B.from_toml(cfg.bandit)
        if cfg.rewards:
            mu = parse_floats(cfg.mu, "--mu") if cfg.mu else None
            rewards = parse_floats(cfg.rewards, "--rewards")
            if max(abs(r) for r in rewards) > B.VALUE_LIMIT:
                raise UsageError(f"--rewards: mean rewards must lie within ±{B.VALUE_LIMIT:g}, got {cfg.rewards!r}")
            return B.from_lists(rewards, mu, noise=cfg.noise, low=cfg.low,
                                high=cfg.high, sigma=cfg.sigma)
        if cfg.mu:
            raise UsageError("--mu: needs --rewards (behaviour probabilities of explicit arms)")
        B.check_size(cfg.arms, cfg.contexts)  # before the draw allocates them
        b = B.paper(cfg.arms, cfg.contexts, cfg.bandit_seed, noise=cfg.noise, low=cfg.low, high=cfg.high)
        b.sigma = cfg.sigma
        b.validate()
        return b
    except B.BanditError as err:  # a file's errors name the file and its keys; the options' name the option
        raise (UsageError(str(err)) if cfg.bandit != "paper" else option_error(err)) from None


def validate(cfg: SweepConfig) -> None:
    """Every option's declared range, then the checks that involve several options or a word list."""
    from banditlab.plumbing.fields import check_ranges

    check_ranges(cfg)
    if not cfg.low < cfg.high:
        raise UsageError(f"--low/--high: need low < high, got {cfg.low} and {cfg.high}")
    if cfg.shard:
        parse_shard(cfg.shard)
    check_behavior(cfg.behavior)
    if cfg.mode not in ("exact", "sampled"):
        raise UsageError(f"--mode: expected exact or sampled, got {cfg.mode!r}")
    if cfg.baseline_ref not in ("vmu", "group"):
        raise UsageError(f"--baseline-ref: expected vmu or group, got {cfg.baseline_ref!r}")
    if cfg.pulls not in ("shared", "independent"):
        raise UsageError(f"--pulls: expected shared or independent, got {cfg.pulls!r}")
    if cfg.dtype not in ("float64", "float32"):
        raise UsageError(f"--dtype: expected float64 or float32, got {cfg.dtype!r}")
    if cfg.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UsageError(f"--device: {cfg.device} requested but torch sees no CUDA device")
    elif cfg.device != "cpu":
        raise UsageError(f"--device: expected cpu or cuda[:N], got {cfg.device!r}")


BANDIT_OPTIONS = ("arms", "contexts", "bandit_seed", "rewards", "mu", "noise", "low", "high", "sigma")
SWEPT_ARGS = {"offset": "--baseline", "baseline": "--baseline-ref or --absolute"}


def check_conflicts(cfg: SweepConfig) -> None:
    """Options that another option makes meaningless are refused rather than dropped."""
    default = SweepConfig()
    given = [k for k in BANDIT_OPTIONS if getattr(cfg, k) != getattr(default, k)]
    if cfg.bandit != "paper" and given:
        raise UsageError(f"--bandit {cfg.bandit}: the file defines the bandit; drop --{given[0].replace('_', '-')}")
    if cfg.rewards and any(k in given for k in ("arms", "contexts", "bandit_seed")):
        k = next(k for k in ("arms", "contexts", "bandit_seed") if k in given)
        raise UsageError(f"--rewards: explicit rewards define the arms; drop --{k.replace('_', '-')}")
    drawn = cfg.bandit == "paper" and not cfg.rewards
    try:
        B.check_fields(set(given), cfg.noise, drawn=drawn)
    except B.BanditError as err:
        raise option_error(err) from None
    if drawn and cfg.noise != "bernoulli" and {"low", "high"} & set(given):
        import sys

        print(f"banditlab: note: --low/--high set the range the drawn means are rescaled to; with {cfg.noise} "
              "noise they are not reward outcomes", file=sys.stderr)
    for k, why in (("batch", "the expected update takes no pulls"), ("pulls", "the expected update draws nothing"),
                   ("seeds", "the expected update is deterministic: one run per baseline")):
        if cfg.mode == "exact" and getattr(cfg, k) != getattr(default, k):
            raise UsageError(f"--{k}: only used in sampled mode ({why}); drop it or give --mode sampled")
    if cfg.mode == "exact" and cfg.baseline_ref == "group":
        raise UsageError("--baseline-ref group: the group mean is a statistic of sampled pulls, and exact mode has "
                         "none; give --mode sampled (or offsets from vmu)")
    if cfg.absolute and cfg.baseline_ref != default.baseline_ref:
        raise UsageError("--baseline-ref: --absolute gives the baselines V themselves, not offsets from a reference; "
                         "drop one of them")
    for a in cfg.algo_args:
        key = a.split("=", 1)[0].strip().replace("-", "_")
        if key in SWEPT_ARGS:
            raise UsageError(f"--algo-arg {key}: a sweep sets it from {SWEPT_ARGS[key]}; drop the --algo-arg")


def check_behavior(text: str) -> None:
    """--behavior parses (`behaviour.Behavior.parse`: each part known, well formed, and setting one thing once)."""
    from banditlab.science.behaviour import Behavior

    try:
        Behavior.parse(text)
    except ValueError as err:
        raise UsageError(str(err)) from None


# ------------------------------------------------------------------------------------------ running
def parse_shard(text: str) -> tuple[int, int]:
    """"I/N" → (I, N) with 1 ≤ I ≤ N."""
    try:
        i, n = (int(x) for x in text.split("/"))
        if not 1 <= i <= n:
            raise ValueError
    except ValueError:
        raise UsageError(f"--shard: expected I/N with 1 ≤ I ≤ N, got {text!r}") from None
    return i, n


def shard_rows(cfg: SweepConfig, total: int) -> np.ndarray:
    """The grid rows (baseline-major, seeds within) of this shard: the I-th of N contiguous blocks."""
    if not cfg.shard:
        return np.arange(total)
    i, n = parse_shard(cfg.shard)
    if n > total:
        raise UsageError(f"--shard: {n} shards for a grid of {total} runs")
    return np.array_split(np.arange(total), n)[i - 1]


def replicas_of(cfg: SweepConfig) -> int:
    """Runs per baseline value. Exact mode is deterministic (π₀, μ and the expected update have no randomness),
    so its seeds would be identical copies: one replica each, and the table has no CI."""
    return 1 if cfg.mode == "exact" else cfg.seeds


def check_size(cfg: SweepConfig, bandit, runs: int) -> None:
    """Refuse a grid whose arrays would not fit in memory, before allocating anything. A step holds about ten
    arrays of runs × contexts × arms × outcomes entries (exact mode, and sampled mode's table of each cell's
    gradient) or runs × contexts × batch (sampled mode's pulls), and the log keeps runs × 8 metrics per logged
    step; the limit is half the machine's physical memory."""
    import os

    width = 8 if cfg.dtype == "float64" else 4
    outcomes = 1 if bandit.noise == "none" else (2 if bandit.noise == "bernoulli" else 8)
    per_step = runs * bandit.contexts * (bandit.arms * outcomes if cfg.mode == "exact" else
                                         max(bandit.arms * outcomes, cfg.batch * 3))
    log = runs * 8 * (cfg.steps // (cfg.log_every or max(1, cfg.steps // 200)) + 2)
    history = (_delay(cfg.behavior) + 1) * runs * bandit.contexts * bandit.arms  # delay:K keeps K+1 policies
    need = (10 * per_step + log + history) * width
    try:
        have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        have = 16 * 2**30
    if need > have / 2:
        raise UsageError(f"grid too large: about {need / 2**30:.1f} GiB for {runs} runs × {bandit.contexts} "
                         f"contexts × {bandit.arms} arms (this machine has {have / 2**30:.0f} GiB); use fewer "
                         "--seeds, baselines, --arms, --contexts, a smaller --behavior delay:K or a larger "
                         "--log-every")


def _delay(behavior: str) -> int:
    from banditlab.science.behaviour import Behavior

    try:
        return Behavior.parse(behavior).delay
    except ValueError:
        return 0  # the simulator reports the malformed option


def registry_baseline(cfg: SweepConfig) -> str:
    """The registry's `baseline` parameter (what the offsets are taken from): --absolute, else --baseline-ref."""
    return "absolute" if cfg.absolute else cfg.baseline_ref


def per_run_params(baseline_offset) -> dict:
    """The registry's per-run parameters of a sweep: `offset`, one baseline_offset per run."""
    return {"offset": np.asarray(baseline_offset, float)}


def build(cfg: SweepConfig):
    """Resolve a config into (bandit, objective, grid, simulator)."""
    from banditlab.registry.objectives import parse_algo_args
    from banditlab.science.simulator import SimConfig, Simulator

    validate(cfg)
    bandit = make_bandit(cfg)
    baseline_offset = parse_range(cfg.baseline)
    try:
        objective = parse_algo_args(cfg.algo, cfg.algo_args)
    except ValueError as err:
        raise UsageError(f"--algo: {err}" if "algo-arg" not in str(err) else str(err)) from None
    if "offset" not in objective.params:
        raise UsageError(f"--baseline: algorithm {cfg.algo!r} has no baseline to sweep")
    fixed = sorted({a.partition("=")[0].strip().replace("-", "_") for a in cfg.algo_args} & {"offset", "baseline"})
    if fixed:  # the sweep sets both itself: a value here would be recorded in config.json but never used
        raise UsageError(f"--algo-arg {fixed[0]}: a sweep sets the baseline from --baseline, --baseline-ref and "
                         "--absolute; give it there")
    objective = objective.with_params(baseline=registry_baseline(cfg))
    replicas = replicas_of(cfg)
    grid = {"baseline_offset": np.repeat(baseline_offset, replicas),
            "seed": np.tile(np.arange(replicas), len(baseline_offset))}
    shared = cfg.pulls == "shared" and cfg.mode == "sampled" and not objective.params.get("red_drop")
    streams = grid["seed"] if shared else None
    total = len(grid["seed"])
    rows = shard_rows(cfg, total)
    if cfg.shard and cfg.mode == "sampled" and objective.params.get("red_drop"):
        raise UsageError("--shard: RED-Drop draws its random drops inside the objective, per shard; run it unsharded")
    grid = {k: v[rows] for k, v in grid.items()}
    grid["run"] = rows
    check_size(cfg, bandit, len(grid["seed"]))
    if np.abs(baseline_offset).max() > 1e6:
        raise UsageError(f"--baseline: values must lie within ±1e6, got {cfg.baseline!r}")
    log_every = cfg.log_every or max(1, cfg.steps // 200)
    sim_cfg = SimConfig(mode=cfg.mode, steps=cfg.steps, batch=cfg.batch, lr=cfg.lr, behavior=cfg.behavior,
                        log_every=log_every, support_eps=cfg.support_eps, dtype=cfg.dtype, device=cfg.device)
    try:
        sim = Simulator(bandit, objective, per_run_params(grid["baseline_offset"]), sim_cfg, seed=cfg.seed,
                        shard_rows=rows if cfg.shard else None, total_runs=total, streams=streams)
    except ValueError as err:
        raise UsageError(str(err)) from None
    return bandit, objective, grid, sim


def run_sweep(cfg: SweepConfig, progress: bool = True, quiet: bool = False) -> Path:
    """Run (or resume) a sweep into cfg.out and write every output file (banditlab.plumbing.protocol: claimed,
    checked against the folder's record, checkpointed, DONE last). Returns the run folder."""
    from banditlab.plumbing.threads import use_threads

    bandit, objective, grid, sim = build(cfg)
    use_threads(cfg.threads, elements=sim.runs * bandit.contexts * bandit.arms * sim.out_vals.shape[-1])
    with Run.open(cfg.out, "sweep", cfg.identity(), name=("sweep", cfg.algo)) as run:
        return _run_locked(cfg, run, bandit, objective, grid, sim, progress, quiet)


def _run_locked(cfg, run: Run, bandit, objective, grid, sim, progress, quiet) -> Path:
    out, identity = run.folder, run.identity
    state_file = out / "state.pt"
    state = sim.initial_state()
    if state_file.exists():
        state = _load_state(state_file, state, identity)
        if state.step >= cfg.steps and run.complete:  # finished: nothing is rewritten
            if not quiet:
                print(f"{out}: this run is already complete; its table follows (delete the folder to rerun)")
            return out
        if not quiet and state.step < cfg.steps:
            print(f"{out}: resumed at step {state.step}/{cfg.steps}", flush=True)
    run.write_record({"sweep": asdict(cfg), "bandit": bandit.to_dict(),
                      "objective": {"name": objective.name, "params": dict(objective.params)}})
    with run.running() as flag:  # installed until the marker is written
        if state.step < cfg.steps:
            state = _simulate(cfg, sim, state, state_file, identity, flag, progress)
            atomic_save(state_file, {**sim.checkpoint(state), "identity": identity})
        if state.step < cfg.steps:
            raise Interrupted(f"interrupted at step {state.step}/{cfg.steps}; state saved in {out}; "
                              "run the same command again to resume")
        write_outputs(out, cfg, bandit, objective, grid, sim, state)
        run.done()
    return out


def _simulate(cfg, sim, state, state_file, identity, flag, progress):
    """Run the simulator from `state` until the last step or the stop flag, checkpointing on the way."""
    from banditlab.plumbing.progress import Bar

    cadence = Cadence(seconds=cfg.checkpoint_seconds)
    with Bar(f"{cfg.algo} {cfg.mode} {sim.runs} runs", total=cfg.steps, show=progress, start=state.step,
             unit="steps") as bar:
        def on_step(st) -> bool:
            bar.update(st.step)
            if flag["stop"]:
                return True
            if cadence.due(st.step):
                atomic_save(state_file, {**sim.checkpoint(st), "identity": identity})
            return False

        return sim.run(state, on_step=on_step)


def _load_state(path: Path, fresh, identity: dict):
    """The checkpoint in `path` (tensors and plain data only), checked against the run it should continue."""
    from banditlab.plumbing.safeio import load_tensors

    saved = load_tensors(path, "--out", "delete it to start the run over")
    try:
        owner = saved.pop("identity", identity)
        state = type(fresh)(**saved)
    except (AttributeError, TypeError):  # not a dict, or not a simulator state
        raise UsageError(f"--out: {path} is not a simulator state; delete it to start the run over") from None
    logits = getattr(state, "logits", None)
    if owner != identity or not hasattr(logits, "shape") or logits.shape != fresh.logits.shape or \
            logits.dtype != fresh.logits.dtype:
        raise UsageError(f"--out: {path} belongs to another run (shape {tuple(getattr(logits, 'shape', ()))}, "
                         f"expected {tuple(fresh.logits.shape)}); delete it to start over")
    return state


# ------------------------------------------------------------------------------------------ outputs
def write_outputs(out: Path, cfg: SweepConfig, bandit, objective, grid, sim, state) -> None:
    """steps.parquet and summary.csv from the final state, then the table and the figure (`write_tables`)."""
    import pandas as pd

    from banditlab.science.simulator import METRICS, baseline_columns, tidy_frame

    values = np.stack([v.numpy() for v in state.log_values])  # [S, R, M]
    v_mu0 = bandit.v_mu_total
    baseline_offset = grid["baseline_offset"]
    columns = baseline_columns(baseline_offset, v_mu0, cfg.absolute)
    tidy = tidy_frame(state, {**columns, "seed": grid["seed"]})
    tidy["run"] = grid["run"][tidy["run"].to_numpy()]  # the grid's run index (a shard holds a block of them)

    final = values[-1]
    summary = pd.DataFrame({**columns, "v_mu": v_mu0, "seed": grid["seed"]})
    rename = {"expected_reward": "final_expected_reward", "v_mu": "v_mu_final", "loss": "final_loss"}
    for i, m in enumerate(METRICS):
        summary[rename.get(m, m)] = final[:, i]
    th = {o: theory.limit_for_run(bandit, asdict(cfg), objective, o) for o in np.unique(baseline_offset)}
    for k in ("theory_expected_reward", "theory_support_size", "theory_entropy"):
        summary[k] = [th[o][k] for o in baseline_offset]
    exact = exact_reference(cfg, bandit, objective, np.unique(baseline_offset))
    summary["exact_expected_reward"] = [exact[o] for o in baseline_offset]
    summary["improved"] = summary["final_expected_reward"] > v_mu0
    summary["diverged"] = state.diverged.cpu().numpy() | ~finite_runs(values, state.log_steps)
    write_tables(out, tidy, summary)


def exact_reference(cfg: SweepConfig, bandit, objective, baseline_offset) -> dict:
    """{offset: J(π_T)} of the expected update (exact mode, one deterministic run per baseline) after the sweep's
    own steps, with its learning rate and behaviour: the finite-run reference for a sampled sweep's mean. NaN in
    exact mode (the runs are that reference) and where the expected sampled update is not the exact one (an
    objective whose samples' gradients depend on a group statistic: the group mean, std normalisation, RED-Drop).
    It costs about one sampled seed's simulation."""
    from banditlab.science.simulator import METRICS, SimConfig, Simulator

    if cfg.mode != "sampled" or not objective.per_sample:
        return dict.fromkeys(baseline_offset, np.nan)
    sim_cfg = SimConfig(mode="exact", steps=cfg.steps, batch=cfg.batch, lr=cfg.lr, behavior=cfg.behavior,
                        log_every=cfg.steps, support_eps=cfg.support_eps, dtype=cfg.dtype, device=cfg.device)
    sim = Simulator(bandit, objective, per_run_params(baseline_offset), sim_cfg, seed=cfg.seed,
                    runs=len(baseline_offset))
    state = sim.run(sim.initial_state())
    final = state.log_values[-1][:, METRICS.index("expected_reward")].cpu().numpy()
    return {o: float(j) if ok else np.nan for o, j, ok in zip(baseline_offset, final, ~state.diverged.cpu().numpy())}


def finite_runs(values: np.ndarray, steps) -> np.ndarray:
    """[R] True where a run's logits and expected reward stayed finite at every logged step, and its loss at
    every logged step after step 0 (which has no loss yet) (`values` [S, R, M]); the others are flagged
    `diverged` (an overflow the simulator's own check can miss, e.g. a NaN loss from rewards near the float
    range)."""
    from banditlab.science.simulator import METRICS

    later = np.asarray(steps) > 0
    ok = np.isfinite(values[:, :, [METRICS.index("min_logit"), METRICS.index("expected_reward")]]).all(axis=(0, 2))
    return ok & np.isfinite(values[later][:, :, METRICS.index("loss")]).all(axis=0)


SUMMARY_COLUMNS = ["baseline_offset", "baseline", "v_mu", "seed", "final_expected_reward", "exact_expected_reward",
                   "theory_expected_reward", "support_size", "theory_support_size", "entropy", "theory_entropy", "kl_mu_pi", "p_best",
                   "min_logit", "final_loss", "v_mu_final", "improved", "diverged"]


def write_tables(out: Path, tidy, summary) -> None:
    """The run folder's tidy files, its per-baseline table and its figure, from the per-run frames."""
    write_table(out / "steps.parquet", tidy)
    atomic_output(out / "summary.csv", lambda f: summary[SUMMARY_COLUMNS].to_csv(f, index=False))
    exact_mode = read_record(out)["sweep"]["mode"] == "exact"
    table, pairs = baseline_table(summary, exact_mode)
    atomic_output(out / "table.csv", lambda f: table.to_csv(f, index=False))
    atomic_output(out / "pairs.csv", lambda f: pairs.to_csv(f, index=False))
    from banditlab.plots import plot_sweep

    plot_sweep(out)


def baseline_table(summary, exact_mode: bool):
    """(table, pairs) from summary.csv's rows. table: per baseline, the mean of J(π_T) over seeds with its Student-t
    95 % CI (`mean`, `ci_low`, `ci_high`, `n`), the expected update's J after the same steps (`exact_same_step`),
    Theorem 4.2's t → ∞ limit (`theory_limit`), mean support and entropy, the share of seeds whose J(π_T) > V^μ
    with its Wilson 95 % interval (`improved`, `improved_low`, `improved_high`; none in exact mode, whose one run
    per baseline is deterministic) and the diverged count. pairs: `stats.paired_differences` of J(π_T) between
    neighbouring baselines, paired by seed."""
    from banditlab.stats import paired_differences, summarise, wilson_ci

    table = summarise(summary, ["baseline_offset"], "final_expected_reward")
    extra = summary.groupby("baseline_offset").agg(
        baseline=("baseline", "first"), exact_same_step=("exact_expected_reward", "first"),
        theory_limit=("theory_expected_reward", "first"), support=("support_size", "mean"),
        entropy=("entropy", "mean"), improved_k=("improved", "sum"), diverged=("diverged", "sum")).reset_index()
    table = table.merge(extra, on="baseline_offset")
    share = [wilson_ci(int(k), int(n)) for k, n in zip(table["improved_k"], table["n"])]
    table["improved"] = [p for p, _, _ in share]
    table["improved_low"] = [np.nan if exact_mode else lo for _, lo, _ in share]
    table["improved_high"] = [np.nan if exact_mode else hi for _, _, hi in share]
    table = table.drop(columns="improved_k")
    pairs = paired_differences(summary, "baseline_offset", "seed", "final_expected_reward")
    return table, pairs


def merge(shards: list[Path], out: Path) -> Path:
    """Join finished shard folders (`--shard I/N`, every I once, the same command otherwise) into one run folder
    whose files equal those of the unsharded run (its state.pt excepted: the merged folder is final)."""
    import pandas as pd

    from banditlab.plumbing.folder import kind_of, read_record

    recs, seen = [], {}
    for d in shards:
        d = Path(d)
        if kind_of(d) != "sweep" or not is_complete(d):
            raise UsageError(f"SHARDS: {d} is not a finished sweep folder")
        real = d.resolve()
        if real in seen:
            raise UsageError(f"SHARDS: {seen[real]} and {d} are the same folder; give each shard once")
        seen[real] = d
        recs.append((d, read_record(d)))
    parts = {}
    for d, rec in recs:
        shard = rec["sweep"].get("shard") or ""
        if not shard:
            raise UsageError(f"SHARDS: {d} is not a shard (it was run without --shard)")
        key = parse_shard(shard)
        if key in parts:
            raise UsageError(f"SHARDS: {parts[key][0]} and {d} are both shard {shard}; give each shard once")
        parts[key] = (d, rec)
    n = {key[1] for key in parts}
    if len(n) != 1 or sorted(i for i, _ in parts) != list(range(1, n.pop() + 1)):
        raise UsageError(f"SHARDS: need every shard 1..N exactly once, got {sorted(f'{i}/{k}' for i, k in parts)}")
    strip = lambda rec: {k: v for k, v in rec["identity"].items() if k != "shard"}
    first = parts[min(parts)][1]
    if any(strip(rec) != strip(first) for _, rec in parts.values()):
        raise UsageError("SHARDS: the shards come from different commands (their configs differ beyond --shard)")
    ordered = [parts[key][0] for key in sorted(parts)]
    tidy = pd.concat([_read_output(d / "steps.parquet") for d in ordered]).sort_values(
        ["step", "run"], kind="stable").reset_index(drop=True)
    summary = pd.concat([_read_output(d / "summary.csv") for d in ordered]).reset_index(drop=True)
    # the merged folder is the unsharded run's: its identity, through the one run protocol (a merge stopped by a
    # full disk is finished by the same command; one that is complete is left as it is)
    with Run.open(Path(out), "sweep", {**first["identity"], "shard": ""}) as run:
        if run.complete:
            print(f"{out}: this merge is already complete")
            return Path(out)
        record = {k: v for k, v in first.items() if k not in ("kind", "identity")}
        run.write_record(dict(record, sweep={**first["sweep"], "shard": ""}, merged_from=[str(d) for d in ordered]))
        write_tables(Path(out), tidy, summary)
        run.done()
    return Path(out)


def _read_output(path: Path):
    """A shard's parquet or csv output; a damaged one is named in one line."""
    import pandas as pd

    try:
        return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except Exception as err:  # truncated parquet (ArrowInvalid), empty csv, ...
        raise UsageError(f"SHARDS: {path} is damaged ({type(err).__name__}); rerun that shard into a new "
                         "folder") from None


def format_table(out: Path) -> str:
    """The end-of-run table as plain text (also used by `banditlab sweep` on a finished folder): per baseline the
    sampled mean with its CI, the two references, and the paired difference to the next baseline (pairs.csv)."""
    import pandas as pd

    t = pd.read_csv(out / "table.csv")
    cfg = read_record(out)
    summary = pd.read_csv(out / "summary.csv")
    pairs = pd.read_csv(out / "pairs.csv").set_index("baseline_offset") if (out / "pairs.csv").exists() else None
    v = summary["v_mu"].iloc[0]
    n = t["n"].astype(int)
    exact_mode = cfg["sweep"]["mode"] == "exact"
    uneven = n.nunique() > 1  # a shard can end inside a baseline's block of seeds
    seeds = ("deterministic: one run per baseline, no CI" if exact_mode
             else f"{n.min()}–{n.max()} seeds per baseline" if uneven else f"{n.iloc[0]} seed(s)")
    if cfg["sweep"].get("shard"):
        seeds += f", shard {cfg['sweep']['shard']}"
    steps = cfg["sweep"]["steps"]
    show_exact = "exact_same_step" in t and t["exact_same_step"].notna().any()
    show_pairs = pairs is not None and pairs["ci_low"].notna().any()
    lines = [f"{cfg['objective']['name']} on {cfg['bandit']['name']} bandit, behaviour {cfg['sweep']['behavior']} "
             f"(V^μ = {v:.4f}), {cfg['sweep']['mode']} mode, {seeds}, {steps} steps",
             f"{'δV':>7} {'V':>7} {'J(π_T)':>8} {'95% CI':>17}" + (f" {'exact':>7}" if show_exact else "") +
             f" {'limit':>7} {'support':>8} {'entropy':>8} {'improved':>9}" + ("" if exact_mode else f" {'95% CI':>11}")
             + (f" {'ΔJ to next':>16}" if show_pairs else "")]
    fmt = lambda x: "" if np.isnan(x) else f"{x:.4f}"
    for _, r in t.iterrows():
        ci = "" if np.isnan(r.ci_low) else f"[{r.ci_low:.4f}, {r.ci_high:.4f}]"
        line = f"{r.baseline_offset:>+7.3f} {r.baseline:>7.4f} {r['mean']:>8.4f} {ci:>17}"
        if show_exact:
            line += f" {fmt(r.exact_same_step):>7}"
        line += f" {fmt(r.get('theory_limit', r.get('theory', np.nan))):>7} {r.support:>8.1f} {r.entropy:>8.3f} " \
                f"{r.improved:>8.0%}"
        if not exact_mode:
            line += f" {f'[{r.improved_low:.2f}, {r.improved_high:.2f}]' if 'improved_low' in r else '':>11}"
        if show_pairs:
            p = pairs.loc[r.baseline_offset] if r.baseline_offset in pairs.index else None
            d = "" if p is None or np.isnan(p.ci_low) else f"{p['mean']:+.4f} ± {(p.ci_high - p.ci_low) / 2:.4f}"
            line += f" {d:>16}"
        lines.append(line + (f"  {int(r.n)} seed(s)" if uneven and r.n < n.max() else "") +
                     (f"  {int(r.diverged)} diverged" if r.diverged else ""))
    bad = int(t["diverged"].sum())
    if bad:
        lines.append(f"warning: {bad} of {len(summary)} runs left the finite range (loss or logits overflowed): "
                     "flagged `diverged` in summary.csv")
    lines += textwrap.wrap(("J(π_T): the policy's expected reward after the run, mean over seeds with its Student-t 95 % CI; "
                  if not exact_mode else "J(π_T): the policy's expected reward after the run; ") +
                 (f"exact: the expected (infinite-batch) update after the same {steps} steps; " if show_exact else "") +
                 "limit: Theorem 4.2's J(π*) as t → ∞, where it applies; "
                 "improved: share of seeds with J(π_T) > V^μ" + ("" if exact_mode else " (Wilson 95 % CI)") +
                 ("; ΔJ to next: J(π_T) at the next δV minus this one, per seed (paired), mean ± 95 % half-width"
                  if show_pairs else ""), 114)
    lines.append(f"files: {out}/summary.csv, steps.parquet, table.csv, pairs.csv, sweep.png")
    return "\n".join(lines)
