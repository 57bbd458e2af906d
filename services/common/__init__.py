"""Shared core of the feature services.

Modules are small and named for what they hold: ``settings`` (environment),
``database`` (the only Postgres entry point), ``redis`` (the only Redis entry
point), ``tenancy`` (tenant id rules), ``auth`` (JWT), ``metrics``, ``health``,
``errors`` (JSON error bodies), ``flags``, ``deps`` (FastAPI dependencies) and
``app`` (``create_app``). Nothing here imports a feature service.
"""
