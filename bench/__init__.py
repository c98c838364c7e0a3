"""Benchmarks: `make bench` (python -m bench) writes bench/results/core.json and prints it."""
