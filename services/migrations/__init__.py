"""Alembic migrations (raw SQL revisions in ``versions/``) and ``migrate()``.

``services.migrations.runner.migrate(settings)`` is what ``enterprisehub
migrate`` runs: upgrade to head as the owner and create/update the
application role. ``env.py`` is Alembic's environment, not a module to import.
"""
