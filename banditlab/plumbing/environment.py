"""The environment variables banditlab reads, each checked here, once, when a command starts (`check`): a value
the tool does not know is refused in one line naming the variable, never ignored.

    BANDITLAB_CACHE              the folder of rebuildable files (the kernel memo, dequantised models);
                                 default ~/.cache/banditlab (`safeio.cache_dir`); must be a path, and a folder if
                                 it exists
    BANDITLAB_KERNEL             numpy | torch: the CPU exp kernel, forced (default: measured once per machine,
                                 `science.kernels.fastest`)
    BANDITLAB_PROGRESS           0 | 1: the progress bar off, or drawn (`plumbing.progress`)
    BANDITLAB_PROGRESS_SECONDS   seconds between two plain progress lines off a terminal (default 30)
"""

from __future__ import annotations

import os

from banditlab.errors import UsageError

KERNELS = ("numpy", "torch")


def kernel() -> str | None:
    """BANDITLAB_KERNEL: None (unset or empty: measure) or one of KERNELS."""
    forced = os.environ.get("BANDITLAB_KERNEL", "")
    if forced and forced not in KERNELS:
        raise UsageError(f"BANDITLAB_KERNEL: expected {' or '.join(KERNELS)} (or unset, to measure), got {forced!r}")
    return forced or None


def cache() -> None:
    """BANDITLAB_CACHE, when set: a path the system can hold, and a folder if something is there."""
    from banditlab.plumbing.safeio import check_path

    text = os.environ.get("BANDITLAB_CACHE", "")
    if text:
        p = check_path(text, "BANDITLAB_CACHE")
        if p.exists() and not p.is_dir():
            raise UsageError(f"BANDITLAB_CACHE: {p} is not a folder")


def check() -> None:
    """Every variable above, before a command does anything."""
    from banditlab.plumbing.progress import check_settings

    check_settings()
    kernel()
    cache()
