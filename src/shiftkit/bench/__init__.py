"""Benchmark scripts (run through `shiftkit bench ...`); results go to benchmarks/."""
