"""rollback-handler against real Postgres and Redis: once per incident, whatever the copies."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.common.database import Database
from services.common.flags import FEATURES, FlagState, get_flags, write_flag
from services.common.redis import Redis
from services.rollback.main import create_app
from tests.services.openapi_fuzz import fuzz_operations
from tests.services.rollback.conftest import WEBHOOK_TOKEN, SlackStandIn

URL = "/v1/alertmanager/webhook"
AUTH = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
STARTS = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)


def _alert(
    *,
    feature: str = "property_vision",
    status: str = "firing",
    action: str = "rollback",
    fingerprint: str = "a1b2c3d4e5f60718",
    starts: datetime = STARTS,
) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {
            "alertname": "VisionLatencyRollback",
            "action": action,
            "feature": feature,
            "severity": "critical",
        },
        "annotations": {"summary": "vision p95 above 3 s for 5 minutes"},
        "startsAt": starts.isoformat(),
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus/graph",
        "fingerprint": fingerprint,
    }


def _notification(*alerts: dict[str, Any], status: str = "firing") -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": '{}/{action="rollback"}:{alertname="VisionLatencyRollback"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "rollback-handler",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": list(alerts),
    }


async def _all_on(redis: Redis) -> None:
    for feature in FEATURES:
        await write_flag(redis, feature, FlagState(enabled=True, rollout_percentage=25))


async def _rows(owner_db: Database, table: str) -> list[dict[str, Any]]:
    async with owner_db.unscoped() as conn:
        return [dict(r) for r in await conn.fetch(f"SELECT * FROM {table}")]  # noqa: S608


@pytest.fixture
def app(rollback_env: dict[str, str]) -> Any:
    return create_app()


async def test_a_firing_trigger_turns_its_feature_off_once_with_audit_and_slack(
    app: Any, app_client: Any, redis_client: Redis, owner_db: Database, slack: SlackStandIn
) -> None:
    await _all_on(redis_client)
    body = _notification(_alert())
    async with app_client(app) as client:
        # Retries, repeats and a second HA peer: the same incident, concurrently.
        answers = await asyncio.gather(
            *(client.post(URL, json=body, headers=AUTH) for _ in range(6))
        )
    assert [a.status_code for a in answers] == [200] * 6
    flags = await get_flags(redis_client)
    assert flags["property_vision"] == FlagState(enabled=False, rollout_percentage=25)
    assert all(flags[f] and flags[f].enabled for f in FEATURES if f != "property_vision")
    audit = await _rows(owner_db, "flag_audit")
    assert [(r["feature_name"], r["to_enabled"], r["actor"]) for r in audit] == [
        ("property_vision", False, "alertmanager")
    ]
    incidents = await _rows(owner_db, "rollback_incidents")
    assert len(incidents) == 1
    assert incidents[0]["flags_changed"] == ["property_vision"]
    assert len(slack.messages) == 1
    assert "property_vision" in slack.messages[0]
    duplicates = [a.json()["handled"][0]["duplicate"] for a in answers]
    assert duplicates.count(False) == 1


async def _waiting_on_locks(owner_db: Database, count: int) -> None:
    """Until ``count`` backends wait for a lock (a generous deadline, not a timing check)."""
    async with asyncio.timeout(30):
        while True:
            async with owner_db.unscoped() as conn:
                waiting = await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE wait_event_type = 'Lock' AND datname = current_database()"
                )
            if waiting >= count:
                return
            await asyncio.sleep(0.05)


async def test_two_alerts_of_one_feature_at_once_turn_it_off_and_tell_slack_once(
    app: Any, app_client: Any, redis_client: Redis, owner_db: Database, slack: SlackStandIn
) -> None:
    # Two rollback rules of one feature (latency and errors) fire in the same
    # evaluation; Alertmanager sends them as two notifications at once. Each is
    # its own incident, but only one may turn the flag off, audit and tell Slack.
    await _all_on(redis_client)
    latency = _notification(_alert(fingerprint="1111111111111111"))
    errors = _notification(_alert(fingerprint="2222222222222222"))
    async with app_client(app) as client:
        async with owner_db.unscoped() as gate:
            # Both requests are held until this transaction ends: at the audit
            # insert, each having read the flag as on (without the lock), or
            # one there and the other waiting for the flag-change lock.
            await gate.execute("LOCK TABLE flag_audit IN SHARE ROW EXCLUSIVE MODE")
            answers = [
                asyncio.create_task(client.post(URL, json=body, headers=AUTH))
                for body in (latency, errors)
            ]
            await _waiting_on_locks(owner_db, 2)
        results = [(await answer).json()["handled"][0] for answer in answers]
    assert sorted(len(r["flags_turned_off"]) for r in results) == [0, 1]
    assert [r["duplicate"] for r in results] == [False, False]
    audit = await _rows(owner_db, "flag_audit")
    assert [(r["feature_name"], r["to_enabled"]) for r in audit] == [("property_vision", False)]
    assert len(slack.messages) == 1


async def test_a_new_incident_of_the_same_alert_is_handled_again(
    app: Any, app_client: Any, redis_client: Redis, owner_db: Database
) -> None:
    await _all_on(redis_client)
    async with app_client(app) as client:
        assert (
            await client.post(URL, json=_notification(_alert()), headers=AUTH)
        ).status_code == 200
        await write_flag(
            redis_client, "property_vision", FlagState(enabled=True, rollout_percentage=25)
        )
        later = _notification(_alert(starts=STARTS + timedelta(hours=2)))
        assert (await client.post(URL, json=later, headers=AUTH)).status_code == 200
    assert len(await _rows(owner_db, "rollback_incidents")) == 2
    assert not (await get_flags(redis_client))["property_vision"].enabled  # type: ignore[union-attr]


async def test_alertmanagers_nanosecond_timestamps_are_one_incident(
    app: Any, app_client: Any, redis_client: Redis, owner_db: Database
) -> None:
    # Alertmanager writes times as Go's RFC3339Nano (nine fractional digits);
    # a parser refusing them would make every notification a 422, never
    # retried: no rollback at all. Copies of the alert are one incident.
    await _all_on(redis_client)
    alert = _alert()
    alert["startsAt"] = "2026-12-03T15:00:00.404897853Z"
    async with app_client(app) as client:
        answers = [
            await client.post(URL, json=_notification(alert), headers=AUTH) for _ in range(2)
        ]
    assert [a.status_code for a in answers] == [200, 200], answers[0].text
    assert [a.json()["handled"][0]["duplicate"] for a in answers] == [False, True]
    [incident] = await _rows(owner_db, "rollback_incidents")
    assert incident["starts_at"] == datetime(2026, 12, 3, 15, 0, 0, 404897, tzinfo=UTC)
    assert not (await get_flags(redis_client))["property_vision"].enabled  # type: ignore[union-attr]


async def test_feature_all_turns_every_flag_off(
    app: Any, app_client: Any, redis_client: Redis
) -> None:
    await _all_on(redis_client)
    async with app_client(app) as client:
        answer = await client.post(URL, json=_notification(_alert(feature="all")), headers=AUTH)
    assert answer.status_code == 200
    assert sorted(answer.json()["handled"][0]["flags_turned_off"]) == sorted(FEATURES)
    assert not any(state and state.enabled for state in (await get_flags(redis_client)).values())


@pytest.mark.parametrize(
    "alert",
    [
        _alert(action="investigate"),  # business impact: alert only
        _alert(feature="vision"),  # not a feature
        {**_alert(), "labels": {"alertname": "X", "severity": "critical"}},  # no labels at all
    ],
    ids=["investigate", "unknown-feature", "unlabelled"],
)
async def test_alerts_that_are_not_rollback_triggers_change_nothing(
    app: Any,
    app_client: Any,
    redis_client: Redis,
    owner_db: Database,
    alert: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    await _all_on(redis_client)
    async with app_client(app) as client:
        answer = await client.post(URL, json=_notification(alert), headers=AUTH)
    assert answer.status_code == 200
    assert answer.json() == {"handled": []}
    assert all(s and s.enabled for s in (await get_flags(redis_client)).values())
    assert await _rows(owner_db, "rollback_incidents") == []
    # A trigger whose feature label is wrong is ignored, but not silently.
    warned = [r for r in caplog.records if "ignored a rollback trigger" in r.getMessage()]
    assert len(warned) == (1 if alert["labels"].get("action") == "rollback" else 0)


async def test_resolution_is_recorded_and_the_flag_stays_off(
    app: Any, app_client: Any, redis_client: Redis, owner_db: Database
) -> None:
    await _all_on(redis_client)
    async with app_client(app) as client:
        await client.post(URL, json=_notification(_alert()), headers=AUTH)
        resolved = _notification(_alert(status="resolved"), status="resolved")
        answer = await client.post(URL, json=resolved, headers=AUTH)
    assert answer.json()["handled"][0]["resolved"] is True
    (incident,) = await _rows(owner_db, "rollback_incidents")
    assert incident["resolved_at"] is not None
    assert not (await get_flags(redis_client))["property_vision"].enabled  # type: ignore[union-attr]


async def test_a_nul_in_alert_text_neither_refuses_the_trigger_nor_its_group(
    app: Any, app_client: Any, redis_client: Redis, owner_db: Database
) -> None:
    # Postgres refuses NUL in text: this was a 422 for the whole notification,
    # never retried by Alertmanager, and neither feature was turned off.
    await _all_on(redis_client)
    odd = _alert(feature="ai_coaching", fingerprint="0f0f0f0f0f0f0f0f")
    odd["labels"]["alertname"] = "Coaching\x00Latency"
    odd["annotations"]["summary"] = "p95\x00 above 4 s"
    async with app_client(app) as client:
        answer = await client.post(URL, json=_notification(odd, _alert()), headers=AUTH)
    assert answer.status_code == 200, answer.text
    assert [h["flags_turned_off"] for h in answer.json()["handled"]] == [
        ["ai_coaching"],
        ["property_vision"],
    ]
    flags = await get_flags(redis_client)
    assert not flags["ai_coaching"].enabled  # type: ignore[union-attr]
    assert not flags["property_vision"].enabled  # type: ignore[union-attr]
    stored = {r["feature_name"]: r for r in await _rows(owner_db, "rollback_incidents")}
    assert stored["ai_coaching"]["alertname"] == "Coaching\ufffdLatency"
    assert stored["ai_coaching"]["reason"] == "p95\ufffd above 4 s"


async def test_a_start_time_postgres_cannot_store_neither_refuses_the_trigger_nor_its_group(
    app: Any, app_client: Any, redis_client: Redis, owner_db: Database
) -> None:
    # An offset moving startsAt past year 1 or 9999 in UTC was a 422
    # (unstorable_input) for the whole notification, which Alertmanager does
    # not retry: no trigger of its group turned a flag off. 0001-01-01T00:00Z
    # was stored as -infinity. Anyone who may post alerts to Alertmanager
    # chooses startsAt.
    await _all_on(redis_client)
    odd_starts = {
        "ai_coaching": "0001-01-01T00:00:00+01:00",
        "churn_prevention": "9999-12-31T23:59:59-01:00",
        "realtime_intelligence": "0001-01-01T00:00:00Z",
    }
    odd = []
    for index, (feature, starts) in enumerate(odd_starts.items()):
        alert = _alert(feature=feature, fingerprint=f"{index:016x}")
        alert["startsAt"] = starts
        odd.append(alert)
    async with app_client(app) as client:
        answer = await client.post(URL, json=_notification(*odd, _alert()), headers=AUTH)
    assert answer.status_code == 200, answer.text
    assert [h["flags_turned_off"] for h in answer.json()["handled"]] == [
        [feature] for feature in [*odd_starts, "property_vision"]
    ]
    flags = await get_flags(redis_client)
    assert not any(flags[f].enabled for f in FEATURES)  # type: ignore[union-attr]
    stored = {
        r["feature_name"]: r["starts_at"] for r in await _rows(owner_db, "rollback_incidents")
    }
    assert stored["property_vision"] == STARTS
    received = datetime.now(UTC)
    for feature in odd_starts:
        # Recorded as the time it arrived: a finite instant, not what was sent.
        assert received - timedelta(minutes=1) < stored[feature] <= received, feature


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {WEBHOOK_TOKEN}"}],
    ids=["none", "wrong", "basic"],
)
async def test_the_token_is_checked_before_the_body(
    app: Any, app_client: Any, headers: dict[str, str]
) -> None:
    async with app_client(app) as client:
        # Not even valid JSON: without the token it must not be read at all.
        answer = await client.post(URL, content=b"{" * 10_000_000, headers=headers)
    assert answer.status_code == 401
    assert answer.json()["reason"] in {"missing_token", "malformed_token", "unauthenticated"}


async def test_oversized_bodies_are_refused_declared_or_chunked(app: Any, app_client: Any) -> None:
    async def chunks() -> Any:
        for _ in range(40):
            yield b" " * 65_536

    async with app_client(app) as client:
        declared = await client.post(URL, content=b" " * 2_000_000, headers=AUTH)
        chunked = await client.post(URL, content=chunks(), headers=AUTH)
    assert (declared.status_code, declared.json()["reason"]) == (413, "body_too_large")
    assert (chunked.status_code, chunked.json()["reason"]) == (413, "body_too_large")


@pytest.mark.parametrize(
    "body",
    [b"not json", b"{}", json.dumps({**_notification(_alert()), "version": "3"}).encode()],
    ids=["not-json", "empty-object", "wrong-version"],
)
async def test_malformed_notifications_are_422_with_a_reason(
    app: Any, app_client: Any, body: bytes
) -> None:
    async with app_client(app) as client:
        answer = await client.post(URL, content=body, headers=AUTH)
    assert answer.status_code == 422
    assert answer.json()["reason"] == "validation_error"


async def test_health_lists_the_latest_incidents(
    app: Any, app_client: Any, redis_client: Redis
) -> None:
    await _all_on(redis_client)
    async with app_client(app) as client:
        await client.post(URL, json=_notification(_alert()), headers=AUTH)
        health = await client.get("/health/rollback")
    assert health.status_code == 200
    (latest,) = health.json()["latest_incidents"]
    assert latest["feature"] == "property_vision"
    assert latest["flags_turned_off"] == ["property_vision"]


def test_settings_refuse_a_short_webhook_token(
    rollback_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.common.settings import SettingsError
    from services.rollback.config import RollbackSettings

    monkeypatch.setenv("ALERTMANAGER_WEBHOOK_TOKEN", "short")
    with pytest.raises(SettingsError, match="ALERTMANAGER_WEBHOOK_TOKEN") as caught:
        RollbackSettings.from_env()
    assert "must be at least 32 bytes" in str(caught.value)
    assert "(value hidden)" in str(caught.value)


async def test_slack_shows_alert_text_and_never_reads_it_as_mentions_or_links(
    rollback_env: dict[str, str], app_client: Any, slack: SlackStandIn
) -> None:
    alert = _alert()
    alert["annotations"]["summary"] = "<!channel> p95 > 3 s & <https://evil.example|runbook>"
    async with app_client(create_app()) as client:
        answer = await client.post(URL, json=_notification(alert), headers=AUTH)
    assert answer.status_code == 200
    (told,) = slack.messages
    assert "<" not in told
    assert ">" not in told
    assert "&lt;!channel&gt; p95 &gt; 3 s &amp; &lt;https://evil.example|runbook&gt;" in told


async def test_no_request_the_document_describes_gets_a_server_error(
    app: Any, app_client: Any, redis_client: Redis, slack: SlackStandIn
) -> None:
    """Valid and invalid notifications generated from the handler's document (its
    body is Alertmanager's webhook payload): each answered below 500, every refusal
    in the ``{detail, reason}`` shape."""
    await _all_on(redis_client)
    async with app_client(app) as client:
        openapi = (await client.get("/openapi.json")).json()
        report = await fuzz_operations(client, openapi, token=WEBHOOK_TOKEN)
    assert report.findings == []
    assert report.answered("POST /v1/alertmanager/webhook", 2) > 0, report.statuses
