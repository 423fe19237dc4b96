"""The behaviour policy μ that draws the simulator's data: one `Behavior`, parsed from --behavior.

    fixed       μ = π₀ forever (fully offline)             lag:N    μ ← π every N steps (lag:1 = on-policy)
    on-policy   lag:1                                      delay:K  the copied policy is the one K steps old
    mix:α[:init|uniform]   μ = (1 − α) μ_lag + α π_ref, π_ref = π₀ (init, the default) or the uniform policy

Parts are comma-separated, each setting one thing once (the refresh: fixed, on-policy or lag:N; delay:K; mix).
The simulator takes log μ (`log_mu`) and the refresh rule (`refresh`) from here, the theory its fixed μ (`theory_mu`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

EXPECTED = "expected fixed, on-policy, lag:N, delay:K or mix:A[:init|uniform], comma-separated"
SETTING = {"fixed": "refresh", "on-policy": "refresh", "lag": "refresh", "delay": "delay", "mix": "mix"}


@dataclass(frozen=True)
class Behavior:
    lag: int | None = None     # None: fixed behaviour μ = π₀
    delay: int = 0
    mix: float = 0.0
    mix_ref: str = "init"      # init (π₀) | uniform

    @staticmethod
    def parse(text: str) -> "Behavior":
        """Parse 'fixed', 'on-policy', 'lag:N', 'delay:K', 'mix:A[:init|uniform]', comma-combined. A part it does not
        know, a malformed value, or two parts that set the same thing raise ValueError in one line naming
        --behavior."""
        out = {"lag": None, "delay": 0, "mix": 0.0, "mix_ref": "init"}
        seen = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, _, rest = part.partition(":")
            what = SETTING.get(name.strip())
            if what in seen:
                raise ValueError(f"--behavior {text!r}: {seen[what]!r} and {part!r} both set the {what}; give one")
            if what:
                seen[what] = part
            try:
                if name == "fixed" and not rest:
                    out["lag"] = None
                elif name == "on-policy" and not rest:
                    out["lag"] = 1
                elif name == "lag":
                    out["lag"] = int(rest)
                    if out["lag"] < 1:
                        raise ValueError
                elif name == "delay":
                    out["delay"] = int(rest)
                    if out["delay"] < 0:
                        raise ValueError
                elif name == "mix":
                    alpha, _, ref = rest.partition(":")
                    out["mix"], out["mix_ref"] = float(alpha), ref or "init"
                    if not 0.0 <= out["mix"] <= 1.0 or out["mix_ref"] not in ("init", "uniform"):
                        raise ValueError
                else:
                    raise ValueError
            except ValueError:
                raise ValueError(f"--behavior {text!r}: {EXPECTED}") from None
        if out["delay"] and out["lag"] is None:
            raise ValueError(f"--behavior {text!r}: delay:K needs lag:N (a fixed behaviour never refreshes)")
        return Behavior(**out)

    @property
    def is_fixed(self) -> bool:
        return self.lag is None

    def ref_logits(self, logits0: np.ndarray) -> np.ndarray:
        """The logits of π_ref, the policy mixed in: π₀'s (init) or the uniform policy's (zeros)."""
        return logits0 if self.mix_ref == "init" else np.zeros_like(logits0)

    def log_mu(self, snapshot, log_ref):
        """log μ = log((1 − α) softmax(snapshot) + α π_ref), in log space (torch; log_ref = log π_ref)."""
        import torch

        lp = torch.log_softmax(snapshot, -1)
        a = self.mix
        if a == 0.0:
            return lp
        if a == 1.0:
            return log_ref.expand_as(lp)
        return torch.logaddexp(lp + math.log1p(-a), log_ref + math.log(a))

    def refresh(self, state, t: int, logits0) -> None:
        """Before step t: keep the last `delay` + 1 policies (copies: the fast steps update the logits in place) and,
        every `lag` steps, set the snapshot μ is drawn from to π_t, or to π_{t−delay} (π₀ until t ≥ delay)."""
        if self.lag is None:
            return
        if self.delay:
            state.history.append(state.logits.clone())
            state.history = state.history[-(self.delay + 1):]
        if t % self.lag == 0:
            state.snapshot = state.history[0] if (self.delay and t >= self.delay) else (
                logits0 if self.delay else state.logits.clone())

    def theory_mu(self, mu0: np.ndarray) -> np.ndarray:
        """The fixed μ of the theorems, [C, K] from the bandit's π₀ = mu0: (1 − α) π₀ + α π_ref; None where the
        behaviour moves (lag:N), so no fixed-μ theorem applies."""
        if not self.is_fixed:
            return None
        ref = np.full_like(mu0, 1.0 / mu0.shape[-1]) if self.mix_ref == "uniform" else mu0
        return (1 - self.mix) * mu0 + self.mix * ref
