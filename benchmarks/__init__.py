"""Benchmarks of diffcholinv against its peers: ``python -m benchmarks --help``."""
