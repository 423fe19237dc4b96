"""banditlab: controlled experiments on off-policy REINFORCE (AsymRE, TOPR, REC) with bandits and LLMs."""

__version__ = "0.1.0"
