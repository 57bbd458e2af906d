"""Peer systems the benchmarks compare against, run with the same harness."""
