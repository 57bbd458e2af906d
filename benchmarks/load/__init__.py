"""Load-generating processes for the benchmarks.

They run as separate processes (``python -m benchmarks.load.<module>``) so
that the orchestrator can pin them to a different core than the servers under
test with ``taskset``, and so that their CPU time is accounted apart.
"""
