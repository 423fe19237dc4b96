"""banditlab: controlled experiments on off-policy REINFORCE (AsymRE, TOPR, REC) with bandits and LLMs.

The public Python API is what this module exports; the modules behind it (banditlab.science, banditlab.registry,
banditlab.plumbing, ...) may move between releases.

    from banditlab import bandits, get_objective, run_grid, theory

    b = bandits.paper(noise="none")                            # the AsymRE paper's 100-armed bandit
    mu, r = b.mu[0], b.means[0]
    pi = theory.limit_policy(mu, r, theory.v_mu(mu, r) - 0.1)  # Theorem 4.2's limit at V = V^μ − 0.1
    df, _ = run_grid(b, get_objective("asymre", baseline="vmu"), [-0.1], mode="exact", steps=2000)

docs/bandit.md runs a longer example; `Simulator` and `SimConfig` are the pieces `run_grid` puts together.

Names are imported on first use, so `import banditlab` stays cheap (the command line starts without torch).
"""

import importlib

__version__ = "0.1.0"

# name → the module that owns it (one place to look a public name up)
_API = {
    "Simulator": "banditlab.science.simulator",
    "SimConfig": "banditlab.science.simulator",
    "SimState": "banditlab.science.simulator",
    "run_grid": "banditlab.science.simulator",
    "final_policy": "banditlab.science.simulator",
    "Behavior": "banditlab.science.behaviour",
    "Bandit": "banditlab.science.bandits",
    "get_objective": "banditlab.registry.objectives",
    "OBJECTIVES": "banditlab.registry.objectives",
    "Batch": "banditlab.registry.objectives",
}
_MODULES = {"bandits": "banditlab.science.bandits", "theory": "banditlab.science.theory",
            "stats": "banditlab.stats"}

__all__ = sorted([*_API, *_MODULES, "__version__"])


def __getattr__(name: str):
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
    elif name in _MODULES:
        value = importlib.import_module(_MODULES[name])
    else:
        raise AttributeError(f"module 'banditlab' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return __all__
