"""Prometheus metrics: explicit registries, base units, ``_total`` counters.

Every metric is registered into a ``CollectorRegistry`` passed in, so each app
(and each test) has its own and nothing leaks through the global registry: a
metrics class binds it once in a ``MetricFactory`` and declares its series there.
``create_app`` installs ``HttpMetricsMiddleware`` and serves
``GET /metrics``; services create their own metrics on ``app.state.registry``.

HTTP series are labelled with the route template (``/v1/leads/{lead_id}``),
never the raw path, so label cardinality stays bounded; requests that match no
route share the label ``unmatched``. A request answered before it reached the
router (the edge guard's 401 and 413, an injected fault) is labelled with the
route it was for: the alert rules count the API's routes only, and would not
see those answers otherwise.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from typing import Any

from fastapi.routing import iter_route_contexts
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_asgi_app
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def bucket_series(low: float, high: float) -> tuple[float, ...]:
    """The 1-2.5-5 bucket bounds from ``low`` to ``high`` inclusive (both in that series).

    ``bucket_series(0.001, 10)`` is (0.001, 0.0025, 0.005, 0.01, ..., 5.0, 10.0):
    three buckets a decade, fine enough for quantile estimates within 2.5x.
    """
    bounds: list[float] = []
    exponent = math.floor(math.log10(low))
    while True:
        for mantissa in (1.0, 2.5, 5.0):
            bound = round(mantissa * 10.0**exponent, 12)
            if bound > high * (1 + 1e-9):
                return tuple(bounds)
            if bound >= low * (1 - 1e-9):
                bounds.append(bound)
        exponent += 1


# Buckets for latencies measured in milliseconds or less (WebSocket delivery,
# model inference): the client's defaults start at 5 ms, too coarse there.
FAST_LATENCY_BUCKETS: tuple[float, ...] = bucket_series(0.0001, 2.5)
# The seed's targets and rollback thresholds (vision 1.5 s and 3 s, coaching 2 s)
# are bucket bounds too, so quantile alerts do not interpolate across them.
HTTP_LATENCY_BUCKETS: tuple[float, ...] = tuple(
    sorted({*bucket_series(0.001, 10.0), 1.5, 2.0, 3.0})
)
UNMATCHED_ROUTE = "unmatched"


def new_registry() -> CollectorRegistry:
    """A fresh registry without the process/platform collectors' global state."""
    return CollectorRegistry(auto_describe=True)


def latency_histogram(
    name: str,
    documentation: str,
    *,
    registry: CollectorRegistry,
    labelnames: tuple[str, ...] = (),
    buckets: tuple[float, ...] = FAST_LATENCY_BUCKETS,
) -> Histogram:
    """A latency histogram; ``name`` must end in ``_seconds`` (base unit)."""
    if not name.endswith("_seconds"):
        raise ValueError(f"latency metric {name!r} must be in seconds and end with _seconds")
    return Histogram(name, documentation, labelnames, registry=registry, buckets=buckets)


def counter(
    name: str, documentation: str, *, registry: CollectorRegistry, labelnames: tuple[str, ...] = ()
) -> Counter:
    """A counter; pass the name without ``_total`` (the client appends it)."""
    if name.endswith("_total"):
        raise ValueError(f"pass {name.removesuffix('_total')!r}: the client appends _total")
    return Counter(name, documentation, labelnames, registry=registry)


def _export_at_zero(
    metric: Counter | Gauge, labelnames: tuple[str, ...], labelvalues: Iterable[str]
) -> None:
    values = tuple(labelvalues)
    if values and len(labelnames) != 1:
        raise ValueError(f"labelvalues needs exactly one label name, got {labelnames}")
    for value in values:
        metric.labels(value)


class MetricFactory:
    """Declares metrics on one registry, bound once: ``MetricFactory(registry).counter(...)``.

    A metrics class declares a dozen series on the same registry; binding it
    here (as client_golang's ``promauto.With(registry)`` does) spares each
    declaration its ``registry=registry`` and gives every kind of series one
    call shape. Counters and latency histograms keep the checks of ``counter``
    and ``latency_histogram``.

    ``labelvalues`` (counters and gauges with one label) lists the values the
    label takes, and exports each at 0 from the start: a labelled series
    otherwise appears only when first counted, and until then a rate, a ratio
    or an alert over it has nothing to read.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def counter(
        self,
        name: str,
        documentation: str,
        *,
        labelnames: tuple[str, ...] = (),
        labelvalues: Iterable[str] = (),
    ) -> Counter:
        """A counter; pass the name without ``_total`` (the client appends it)."""
        metric = counter(name, documentation, registry=self.registry, labelnames=labelnames)
        _export_at_zero(metric, labelnames, labelvalues)
        return metric

    def gauge(
        self,
        name: str,
        documentation: str,
        *,
        labelnames: tuple[str, ...] = (),
        labelvalues: Iterable[str] = (),
    ) -> Gauge:
        """A gauge."""
        metric = Gauge(name, documentation, labelnames, registry=self.registry)
        _export_at_zero(metric, labelnames, labelvalues)
        return metric

    def latency_histogram(
        self,
        name: str,
        documentation: str,
        *,
        labelnames: tuple[str, ...] = (),
        buckets: tuple[float, ...] = FAST_LATENCY_BUCKETS,
    ) -> Histogram:
        """A latency histogram; ``name`` must end in ``_seconds`` (base unit)."""
        return latency_histogram(
            name, documentation, registry=self.registry, labelnames=labelnames, buckets=buckets
        )

    def histogram(
        self,
        name: str,
        documentation: str,
        *,
        buckets: tuple[float, ...],
        labelnames: tuple[str, ...] = (),
    ) -> Histogram:
        """A histogram of a size or count; ``buckets`` are required because the
        client's defaults are latencies in seconds."""
        return Histogram(name, documentation, labelnames, registry=self.registry, buckets=buckets)


