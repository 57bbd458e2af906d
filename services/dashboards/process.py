"""What ``enterprisehub serve dashboards`` starts once, before Streamlit runs.

The services read their token revocations and serve ``/metrics`` from their
lifespan. Streamlit has no such place the script can reach: ``app.py`` runs in
each session's thread and sees nothing of the ASGI app (not ``st.App``'s
state), and its cached resources are built only when a first browser opens a
page. A replica nobody had visited read no revocation list, so its
``auth_revocations_age_seconds`` grew from its start and ``TokenRevocationsStale``
fired for an idle replica, or, with no metrics at all, for none.

So ``serve`` calls :func:`start` before uvicorn: one event loop and pool (the
`AsyncRunner` every session then shares), the revocation list read and kept
current on it, and the metrics listener with its registry. This module is the
hand-off to the script (:func:`started`), which holds at most one of each per
process. Under ``AppTest`` nothing is started and the script builds its own,
as it always did.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from services.common.metrics import new_registry
from services.common.revocation import Revocations
from services.common.settings import SettingsError
from services.dashboards.config import DashboardSettings
from services.dashboards.context import AsyncRunner
from services.dashboards.metrics import register_dashboards_metrics, serve_metrics


def fingerprint(settings: DashboardSettings) -> str:
    """A digest of what the shared resources are built from (never shown or logged)."""
    secrets = [settings.database_url, settings.jwt_secret_key, *settings.jwt_previous_keys.values()]
    parts = [
        str(settings.auth_revocation_refresh_seconds),
        settings.jwt_key_id,
        *settings.jwt_previous_keys,
        *(s.get_secret_value() for s in secrets),
    ]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


@dataclass(frozen=True)
class Started:
    """The process's shared resources, and the settings they were built from."""

    fingerprint: str
    runner: AsyncRunner
    revocations: Revocations


# The one hand-off the script can see (module state is per process, as the
# resources are); set once by ``start``.
_started: Started | None = None


class AlreadyStarted(RuntimeError):  # noqa: N818 - reads as the condition it names
    """`start` ran twice in one process (a second registry, loop and listener)."""


def start(settings: DashboardSettings, *, host: str, app_port: int) -> Started:
    """Read the revocations, keep them current, and serve the metrics on ``host``.

    Raises ``SettingsError`` when the metrics port is the app's, and ``OSError``
    when it cannot be bound; either way before uvicorn starts.
    """
    global _started
    if _started is not None:
        raise AlreadyStarted("the dashboards' process resources are started already")
    port = settings.dashboards_metrics_port
    if port == app_port:
        raise SettingsError(
            [f"DASHBOARDS_METRICS_PORT: {port} is the app's port (its metrics would be public)"]
        )
    registry = new_registry()
    revocations = Revocations()
    register_dashboards_metrics(registry, revocations)
    # Bound first: a taken port fails the start at once, not after the read.
    serve_metrics(registry, host=host, port=port)
    runner = AsyncRunner(settings)
    # Bounded (revocation_store.READ_TIMEOUT_SECONDS); a failed read leaves the
    # list empty and the age growing, as in a service, until a refresh succeeds.
    runner.keep_revocations_current(revocations)
    _started = Started(fingerprint(settings), runner, revocations)
    return _started


def owns(runner: AsyncRunner) -> bool:
    """Whether ``runner`` is the process's own, which lives as long as the process."""
    return _started is not None and _started.runner is runner


def started(settings_fingerprint: str) -> Started | None:
    """The started resources if they were built from settings of this fingerprint."""
    if _started is None or _started.fingerprint != settings_fingerprint:
        return None
    return _started
