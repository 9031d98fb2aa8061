"""Benchmarks: `python -m bench [name ...]` runs bench/<name>.py's `run()`; each prints its figures."""
