"""The simulator's CPU kernels and sampling tables: exp with its clamp (numpy's or torch's, whichever is faster on
this machine, chosen once and remembered), Walker's alias method with its one-lookup guide table, and the per-pull
gathers and sums of sampled mode (`_cells_*`, `_accumulate_*`) into a reusable `Workspace`.

Every kernel pair computes the same numbers; only their speed differs between CPUs. Where two kernels may differ in
the last bit (numpy's and torch's exp on some CPUs), the choice is remembered per machine (`fastest`) so that a
rerun computes with the same ones.
"""

from __future__ import annotations

import math

import numpy as np
import torch

def _exp_torch(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    return torch.exp(torch.clamp_min(x, -700.0, out=out), out=out)


def _exp_numpy(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    buf = torch.clamp_min(x, -700.0, out=out).numpy()
    with np.errstate(over="ignore"):  # an overflow shows as Σ z = inf, which the callers check
        np.exp(buf, out=buf)
    return out


_EXP_KERNELS = {"torch": _exp_torch, "numpy": _exp_numpy}
_choice: dict = {}


def fastest(name: str, kernels: dict, *args) -> str:
    """The name of the fastest of `kernels` (functions of `args`) on this machine: numpy's and torch's CPU kernels
    differ by 2× either way between CPUs (numpy's float64 exp is 2× faster than torch's on some, 2.4× slower on
    others). Best of 5 alternating rounds of 4 calls, measured once per machine and remembered in
    CACHE/kernels.json under the CPU model and library versions: on some machines the two exps differ in the last
    bit (float64: about 5 % of values on an AMD EPYC, none on an Intel Xeon; float32: about 40 % on that Xeon), so
    a choice that flipped with the machine's load would make a rerun or a resumed run differ.
    BANDITLAB_KERNEL=numpy|torch forces one (the same numbers across machines of one CPU model)."""
    if name in _choice:
        return _choice[name]
    from banditlab.plumbing.environment import kernel

    forced = kernel()
    key = f"{name} | {_machine()}"
    memo = _read_memo()
    if forced in kernels:
        _choice[name] = forced
    elif memo.get(key) in kernels:
        _choice[name] = memo[key]
    else:
        import time

        best = {k: float("inf") for k in kernels}
        for _ in range(5):
            for k, fn in kernels.items():
                t = time.perf_counter()
                for _ in range(4):
                    fn(*args)
                best[k] = min(best[k], time.perf_counter() - t)
        _choice[name] = min(best, key=best.get)
        _write_memo({**_read_memo(), key: _choice[name]})
    return _choice[name]


def _machine() -> str:
    """The CPU model and the versions whose kernels are compared."""
    import platform

    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), model)
    except OSError:
        pass
    return f"{model} | torch {torch.__version__} | numpy {np.__version__}"


def _memo_path():
    from banditlab.plumbing.safeio import cache_dir

    return cache_dir() / "kernels.json"


def _read_memo() -> dict:
    """The remembered choices, through the safe reader (a regular file of at most 1 MiB, strict JSON: a pipe, a
    device or a huge file is never opened or read); anything else counts as none (it is measured again)."""
    from banditlab.errors import UsageError
    from banditlab.plumbing.safeio import read_json

    try:
        path = _memo_path()
        if not path.exists():
            return {}
        memo = read_json(path, "BANDITLAB_CACHE", limit=1 << 20)
    except (UsageError, OSError, RuntimeError):
        return {}
    if not isinstance(memo, dict):
        return {}
    return {k: v for k, v in memo.items() if isinstance(k, str) and isinstance(v, str)}


def _write_memo(memo: dict) -> None:
    """Atomically (`atomic_write`); a cache that cannot be written leaves the choice to this process alone."""
    import json

    from banditlab.errors import UsageError
    from banditlab.plumbing.folder import atomic_write

    try:
        path = _memo_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(memo, indent=1, sort_keys=True))
    except (OSError, RuntimeError, UsageError):  # not writable, or not a regular file: never replaced
        pass


def exp_kernel(dtype: torch.dtype) -> str:
    """"numpy" or "torch": the faster CPU exp for `dtype` here (timed on 16k values, about 5 ms)."""
    name = f"exp-{dtype}"
    if name not in _choice:
        x = torch.linspace(-30.0, 5.0, 1 << 14, dtype=dtype)
        fastest(name, _EXP_KERNELS, x, torch.empty_like(x))
    return _choice[name]


