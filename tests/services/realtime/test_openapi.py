"""The webhooks are documented: request schemas complete, answers listed."""

from __future__ import annotations

import json
from typing import Any

from services.realtime.config import RealtimeSettings
from services.realtime.main import create_app


def _operation(schema: dict[str, Any], path: str) -> dict[str, Any]:
    operation: dict[str, Any] = schema["paths"][path]["post"]
    return operation


def test_both_webhooks_document_their_bodies_and_answers(
    realtime_settings: RealtimeSettings,
) -> None:
    schema = create_app(realtime_settings).openapi()
    single = _operation(schema, "/v1/leads/events")
    batch = _operation(schema, "/v1/leads/events/batch")
    for operation in (single, batch):
        assert {"202", "401", "413", "422", "503"} <= set(operation["responses"])
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        # Inlined: a "#/$defs/..." reference would not resolve inside OpenAPI.
        assert "$defs" not in json.dumps(body)
    batch_body = batch["requestBody"]["content"]["application/json"]["schema"]
    event = batch_body["properties"]["events"]["items"]
    assert {"lead_id", "event_type", "lead"} <= set(event["required"])
    assert event["additionalProperties"] is False


def test_the_bearer_scheme_is_declared_and_every_api_route_uses_it(
    realtime_settings: RealtimeSettings,
) -> None:
    schema = create_app(realtime_settings).openapi()
    scheme = schema["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"], scheme["bearerFormat"]) == ("http", "bearer", "JWT")
    for path in ("/v1/leads/events", "/v1/leads/events/batch"):
        operation = _operation(schema, path)
        assert operation["security"] == [{"bearerAuth": []}]
        assert "403" in operation["responses"]
        names = {p["name"] for p in operation.get("parameters", [])}
        assert "Idempotency-Key" in names


def test_the_feed_is_described_in_the_openapi_document(
    realtime_settings: RealtimeSettings,
) -> None:
    schema = create_app(realtime_settings).openapi()
    feed = schema["paths"]["/v1/feed"]["get"]
    description = feed["description"]
    for needle in ("WebSocket", "feed:read", "last_event_id", "lead_event", "1008", "1013"):
        assert needle in description
    assert "426" in feed["responses"]


async def test_a_plain_get_of_the_feed_says_how_to_connect(
    realtime_settings: RealtimeSettings, app_client: Any
) -> None:
    async with app_client(create_app(realtime_settings)) as client:
        response = await client.get("/v1/feed")
    assert response.status_code == 426
    assert response.json()["reason"] == "upgrade_required"
