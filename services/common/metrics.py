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

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from fastapi.routing import iter_route_contexts
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_asgi_app
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common.paths import is_routable
from services.common.series import CATALOG_FILE, Kind, Series, series_catalog

UNMATCHED_ROUTE = "unmatched"


def new_registry() -> CollectorRegistry:
    """A fresh registry without the process/platform collectors' global state."""
    return CollectorRegistry(auto_describe=True)


def _export_at_zero(
    metric: Counter | Gauge | Histogram, labelnames: tuple[str, ...], labelvalues: Iterable[str]
) -> None:
    values = tuple(labelvalues)
    if values and len(labelnames) != 1:
        raise ValueError(f"labelvalues needs exactly one label name, got {labelnames}")
    for value in values:
        metric.labels(value)


class MetricFactory:
    """Registers series of the catalog on one registry: ``MetricFactory(registry).counter(name)``.

    The series catalog (``services/common/series.yaml``) declares each series'
    type, help, labels and buckets; code names the series and gets the rest.
    A name the catalog does not hold, or holds as another type, is a
    ``ValueError`` when the metrics class is built (every one is, in the tests).
    The registry is bound once, as client_golang's ``promauto.With(registry)``.

    ``labelvalues`` (a series with one label) lists the values the
    label takes, and exports each at 0 from the start: a labelled series
    otherwise appears only when first counted, and until then a rate, a ratio
    or an alert over it has nothing to read. The values are code's (the
    features, the failure reasons), so they are given here, not in the catalog.
    """

    def __init__(
        self, registry: CollectorRegistry, catalog: Mapping[str, Series] | None = None
    ) -> None:
        self.registry = registry
        self.catalog = catalog if catalog is not None else series_catalog()

    def series(self, name: str, kind: Kind) -> Series:
        """The catalog's declaration of ``name``, which must be a ``kind``."""
        declared = self.catalog.get(name)
        if declared is None:
            raise ValueError(
                f"{name!r} is not in the series catalog: declare it in {CATALOG_FILE.name}"
            )
        if declared.type != kind:
            raise ValueError(f"{name!r} is a {declared.type} in the series catalog, not a {kind}")
        return declared

    def counter(self, name: str, *, labelvalues: Iterable[str] = ()) -> Counter:
        """The counter ``name`` (ending in ``_total``, as the catalog and queries spell it)."""
        series = self.series(name, "counter")
        metric = Counter(series.registered_name, series.help, series.labels, registry=self.registry)
        _export_at_zero(metric, series.labels, labelvalues)
        return metric

    def gauge(self, name: str, *, labelvalues: Iterable[str] = ()) -> Gauge:
        """The gauge ``name``."""
        series = self.series(name, "gauge")
        metric = Gauge(series.name, series.help, series.labels, registry=self.registry)
        _export_at_zero(metric, series.labels, labelvalues)
        return metric

    def histogram(self, name: str, *, labelvalues: Iterable[str] = ()) -> Histogram:
        """The histogram ``name``, with the catalog's bucket bounds."""
        series = self.series(name, "histogram")
        metric = Histogram(
            series.name, series.help, series.labels, registry=self.registry, buckets=series.buckets
        )
        _export_at_zero(metric, series.labels, labelvalues)
        return metric


#: Where an authenticated request leaves its tenant for the metrics middleware
#: (``scope["state"]``, i.e. ``request.state``): set by ``require_principal``.
TENANT_STATE_KEY = "tenant_id"
#: Where ``read_body`` leaves the seconds it waited for the client to send the
#: body: a request's duration leaves them out. A photo upload over a slow uplink
#: is the client's time, and counted it would let a few such agents raise the
#: vision p95 past its rollback trigger for every tenant.
BODY_WAIT_STATE_KEY = "body_wait_seconds"


#: The methods of RFC 9110 and PATCH, which label requests as they came; any
#: other token a client puts in its request line is ``_OTHER`` (OpenTelemetry's
#: ``http.request.method`` convention), so that no client mints label values
#: (httptools parses 35 or so methods, WebDAV's among them; h11 takes any token).
KNOWN_METHODS: Final = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE"}
)
OTHER_METHOD: Final = "_OTHER"


def method_label(method: str) -> str:
    """``method`` if it is a known one, else ``_OTHER``."""
    return method if method in KNOWN_METHODS else OTHER_METHOD


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
        self.requests = factory.counter("http_requests_total")
        self.duration = factory.histogram("http_request_duration_seconds")
        self.tenant_requests = factory.counter("http_tenant_requests_total")

        # (method, route, status) -> the two label children. ``labels()`` takes
        # a lock and builds a key on every call; the label values are bounded
        # (known methods, route templates rather than paths), so the cache is too.
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
    gauge = MetricFactory(registry).gauge("enterprisehub_build_info")
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
    if not is_routable(path):
        return UNMATCHED_ROUTE
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
            state = scope.get("state", {})
            waited = state.get(BODY_WAIT_STATE_KEY, 0.0)
            self.metrics.observe(
                method=method_label(scope["method"]),
                route=_route_template(scope, self.routes),
                status=status,
                seconds=max(0.0, time.perf_counter() - started - waited),
            )
            tenant = state.get(TENANT_STATE_KEY)
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