def exp_clamped(x: torch.Tensor, out: torch.Tensor, clamp: bool = True) -> torch.Tensor:
    """out = exp(max(x, −700)): below −745 exp underflows on a slow path (4–8× slower), while e^−700 = 1e−304
    is below one ulp of any sum it enters. `clamp=False` skips the max when the caller knows x > −700.
    On the CPU by the faster kernel of `exp_kernel`."""
    if x.device.type != "cpu":
        return _exp_torch(x, out) if clamp else torch.exp(x, out=out)
    if exp_kernel(x.dtype) == "torch":
        return _exp_torch(x, out) if clamp else torch.exp(x, out=out)
    if clamp:
        return _exp_numpy(x, out)
    with np.errstate(over="ignore"):
        np.exp(x.numpy(), out=out.numpy())
    return out


def _alias_torch(u: torch.Tensor, base: torch.Tensor | None, M: int, prob: torch.Tensor, alias: torch.Tensor):
    """Walker's alias method on flat tables of M cells per context: u ∈ [0, 1) picks cell i = base + ⌊uM⌋
    (base = c·M for context c), kept when the coin uM − ⌊uM⌋ < prob[i], else alias[i]. Returns flat cell ids."""
    x = u * M
    i = x.long().clamp_max_(M - 1)
    coin = x.sub_(i)
    if base is not None:
        i += base
    return torch.where(coin < prob.take(i), i, alias.take(i))


def _alias_split(u: np.ndarray, M: int) -> tuple[np.ndarray, np.ndarray]:
    """(i, coin) of the alias method in numpy: i = min(⌊uM⌋, M − 1) and coin = uM − i, by `_alias_torch`'s
    floating-point operations."""
    x = u * M
    i = np.minimum(x.astype(np.intp), M - 1)
    x -= i
    return i, x


def _alias_numpy(u: np.ndarray, base: np.ndarray | None, M: int, prob: np.ndarray, alias: np.ndarray):
    """`_alias_torch` in numpy: the same floating-point operations, so the same cells."""
    i, coin = _alias_split(u, M)
    if base is not None:
        i += base
    return np.where(coin < prob.take(i), i, alias.take(i))


def guide_table(prob: np.ndarray, alias: np.ndarray, C: int, M: int, dtype) -> tuple[np.ndarray, int]:
    """(table [C·L], L): the alias method's cell for u ∈ [j/L, (j+1)/L) in context c at index c·L + j, or −1 where
    the alias method gives more than one cell on that interval. L is a power of two, so j = ⌊uL⌋ is exact. The
    alias method's cell is a monotone function of uM and its coin, so it is one cell on an interval exactly when it
    is the same cell, from the same ⌊uM⌋, at the interval's two ends (the lowest and the highest float of the
    draw's dtype in it): evaluated here with the very operations of `_alias_numpy`. At most 2M of the L
    intervals of a context are ambiguous (L ≥ 256 M where memory allows: under 1 % of draws)."""
    L = 1 << int(np.clip(math.ceil(math.log2(256 * M)), 8, 20))
    while C * L > 1 << 22 and L > 256:
        L //= 2
    j = np.arange(L)
    lo = (j / L).astype(dtype)
    hi = np.nextafter(((j + 1) / L).astype(dtype), dtype(0))
    table = np.empty((C, L), dtype=np.int64)
    for c in range(C):
        p, a = prob[c * M:(c + 1) * M], alias[c * M:(c + 1) * M] - c * M
        ends = [(_alias_split(u, M)[0], _alias_numpy(u, None, M, p, a)) for u in (lo, hi)]
        (i_lo, cell_lo), (i_hi, cell_hi) = ends
        table[c] = np.where((i_lo == i_hi) & (cell_lo == cell_hi), cell_lo + c * M, -1)
    return table.reshape(-1), L


def _same_device(a: torch.device, b: torch.device) -> bool:
    """Whether tensors on `a` are on `b`, where "cuda" means the current CUDA device ("cuda:0" != "cuda" in torch)."""
    return a.type == b.type and (b.index is None or a.index == b.index)


