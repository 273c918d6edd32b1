"""Benchmarks: `make bench` runs them all and prints one table (measure, baseline, capsule,
ratio, target). Every baseline is measured in the same run, on the same generated data."""
