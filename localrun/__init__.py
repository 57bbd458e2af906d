"""Run the platform's backing servers on this machine, from local binaries.

``localrun.servers`` starts PostgreSQL 15, Redis and Prometheus on loopback;
``python -m localrun`` (``make run``) builds the whole local platform on it.
"""
