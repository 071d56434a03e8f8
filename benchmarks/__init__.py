"""Benchmarks: scripts that print numbers and ratios side by side from one run (never timed unit tests)."""
