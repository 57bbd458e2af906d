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
