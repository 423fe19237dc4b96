"""Stochastic bandits: mean rewards, the behaviour policy π₀ = μ₀, and the reward-noise model.

A bandit has C ≥ 1 contexts (C = 1: the ordinary bandit), each with K arms, its own mean rewards r̄(x, a),
initial policy logits and probability p(x); a context plays the part of a prompt in an LLM.

Noise models for one pull of arm a (mean r̄ in reward units):
    none       r = r̄ exactly
    bernoulli  r ∈ {low, high}, P(high) = (r̄ − low)/(high − low)   (means must lie in [low, high])
    gaussian   r = r̄ + σ ε, ε ~ N(0, 1)
`outcomes()` lists every reward value with its probability (Gauss–Hermite nodes for the Gaussian) so that the
exact mode can weight them; for objectives linear in r this equals using r̄.

The default bandit is the AsymRE paper's (§5.1): 100 arms, r̄ ~ U[0, 1] drawn once from a fixed seed, μ₀ =
softmax(y/10) over arm index y. The paper does not give its draw; `PAPER_SEED` is the first numpy seed
whose draw has the statistics the paper reports (V^μ within 0.005 of 0.5405, best arm ≥ 0.999): V^μ = 0.5388.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

NOISES = ("none", "bernoulli", "gaussian")
PAPER_SEED = 357  # the first seed whose draw matches the paper's: |V^μ − 0.5405| < 0.005 and best arm ≥ 0.999


class BanditError(ValueError):
    """A malformed bandit description; the message names the offending field."""


@dataclass
class Bandit:
    means: np.ndarray                 # [C, K] mean reward of each arm in each context
    logits: np.ndarray                # [C, K] initial policy (and fixed behaviour) logits
    context_probs: np.ndarray         # [C] p(x)
    noise: str = "bernoulli"
    low: float = 0.0
    high: float = 1.0
    sigma: float = 0.1
    name: str = "custom"
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.means = np.atleast_2d(np.asarray(self.means, dtype=float))
        self.logits = np.atleast_2d(np.asarray(self.logits, dtype=float))
        self.context_probs = np.asarray(self.context_probs, dtype=float).reshape(-1)
        self.validate()

    @property
    def contexts(self) -> int:
        return self.means.shape[0]

    @property
    def arms(self) -> int:
        return self.means.shape[1]

    @property
    def mu(self) -> np.ndarray:
        """μ₀(a | x) = softmax(logits), [C, K]."""
        z = self.logits - self.logits.max(-1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(-1, keepdims=True)

    @property
    def v_mu(self) -> np.ndarray:
        """V^μ(x) = Σ_a μ₀(a|x) r̄(x, a), [C]."""
        return (self.mu * self.means).sum(-1)

    @property
    def v_mu_total(self) -> float:
        return float(self.context_probs @ self.v_mu)

    def validate(self) -> None:
        if self.means.ndim != 2 or self.means.shape[1] < 2:
            raise BanditError(f"arms: a bandit needs at least 2 arms per context, got {self.means.shape[-1]}")
        check_size(self.means.shape[1], self.means.shape[0])
        if self.logits.shape != self.means.shape:
            raise BanditError(f"behavior: {self.logits.shape[-1]} behaviour values for {self.means.shape[-1]} "
                              "arms (lengths must match)")
        if self.context_probs.shape != (self.means.shape[0],):
            raise BanditError(f"context weights: {len(self.context_probs)} weights for {self.means.shape[0]} contexts")
        if not (np.isfinite(self.means).all() and np.isfinite(self.logits).all()):
            raise BanditError("rewards: mean rewards and behaviour logits must be finite numbers")
        if (self.context_probs <= 0).any() or not math.isclose(self.context_probs.sum(), 1.0, rel_tol=1e-9):
            raise BanditError("context weights: must be positive and sum to 1")
        if self.noise not in NOISES:
            raise BanditError(f"noise: unknown noise model {self.noise!r} (choose from: {', '.join(NOISES)})")
        if self.noise == "bernoulli":
            if not self.low < self.high:
                raise BanditError(f"reward range: low ({self.low}) must be below high ({self.high})")
            if (self.means < self.low - 1e-12).any() or (self.means > self.high + 1e-12).any():
                raise BanditError(f"rewards: Bernoulli noise needs mean rewards in [{self.low}, {self.high}]")
        if self.noise == "gaussian" and not self.sigma > 0:
            raise BanditError(f"sigma: Gaussian noise needs sigma > 0, got {self.sigma}")

    def outcomes(self, gauss_nodes: int = 8) -> tuple[np.ndarray, np.ndarray]:
        """All reward outcomes of each arm with their probabilities: values and probs, both [C, K, O]."""
        m = self.means[..., None]
        if self.noise == "none":
            return m, np.ones_like(m)
        if self.noise == "bernoulli":
            p = (m - self.low) / (self.high - self.low)
            vals = np.concatenate([np.full_like(m, self.low), np.full_like(m, self.high)], -1)
            return vals, np.concatenate([1 - p, p], -1)
        x, w = np.polynomial.hermite_e.hermegauss(gauss_nodes)  # ∫ f(x) e^{-x²/2} dx
        w = w / w.sum()
        return m + self.sigma * x, np.broadcast_to(w, m.shape[:-1] + (gauss_nodes,)).copy()

    def describe(self) -> dict:
        return {"name": self.name, "contexts": self.contexts, "arms": self.arms, "noise": self.noise,
                "low": self.low, "high": self.high, "sigma": self.sigma, "v_mu": self.v_mu_total,
                "best_expected_reward": float(self.context_probs @ self.means.max(-1)), **self.meta}

    def to_dict(self) -> dict:
        """Everything needed to rebuild this bandit exactly (stored in a run's config.json)."""
        return {"means": self.means.tolist(), "logits": self.logits.tolist(),
                "context_probs": self.context_probs.tolist(), "noise": self.noise, "low": self.low,
                "high": self.high, "sigma": self.sigma, "name": self.name}


def paper(arms: int = 100, contexts: int = 1, seed: int = PAPER_SEED, temperature: float = 10.0,
          noise: str = "bernoulli", low: float = 0.0, high: float = 1.0) -> Bandit:
    """The AsymRE bandit: r̄ ~ U[0,1] i.i.d. (one draw from `seed`), μ₀ = softmax(y / temperature); with rewards
    {low, high} the means are rescaled to low + (high − low) r̄."""
    rng = np.random.default_rng(seed)
    means = low + (high - low) * rng.uniform(0.0, 1.0, size=(contexts, arms))
    logits = np.broadcast_to(np.arange(arms) / temperature, (contexts, arms)).copy()
    name = "paper" if (arms, contexts) == (100, 1) else f"paper-{contexts}x{arms}"
    return Bandit(means, logits, np.full(contexts, 1.0 / contexts), noise=noise, low=low, high=high, name=name,
                  meta={"seed": seed, "temperature": temperature})


def from_lists(rewards: list[float], mu: list[float] | None = None, noise: str = "none", low: float = 0.0,
               high: float = 1.0, sigma: float = 0.1, name: str = "custom") -> Bandit:
    """A one-context bandit from mean rewards and (optionally) behaviour probabilities (uniform if absent)."""
    r = np.asarray(rewards, dtype=float)
    if mu is None:
        logits = np.zeros_like(r)
    else:
        m = np.asarray(mu, dtype=float)
        if m.shape != r.shape:
            raise BanditError(f"mu: {m.size} behaviour probabilities for {r.size} arms (lengths must match)")
        if (m <= 0).any() or not math.isclose(m.sum(), 1.0, rel_tol=1e-6):
            raise BanditError("mu: behaviour probabilities must be positive and sum to 1")
        logits = np.log(m)
    return Bandit(r[None], logits[None], np.ones(1), noise=noise, low=low, high=high, sigma=sigma, name=name)


TOP_KEYS = {"means", "mu", "logits", "noise", "low", "high", "sigma", "context"}
CONTEXT_KEYS = {"means", "mu", "logits", "weight"}
VALUE_LIMIT = 1e6  # mean rewards, reward values and sigma: beyond this the updates overflow
ARMS_MAX, CONTEXTS_MAX, CELLS_MAX = 10**6, 10**5, 10**7  # arms, contexts, arms × contexts


def check_size(arms: int, contexts: int) -> None:
    """The sizes every bandit obeys, from options, a file or lists alike: 2 to ARMS_MAX arms, 1 to CONTEXTS_MAX
    contexts, arms × contexts ≤ CELLS_MAX (checked before a draw allocates them)."""
    if not 2 <= arms <= ARMS_MAX:
        raise BanditError(f"arms: a bandit needs 2 to {ARMS_MAX:.0e} arms, got {arms}".replace("e+0", "e"))
    if not 1 <= contexts <= CONTEXTS_MAX or arms * contexts > CELLS_MAX:
        raise BanditError(f"contexts: 1 to {CONTEXTS_MAX:.0e} contexts with arms × contexts ≤ {CELLS_MAX:.0e}, got "
                          f"{contexts} × {arms}".replace("e+0", "e"))


def check_fields(given: set, noise: str, drawn: bool) -> None:
    """The cross-field rules of the noise options, for the command line and bandit files alike (`given`: the
    fields set explicitly). sigma is Gaussian noise's standard deviation; low/high are Bernoulli noise's two
    outcomes, and for a drawn bandit (`drawn`, the paper draw) also the range its means are drawn in, so with
    explicit means and other noise they would mean nothing."""
    if "sigma" in given and noise != "gaussian":
        raise BanditError(f"sigma: only used with gaussian noise (the noise is {noise})")
    if given & {"low", "high"} and noise != "bernoulli" and not drawn:
        raise BanditError(f"reward range: low/high are the two outcomes of Bernoulli noise; with {noise} noise and "
                          "explicit means they mean nothing (drop them)")


def from_toml(path: str | Path) -> Bandit:
    """Read a bandit file. One context:

        means = [0.0, 0.8, 1.0]          # required
        mu = [0.3, 0.6, 0.1]             # or logits = [...] (not both); default uniform
        noise = "none"                   # none | bernoulli | gaussian ; low/high/sigma optional

    Several contexts: `[[context]]` tables, each with means, mu or logits, and an optional weight. Everything may
    sit under one [bandit] table instead of the top level (not both). Unknown keys, wrong types (a boolean is
    not a number) and conflicting keys are refused with the key's name.
    """
    from banditlab.errors import UsageError
    from banditlab.plumbing.safeio import read_text

    path = Path(path)
    try:
        data = tomllib.loads(read_text(path, "--bandit"))
    except UsageError as err:
        raise BanditError(str(err)) from None
    except (tomllib.TOMLDecodeError, RecursionError) as err:
        raise BanditError(f"--bandit: {path} is not valid TOML: {str(err)[:200]}") from None
    if "bandit" in data:
        if set(data) != {"bandit"}:
            raise BanditError(f"--bandit: {path}: key {sorted(set(data) - {'bandit'})[0]!r} sits beside the "
                              "[bandit] table; put every key under [bandit] or none")
        data = data["bandit"]
    if not isinstance(data, dict):
        raise BanditError(f"--bandit: {path}: [bandit] must be a table, got {data!r}")
    _check_keys(data, TOP_KEYS, f"--bandit: {path}")
    if "context" in data and set(data) & CONTEXT_KEYS:
        raise BanditError(f"--bandit: {path}: {sorted(set(data) & CONTEXT_KEYS)[0]!r} at the top level conflicts "
                          "with the [[context]] tables; put it inside each context")
    opts = {k: data[k] for k in ("noise", "low", "high", "sigma") if k in data}
    for k, v in opts.items():
        if k == "noise" and not isinstance(v, str):
            raise BanditError(f"--bandit: {path}: noise must be text (none, bernoulli or gaussian), got {v!r}")
        if k != "noise":
            _number(v, f"--bandit: {path}: {k}")
    try:
        check_fields(set(opts), opts.get("noise", Bandit.noise), drawn=False)
    except BanditError as err:
        raise BanditError(f"--bandit: {path}: {err}") from None
    tables = data.get("context", [data])
    if not isinstance(tables, list) or not tables or not all(isinstance(t, dict) for t in tables):
        raise BanditError(f"--bandit: {path}: [[context]] must be a list of tables")
    means, logits, weights = [], [], []
    for i, t in enumerate(tables):
        where = f"--bandit: {path}: context {i}" if "context" in data else f"--bandit: {path}"
        if "context" in data:
            _check_keys(t, CONTEXT_KEYS, where)
        if "mu" in t and "logits" in t:
            raise BanditError(f"{where}: give mu or logits, not both")
        if "means" not in t:
            raise BanditError(f"{where}: missing 'means'")
        for k in ("means", "mu", "logits"):
            if k in t:
                _numbers(t[k], f"{where}: {k}")
        try:
            b = from_lists(t["means"], t.get("mu"))
            if "logits" in t:
                b.logits = np.asarray([t["logits"]], dtype=float)
                b.validate()
        except (TypeError, ValueError) as err:
            raise BanditError(f"{where}: {err}") from None
        means.append(b.means[0])
        logits.append(b.logits[0])
        weights.append(_number(t.get("weight", 1.0), f"{where}: weight"))
    if len({len(m) for m in means}) != 1:
        raise BanditError(f"--bandit: {path}: every context must have the same number of arms")
    if 0 < sum("weight" in t for t in tables) < len(tables):
        raise BanditError(f"--bandit: {path}: give every context a weight or none (weights are normalised to sum "
                          "to 1, so a missing one has no meaning)")
    w = np.asarray(weights)
    if (w <= 0).any():
        raise BanditError(f"--bandit: {path}: context weights must be positive")
    try:
        return Bandit(np.array(means), np.array(logits), w / w.sum(), name=path.stem, **opts)
    except BanditError as err:
        raise BanditError(f"--bandit: {path}: {err}") from None


def _check_keys(table: dict, allowed: set, where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise BanditError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")


def _number(v, where: str) -> float:
    """A finite number within ±VALUE_LIMIT (booleans are refused: TOML true is not 1)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or abs(v) > VALUE_LIMIT:
        raise BanditError(f"{where}: expected a finite number within ±{VALUE_LIMIT:g}, got {v!r}")
    return float(v)


def _numbers(v, where: str) -> None:
    if not isinstance(v, list) or not v:
        raise BanditError(f"{where}: expected a list of numbers, got {v!r}")
    for x in v:
        _number(x, where)
