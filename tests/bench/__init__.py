"""Benchmarks: run by hand (`python -m tests.bench.bench_sync`), never collected by pytest."""
