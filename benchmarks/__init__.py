"""Benchmarks: one script per measured claim (see docs/benchmarks.md).

Each script is runnable as ``python -m benchmarks.<name>`` and prints a
markdown table; ``docs/benchmarks.md`` records the final runs with their
command, date and machine.
"""
