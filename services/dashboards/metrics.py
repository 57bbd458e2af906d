"""The dashboards' Prometheus metrics, served on a port of their own.

The public Gateway sends every path of the dashboards' hostnames to the app's
port, so a ``/metrics`` there would be public (``serve.JsonErrors`` refuses
Streamlit's own ``/_stcore/metrics`` for the same reason). The series are
served on ``DASHBOARDS_METRICS_PORT`` instead, which the Service exposes to
Prometheus alone (the network policy admits nothing else there, the HTTPRoute
names the app's port).

What a scrape shows: ``up`` (the scrape itself: ``DashboardsDown``),
``auth_revocations_age_seconds`` of the process's revocation list
(``TokenRevocationsStale``), ``dashboards_sessions_active`` and
``enterprisehub_build_info``.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, start_http_server

from services.common.metrics import MetricFactory, build_info
from services.common.revocation import Revocations
from services.common.revocation_store import register_revocation_metrics
from services.common.version import package_version


def open_sessions() -> int:
    """Streamlit's own count of open sessions; 0 before its runtime has started.

    Read through the runtime's public stats (the ``active_sessions`` family its
    ``/_stcore/metrics`` served), not its session manager's private attributes.
    """
    from streamlit import runtime
    from streamlit.runtime.stats import ACTIVE_SESSIONS_FAMILY

    if not runtime.exists():
        return 0
    stats = runtime.get_instance().stats_mgr.get_stats([ACTIVE_SESSIONS_FAMILY])
    return sum(int(getattr(stat, "value", 0)) for stat in stats.get(ACTIVE_SESSIONS_FAMILY, ()))


def register_dashboards_metrics(
    registry: CollectorRegistry,
    revocations: Revocations,
    *,
    sessions: Callable[[], float] = open_sessions,
) -> None:
    """The dashboards' series on ``registry``, each computed at scrape time."""
    register_revocation_metrics(registry, revocations)
    MetricFactory(registry).gauge("dashboards_sessions_active").set_function(sessions)
    build_info(registry, service="dashboards", version=package_version())


def serve_metrics(registry: CollectorRegistry, *, host: str, port: int) -> None:
    """Serve ``registry`` at ``http://host:port/metrics`` for the life of the process.

    prometheus_client's own server, on daemon threads, rather than a second
    uvicorn: it needs no event loop (uvicorn's belongs to Streamlit), ends with
    the process (nothing to stop, no socket left behind), and a scrape never
    waits behind a page's work on the app's loop. Raises ``OSError`` naming the
    address when the port cannot be bound.
    """
    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise OSError(
            exc.errno, f"cannot serve /metrics on {host}:{port} ({exc.strerror or exc})"
        ) from None
