"""Benchmarks of the musdpay stack; results go to docs/benchmarks.md (see each script's docstring)."""