class Workspace:
    """Arrays reused from one block of sampled steps to the next, grown when a block needs more: the uniforms, the
    numpy kernels' per-pull temporaries and G. A block's per-pull arrays are megabytes; allocated afresh in every
    block they page-faulted (0.55 s of system time in the 1.5 s simulation of the default sweep, measured), which
    the strong numpy peer's preallocated buffers avoid. A block's outputs (G, the cells) are views into it, valid
    until the next block is drawn. The torch kernels (the CPU's choice on some machines, and CUDA's) allocate their
    temporaries and keep only the uniforms and G here."""

    def __init__(self):
        self._flat: dict = {}

    def get(self, name: str, shape: tuple, dtype, device: torch.device | None = None):
        """An uninitialised array of `shape`: numpy for a numpy dtype, torch (on `device`) for a torch dtype."""
        size = math.prod(shape)
        flat = self._flat.get(name)
        moved = device is not None and flat is not None and not _same_device(flat.device, device)
        if flat is None or flat.dtype != dtype or len(flat) < size or moved:
            on_torch = isinstance(dtype, torch.dtype)
            flat = torch.empty(size, dtype=dtype, device=device) if on_torch else np.empty(size, dtype)
            self._flat[name] = flat
        return flat[:size].reshape(shape)


def _cells_torch(u: torch.Tensor, ctx: torch.Tensor | None, tables: dict, ws: Workspace) -> torch.Tensor:
    """Flat cell ids of draws u [..., C, B] (contexts ctx [..., C, 1] or None): the guide table's cell where it
    has one, the alias method's elsewhere; the same cells as the alias method alone."""
    L, M = tables["L"], tables["M"]
    j = (u * L).long()
    if ctx is not None:
        j += ctx * L
    cell = tables["guide"].take(j)
    miss = (cell < 0).nonzero(as_tuple=True)
    if miss[0].numel():
        base = None if ctx is None else (ctx * M).expand_as(u)[miss]
        cell[miss] = _alias_torch(u[miss], base, M, tables["prob"], tables["alias"])
    return cell


def _cells_numpy(u: torch.Tensor, ctx: torch.Tensor | None, tables: dict, ws: Workspace) -> torch.Tensor:
    """`_cells_torch` with numpy's kernels into `ws`'s arrays (on the CPU)."""
    L, M = tables["L"], tables["M"]
    un = u.numpy()
    x = np.multiply(un, L, out=ws.get("x", un.shape, un.dtype))
    j = ws.get("j", un.shape, np.intp)
    np.copyto(j, x, casting="unsafe")  # truncation: ⌊uL⌋
    if ctx is not None:
        j += ctx.numpy() * L
    cell = np.take(tables["guide"].numpy(), j, out=ws.get("cell", un.shape, np.int64), mode="clip")  # in range
    miss = np.flatnonzero(np.less(cell, 0, out=ws.get("miss", un.shape, np.bool_)))
    if miss.size:
        base = None if ctx is None else np.broadcast_to(ctx.numpy() * M, un.shape).reshape(-1)[miss]
        cell.reshape(-1)[miss] = _alias_numpy(un.reshape(-1)[miss], base, M, tables["prob"].numpy(),
                                              tables["alias"].numpy())
    return torch.from_numpy(cell)


def _accumulate_torch(cells: torch.Tensor, coef: torch.Tensor, arm: torch.Tensor, width: int,
                      ws: Workspace) -> torch.Tensor:
    """G [n, R, width] with G[k, r, arm[c]] = Σ coef[r, c] over step k's pulls of run r (cells [n, R, P]), summed in
    pull order (the order of the per-pull registry path's `scatter_add_`)."""
    n, R, P = cells.shape
    run = torch.arange(R, device=cells.device)[:, None]
    idx = cells + run * coef.shape[-1]  # (run, cell)
    w = coef.reshape(-1).take(idx)
    slot = (arm[None, :] + run * width).reshape(-1).take(idx)
    slot += torch.arange(n, device=cells.device).view(n, 1, 1) * (R * width)
    G = ws.get("G", (n * R * width,), coef.dtype, coef.device).zero_()
    return G.scatter_add_(0, slot.reshape(-1), w.reshape(-1)).view(n, R, width)


