"""Performance benchmarks: each prints ratios against a baseline measured in the same run.

Run with `make bench`. Not part of `make test`: timings never go into tests.
"""
