"""Benchmarks: each measures in one run and writes JSON rows (`edgetune bench <name> --out`)."""
