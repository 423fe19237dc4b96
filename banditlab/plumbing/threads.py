"""CPU threads for every command that computes: one rule, set in one place.

    use_threads(cfg.threads, elements=runs * arms)   # a bandit command: `--threads N`, 0 for the rule
    use_threads(cfg.threads, elements=None)          # an LLM command

The rule (`rule`), for `--threads 0`:
  * bandit work below SMALL (4M) array entries per step, which is every command but a large sweep: 1 thread;
  * a larger sweep: every core this process may use;
  * a language model (`elements=None`): half of those cores, at least 1.
"The cores this process may use" are its CPU affinity, shared by the processes of a data-parallel run on this
machine (LOCAL_WORLD_SIZE). A parallel region waits for its slowest thread, so a thread that loses its core to
another process stalls every product: on 2 cores beside a busy process, `sweep` steps with 2 threads ran 14×
slower than with 1 at 67k entries and broke even only near 1.6M (experiments/bench_bandit.py); SmolLM2's greedy
generation took 16–19 s with 1 thread and 222–270 s with 2; `demo --html` with two busy processes beside it took
15.0 s of CPU and 83 s of wall clock with torch's default of one thread per core, 5.3 s and 38 s with 1 thread.

What a running process can set, and how each library is reached:
  * torch's intra-op pool (OpenMP and MKL): torch.set_num_threads, at any time, when torch is loaded;
  * torch's inter-op pool: torch.set_num_interop_threads, once per process and only before its first inter-op
    work; a later call is skipped;
  * the OpenBLAS bundled with numpy (sized when numpy loads, before any option is parsed): its own
    `*openblas_set_num_threads*` entry point, found among the loaded libraries (Linux; skipped elsewhere);
  * libraries not loaded yet (torch is imported inside the commands that need it) and child processes (the
    grader's worker, the runs `reproduce` launches): OMP_NUM_THREADS, MKL_NUM_THREADS and OPENBLAS_NUM_THREADS,
    which each library reads once, when it loads.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from banditlab.plumbing.fields import option

SMALL = 4_000_000  # array entries per step below which one thread is fastest on a shared machine
HELP = "CPU threads of torch and numpy's BLAS (0: 1 below 4M array entries per step, else every core)"
LLM_HELP = "CPU threads of torch and numpy's BLAS (0: half the cores, at least 1)"


@dataclass
class ThreadsOption:
    """`--threads` of the bandit commands whose config has no field of that name (sweep's config has one)."""

    threads: int = option(0, HELP, 0, 1024)


@dataclass
class LLMThreadsOption:
    """`--threads` of the LLM commands whose config has no field of that name (`llm bench`)."""

    threads: int = option(0, LLM_HELP, 0, 4096)


def usable_cores() -> int:
    """The cores this process may run on, divided among the processes of a data-parallel run, at least 1."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        local = 1
    return max(1, cores // local)


def rule(elements: int | None = 0) -> int:
    """Threads for work of `elements` array entries per step (None: a language model's matrix products)."""
    cores = usable_cores()
    if elements is None:
        return max(1, cores // 2)
    return 1 if elements < SMALL else cores


def use_threads(requested: int = 0, elements: int | None = 0) -> int:
    """Set every CPU thread pool this process has, or will load, to `requested` threads (0: `rule(elements)`);
    return the count."""
    n = requested if requested > 0 else rule(elements)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)
        try:
            torch.set_num_interop_threads(n)
        except RuntimeError:  # set already, or inter-op work has started: the pool keeps its size
            pass
    import ctypes

    for set_threads in _openblas("set"):
        set_threads(ctypes.c_int(n))
    return n


def _openblas(kind: str) -> list:
    """The `openblas_{kind}_num_threads` function of every loaded OpenBLAS (numpy's wheel bundles one whose
    symbols carry a prefix and a suffix); none where the process's libraries cannot be listed."""
    try:
        with open("/proc/self/maps") as f:
            libs = sorted({line.split()[-1] for line in f if "openblas" in line.lower() and ".so" in line})
    except OSError:
        return []
    import ctypes

    found = []
    for path in libs:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        names = [f"{pre}openblas_{kind}_num_threads{suf}" for pre in ("", "scipy_") for suf in ("", "64_")]
        fn = next((getattr(lib, n) for n in names if hasattr(lib, n)), None)
        if fn is not None:
            found.append(fn)
    return found


def blas_threads() -> list[int]:
    """The pool size of every loaded OpenBLAS."""
    return [int(get()) for get in _openblas("get")]
