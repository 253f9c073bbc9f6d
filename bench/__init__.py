"""Benchmarks of sagepilot: figures beside baselines measured in the same run (`make bench`).

Not part of the test suite (pytest collects tests/ only); see bench/README.md.
"""