#: Where an authenticated request leaves its tenant for the metrics middleware
#: (``scope["state"]``, i.e. ``request.state``): set by ``require_principal``.
TENANT_STATE_KEY = "tenant_id"


def status_class(status: int) -> str:
    """``503`` -> ``5xx``."""
    return f"{status // 100}xx"


class HttpMetrics:
    """``http_requests_total`` and ``http_request_duration_seconds`` for one app,
    and ``http_tenant_requests_total{tenant, status_class}`` for the per-tenant view.

    The tenant series carry no route and only the status class: their number is
    tenants x 5 per service, bounded by the tenant count (a tenant id is
    validated, ``services.common.tenancy``, before it can become a label, and
    only authenticated requests carry one).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        factory = MetricFactory(registry)
        self.requests = factory.counter(
            "http_requests",
            "HTTP requests answered, by method, route template and status code.",
            labelnames=("method", "route", "status"),
        )
        self.duration = factory.latency_histogram(
            "http_request_duration_seconds",
            "Time from request received to response finished, by route template.",
            labelnames=("method", "route"),
            buckets=HTTP_LATENCY_BUCKETS,
        )
        self.tenant_requests = factory.counter(
            "http_tenant_requests",
            "Authenticated HTTP requests answered, by tenant and status class (2xx, 4xx, 5xx).",
            labelnames=("tenant", "status_class"),
        )

        # (method, route, status) -> the two label children. ``labels()`` takes
        # a lock and builds a key on every call; the label values are bounded
        # (route templates, not paths), so the cache is too.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, *, method: str, route: str, status: int, seconds: float) -> None:
        """Record one finished request."""
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = (
                self.requests.labels(method, route, str(status)),
                self.duration.labels(method, route),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def observe_tenant(self, *, tenant: str, status: int) -> None:
        """Count one authenticated request of ``tenant``."""
        self.tenant_requests.labels(tenant, status_class(status)).inc()


def build_info(registry: CollectorRegistry, *, service: str, version: str) -> Gauge:
    """``enterprisehub_build_info{service,version} 1``, the usual build gauge."""
    gauge = MetricFactory(registry).gauge(
        "enterprisehub_build_info",
        "Always 1; labels carry the service name and version.",
        labelnames=("service", "version"),
    )
    gauge.labels(service, version).set(1)
    return gauge


def _route_template(scope: Scope, routes: Sequence[BaseRoute]) -> str:
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str) and path:
        return path
    # A plain Starlette Route (``/metrics``) records no ``route`` in the scope,
    # only its endpoint: without this, every scrape counted as "unmatched".
    endpoint = scope.get("endpoint")
    if isinstance(endpoint, _AsgiEndpoint):
        return endpoint.path
    # Never routed: match it here (only such requests pay for it). FastAPI
    # includes routers lazily; its route contexts are the routes as served.
    path, method = scope["path"], scope["method"]
    for context in iter_route_contexts(routes):
        regex = getattr(context, "path_regex", None)
        methods = context.methods
        if regex is not None and regex.match(path) and (not methods or method in methods):
            return context.path or UNMATCHED_ROUTE
    return UNMATCHED_ROUTE


class HttpMetricsMiddleware:
    """Pure ASGI middleware (no body buffering) recording ``HttpMetrics``."""

    def __init__(
        self, app: ASGIApp, *, metrics: HttpMetrics, routes: Sequence[BaseRoute] = ()
    ) -> None:
        """``routes``: the app's (``app.router.routes``, the live list), to label
        requests answered before routing."""
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            # The router stores the matched route in the scope it was given,
            # which is this same dict, so the template is known afterwards.
            self.metrics.observe(
                method=scope["method"],
                route=_route_template(scope, self.routes),
                status=status,
                seconds=time.perf_counter() - started,
            )
            tenant = scope.get("state", {}).get(TENANT_STATE_KEY)
            if isinstance(tenant, str):
                self.metrics.observe_tenant(tenant=tenant, status=status)


class _AsgiEndpoint:
    """Wraps an ASGI callable so Starlette's ``Route`` treats it as an app; ``path``
    is the route's, for the metrics' ``route`` label."""

    def __init__(self, app: ASGIApp, path: str) -> None:
        self.app = app
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


def metrics_route(registry: CollectorRegistry, path: str = "/metrics") -> Route:
    """A ``GET /metrics`` route serving ``make_asgi_app(registry)``.

    A plain route rather than ``mount`` so that ``/metrics`` answers directly
    instead of redirecting to ``/metrics/``.
    """
    return Route(path, _AsgiEndpoint(make_asgi_app(registry), path), methods=["GET"])
