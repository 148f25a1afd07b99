"""Benchmarks of the dashboard service (run: python -m bench --help)."""
