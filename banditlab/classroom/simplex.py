"""The simplex of three arms, shared by the demo's figure (demo.py) and its web page (page.py): where a policy sits
in the triangle, the starts π₀, and the paths π_t of the expected update from them.
"""

from __future__ import annotations

import numpy as np

from banditlab.science import bandits as B

SQ3 = np.sqrt(3) / 2


def to_xy(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Barycentric → Cartesian: arm 1 at (0, 0), arm 2 at (1, 0), arm 3 at (1/2, √3/2)."""
    return p[..., 1] + p[..., 2] / 2, p[..., 2] * SQ3


def starts(mu: np.ndarray, n: int = 6, seed: int = 0) -> np.ndarray:
    """π₀ = μ plus n − 1 spread-out random starts, as logits [n, 1, K]."""
    rng = np.random.default_rng(seed)
    p = np.vstack([mu, rng.dirichlet(np.ones(len(mu)) * 0.7, size=n - 1)])
    return np.log(np.clip(p, 1e-4, None))[:, None, :]


def paths(bandit: B.Bandit, Vs, steps: int, lr: float, n_starts: int = 6, record_every: int = 0) -> np.ndarray:
    """π_t for each V and start, one vectorised run: [S, len(Vs), n_starts, K] (exact update, fixed μ), recorded
    every `record_every` steps (default: about 400 records)."""
    from banditlab.registry.objectives import get_objective
    from banditlab.science.simulator import run_grid

    Vs = np.atleast_1d(Vs)
    init = np.tile(starts(bandit.mu[0], n_starts), (len(Vs), 1, 1))
    _, traj = run_grid(bandit, get_objective("asymre", baseline="absolute"), np.repeat(Vs, n_starts), steps=steps,
                       lr=lr, record_every=record_every or max(1, steps // 400), init_logits=init)
    return traj[:, :, 0].reshape(len(traj), len(Vs), n_starts, -1)
