"""The bandit science: bandit problems, behaviour policies, the theory and the simulator."""
