"""Benchmarks: they print numbers; tests assert behaviour."""
