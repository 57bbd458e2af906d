"""Prometheus exposition: conventional names, route templates, base units."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from prometheus_client import generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from services.common.body import read_body
from services.common.metrics import HttpMetrics, HttpMetricsMiddleware, MetricFactory, new_registry
from services.common.series import parse_catalog

AppClient = Callable[[FastAPI], Any]


async def scrape_after(
    build_app: Any, app_client: AppClient, path: str, headers: dict[str, str] | None = None
) -> str:
    async with app_client(build_app()) as client:
        await client.post(path, headers=headers or {})
        response = await client.get("/metrics")
    assert response.status_code == 200
    text: str = response.text
    return text


async def test_requests_are_counted_by_route_template(
    build_app: Any, app_client: AppClient, make_token: Callable[..., str]
) -> None:
    auth = {"Authorization": f"Bearer {make_token('tenant-a')}"}
    text = await scrape_after(build_app, app_client, "/v1/test-events/lead-42/seen", auth)
    assert (
        'http_requests_total{method="POST",route="/v1/test-events/{lead_id}/seen",status="200"} 1.0'
        in text
    )


async def test_raw_paths_never_become_labels(
    build_app: Any, app_client: AppClient, make_token: Callable[..., str]
) -> None:
    auth = {"Authorization": f"Bearer {make_token('tenant-a')}"}
    text = await scrape_after(build_app, app_client, "/v1/test-events/lead-42/seen", auth)
    assert "lead-42" not in text


async def test_duration_histogram_is_in_seconds(build_app: Any, app_client: AppClient) -> None:
    text = await scrape_after(build_app, app_client, "/v1/test-events/x/seen")
    assert 'http_request_duration_seconds_bucket{le="0.005",method="POST"' in text


async def test_unknown_paths_share_one_label(build_app: Any, app_client: AppClient) -> None:
    text = await scrape_after(build_app, app_client, "/no/such/path/123")
    assert 'route="unmatched",status="404"' in text


async def test_made_up_methods_share_one_label(build_app: Any, app_client: AppClient) -> None:
    """The method label was the request line's, unauthenticated: each made-up method
    a client sent added a counter and a histogram's buckets to the service's memory
    and to Prometheus, without bound."""
    async with app_client(build_app()) as client:
        for index in range(20):
            await client.request(f"X{index}", "/v1/test-events/x/seen")
        await client.request("get", "/v1/test-events/x/seen")  # methods are case-sensitive
        await client.head("/health")
        text = (await client.get("/metrics")).text
    methods = {
        line.split('method="')[1].split('"')[0]
        for line in text.splitlines()
        if line.startswith("http_requests_total{")
    }
    assert methods == {"_OTHER", "HEAD", "GET"}


async def test_answers_given_before_routing_are_counted_under_their_route(
    build_app: Any, app_client: AppClient, tmp_path: Path
) -> None:
    """The edge guard's refusals and injected faults answer before the router;
    the alert rules count the API's routes only, so as "unmatched" they were
    invisible (the closed loop's injected errors never fired an alert)."""
    fault = tmp_path / "fault.json"
    fault.write_text('{"route_prefix": "/v1/test-events/", "error_rate": 1.0}')
    async with app_client(build_app(fault_injection_file=fault)) as client:
        assert (await client.post("/v1/test-events/a/seen")).status_code == 500
        fault.unlink()
        refused = await client.post("/v1/test-events/b/seen", content=b"{}")
        assert refused.status_code == 401
        text = (await client.get("/metrics")).text
    template = 'http_requests_total{method="POST",route="/v1/test-events/{lead_id}/seen"'
    assert f'{template},status="500"}} 1.0' in text
    assert f'{template},status="401"}} 1.0' in text
    assert 'route="unmatched"' not in text


async def test_scrapes_are_counted_under_their_own_route(
    build_app: Any, app_client: AppClient
) -> None:
    """Prometheus's scrapes are not lumped with unknown paths (a 200 "unmatched")."""
    async with app_client(build_app()) as client:
        await client.get("/metrics")
        text = (await client.get("/metrics")).text
    assert 'http_requests_total{method="GET",route="/metrics",status="200"} 1.0' in text
    assert 'route="unmatched"' not in text


async def test_build_info_names_the_service(build_app: Any, app_client: AppClient) -> None:
    text = await scrape_after(build_app, app_client, "/health")
    assert 'enterprisehub_build_info{service="common"' in text


#: A small catalog of one series of each kind, for the factory's own tests.
CATALOG = parse_catalog(
    {
        "buckets": {"sizes": [1, 2, 4]},
        "series": {
            "jobs_total": {"type": "counter", "help": "Jobs."},
            "posts_total": {"type": "counter", "help": "Posts.", "labels": ["outcome"]},
            "moves_total": {"type": "counter", "help": "Moves.", "labels": ["a", "b"]},
            "queue_depth": {"type": "gauge", "help": "Depth."},
            "unsent": {"type": "gauge", "help": "Unsent.", "labels": ["state"]},
            "batch_leads": {"type": "histogram", "help": "Batch size.", "buckets": "sizes"},
        },
    }
)


def test_factory_registers_every_kind_as_the_catalog_declares_it() -> None:
    registry = new_registry()
    factory = MetricFactory(registry, CATALOG)
    factory.counter("jobs_total")
    factory.gauge("queue_depth")
    factory.histogram("batch_leads")
    text = generate_latest(registry).decode()
    for line in (
        "# HELP jobs_total Jobs.",
        "jobs_total 0.0",
        "queue_depth 0.0",
        'batch_leads_bucket{le="4.0"} 0.0',
        "batch_leads_count 0.0",
    ):
        assert line in text


def test_factory_refuses_a_series_the_catalog_does_not_declare() -> None:
    factory = MetricFactory(new_registry(), CATALOG)
    with pytest.raises(
        ValueError, match=r"'jobs' is not in the series catalog: declare it in series.yaml"
    ):
        factory.counter("jobs")
    with pytest.raises(ValueError, match="is a counter in the series catalog, not a gauge"):
        factory.gauge("jobs_total")


def test_label_values_are_exported_at_zero_before_any_event() -> None:
    """A rate, ratio or alert over a labelled series reads nothing until the
    series exists; ``labelvalues`` creates each one at declaration."""
    registry = new_registry()
    factory = MetricFactory(registry, CATALOG)
    factory.counter("posts_total", labelvalues=("sent", "failed"))
    factory.gauge("unsent", labelvalues=("pending",))
    text = generate_latest(registry).decode()
    assert 'posts_total{outcome="sent"} 0.0' in text
    assert 'posts_total{outcome="failed"} 0.0' in text
    assert 'unsent{state="pending"} 0.0' in text


def test_label_values_need_exactly_one_label() -> None:
    factory = MetricFactory(new_registry(), CATALOG)
    with pytest.raises(ValueError, match="exactly one label"):
        factory.counter("moves_total", labelvalues=("x",))
    with pytest.raises(ValueError, match="exactly one label"):
        factory.gauge("queue_depth", labelvalues=("x",))


async def test_authenticated_requests_are_counted_per_tenant(
    build_app: Any, app_client: AppClient, make_token: Callable[..., str]
) -> None:
    auth = {"Authorization": f"Bearer {make_token('tenant-a')}"}
    text = await scrape_after(build_app, app_client, "/v1/test-events/lead-42/seen", auth)
    assert 'http_tenant_requests_total{status_class="2xx",tenant="tenant-a"} 1.0' in text


async def test_unauthenticated_requests_carry_no_tenant(
    build_app: Any, app_client: AppClient
) -> None:
    text = await scrape_after(build_app, app_client, "/v1/test-events/lead-42/seen")
    assert (
        'http_requests_total{method="POST",route="/v1/test-events/{lead_id}/seen",status="401"}'
        in text
    )
    assert "http_tenant_requests_total{" not in text


async def test_the_clients_sending_time_is_not_the_requests_duration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A photo over a slow uplink: the client takes 5 s to send the body's last
    # chunk, the service answers at once. The duration (what the latency alerts
    # and the vision rollback trigger read) is the service's time only.
    clock = [100.0]
    monkeypatch.setattr(time, "perf_counter", lambda: clock[0])
    registry = new_registry()

    async def upload(request: Request) -> Response:
        body = await read_body(request, limit=1_000, setting="TEST_LIMIT")
        clock[0] += 0.25  # the service's own work
        return PlainTextResponse(str(len(body)))

    app = Starlette(routes=[Route("/upload", upload, methods=["POST"])])
    middleware = HttpMetricsMiddleware(app, metrics=HttpMetrics(registry), routes=app.routes)
    messages = [
        {"type": "http.request", "body": b"a" * 10, "more_body": True},
        {"type": "http.request", "body": b"b" * 10, "more_body": False},
    ]

    async def receive() -> dict[str, Any]:
        message = messages.pop(0)
        if not message["more_body"]:
            clock[0] += 5.0
        return message

    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/upload",
        "raw_path": b"/upload",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"image/jpeg")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    await middleware(scope, receive, send)  # type: ignore[arg-type]
    assert sent[0]["status"] == 200
    [duration] = [
        float(line.rsplit(" ", 1)[1])
        for line in generate_latest(registry).decode().splitlines()
        if line.startswith('http_request_duration_seconds_sum{method="POST"')
    ]
    assert duration == pytest.approx(0.25)
