"""Benchmarks: speed against the reference implementations (:mod:`.speed`, ``tools/benchmark.py``)
and the toy learning check (:mod:`.learning_check`, ``tools/benchmark_toy.py``)."""
