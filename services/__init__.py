"""EnterpriseHub Phase 3 feature services.

``services.common`` holds what every service shares (settings, Postgres, Redis,
auth, metrics, health, flags); each feature service lives in its own package
(``services.realtime``, ``services.ml``, ...) and imports only ``common``.
"""
