"""Benchmarks for `make bench` (not part of `make test`): `python -m tests.bench.run` writes BENCHMARKS.md.

Every benchmark is a function returning a plain dict of figures (and the command that produced them); the
runner (`tests.bench.run`) formats them as markdown. `tests/bench/test_smoke.py` runs each with tiny sizes.
"""
