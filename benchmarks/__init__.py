"""Benchmarks of elog-stream against baselines; run ``python -m benchmarks.harness --help``."""