def _accumulate_numpy(cells: torch.Tensor, coef: torch.Tensor, arm: torch.Tensor, width: int,
                      ws: Workspace) -> torch.Tensor:
    """`_accumulate_torch` with numpy's gathers into `ws`'s arrays (on the CPU); the same sums."""
    n, R, P = cells.shape
    idx = np.add(cells.numpy(), np.arange(R)[:, None] * coef.shape[-1], out=ws.get("idx", (n, R, P), np.intp))
    w = np.take(coef.numpy().reshape(-1), idx, out=ws.get("w", (n, R, P), coef.numpy().dtype), mode="clip")
    slot = np.take((arm.numpy() + np.arange(R)[:, None] * width).reshape(-1), idx,
                   out=ws.get("slot", (n, R, P), np.intp), mode="clip")  # in range by construction
    slot += np.arange(n).reshape(n, 1, 1) * (R * width)
    G = ws.get("G", (n * R * width,), coef.dtype, coef.device).zero_()
    return G.scatter_add_(0, torch.from_numpy(slot).reshape(-1), torch.from_numpy(w).reshape(-1)).view(n, R, width)


def alias_tables(logmu: torch.Tensor, vals: np.ndarray, probs: np.ndarray, dtype: torch.dtype,
                 device: torch.device) -> dict:
    """Flat alias and guide tables over every context's (arm, outcome) cells with probabilities μ(a|x) P(r|a, x)
    (log μ [C, K], outcome values and probabilities [C, K, O]), by Vose's method, with each cell's arm, reward,
    log μ, flat arm index c·K + a and outcome-major index o·C·K + c·K + a."""
    C, K, O = vals.shape
    M = K * O
    p = (logmu.exp().cpu().numpy()[..., None] * probs).reshape(C, M)
    prob, alias = np.ones((C, M)), np.tile(np.arange(M), (C, 1))
    for c in range(C):
        scaled = p[c] * M / p[c].sum()
        small = [j for j in range(M) if scaled[j] < 1.0]
        large = [j for j in range(M) if scaled[j] >= 1.0]
        while small and large:
            lo, hi = small.pop(), large.pop()
            prob[c, lo], alias[c, lo] = scaled[lo], hi
            scaled[hi] -= 1.0 - scaled[lo]
            (small if scaled[hi] < 1.0 else large).append(hi)
    alias += np.arange(C)[:, None] * M                      # flat cell ids
    cells = np.arange(C * M)
    t = lambda x, dt=dtype: torch.as_tensor(x, dtype=dt, device=device)
    prob = t(prob.reshape(-1))
    prob_np = prob.cpu().numpy()  # the draws' dtype: the same comparisons
    guide, L = guide_table(prob_np, alias.reshape(-1), C, M, prob_np.dtype.type)
    arm = (cells % M) // O
    return {"M": M, "L": L, "prob": prob, "alias": t(alias.reshape(-1), torch.long), "guide": t(guide, torch.long),
            "arm": t(arm, torch.long), "flat_arm": t(cells // M * K + arm, torch.long),
            "outcome_major": t(cells % O * (C * K) + cells // M * K + arm, torch.long),
            "reward": t(vals.reshape(-1)), "logmu": t(np.repeat(logmu.cpu().numpy().reshape(-1), O))}


def cells(tables: dict, ctx: torch.Tensor | None, u: torch.Tensor, ws: Workspace) -> torch.Tensor:
    """Flat cell ids of pulls [..., C, B] with contexts ctx [..., C, 1] (None: one context) and uniforms u, by the
    faster of `_cells_numpy` and `_cells_torch` on the CPU (torch's elsewhere)."""
    if u.device.type != "cpu":
        return _cells_torch(u, ctx, tables, ws)
    kernels = {"torch": _cells_torch, "numpy": _cells_numpy}
    few = u.reshape(-1)[: 1 << 14]
    return kernels[fastest("cells", kernels, few, None, tables, ws)](u, ctx, tables, ws)


def accumulate(cells: torch.Tensor, coef: torch.Tensor, arm: torch.Tensor, width: int, ws: Workspace) -> torch.Tensor:
    """G [n, R, width] of `_accumulate_torch`, by the faster of it and `_accumulate_numpy` on the CPU."""
    if cells.device.type != "cpu":
        return _accumulate_torch(cells, coef, arm, width, ws)
    kernels = {"torch": _accumulate_torch, "numpy": _accumulate_numpy}
    name = fastest("accumulate", kernels, cells[:1, : max(1, (1 << 14) // cells.shape[-1])], coef, arm, width,
                   Workspace())
    return kernels[name](cells, coef, arm, width, ws)
