"""Reproducible benchmarks of the environment and the agents; each writes to ``benchmarks/results/``."""
