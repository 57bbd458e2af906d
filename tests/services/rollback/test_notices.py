"""The rollback notice outbox against real Postgres and the Slack stand-in:
every recorded rollback is told once, whatever dies or fails in between."""

from __future__ import annotations

import asyncio
import itertools
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from services.common.database import Database
from services.common.redis import Redis
from services.rollback.alerts import incident_key
from services.rollback.main import create_app
from services.rollback.metrics import RollbackMetrics
from services.rollback.notices import (
    MAX_ATTEMPTS,
    backoff_seconds,
    deliver,
    refresh_notice_gauges,
    resend_given_up,
    unsent_notices,
)
from services.rollback.procedure import RollbackRequest, roll_back
from tests.services.rollback.conftest import SlackStandIn
from tests.services.rollback.kubernetes_api import KubernetesApiStandIn
from tests.services.rollback.test_undo_deployments import BAD, GOOD
from tests.services.rollback.test_webhook import AUTH, STARTS, URL, _alert, _all_on, _notification

BODY = _notification(_alert())
#: The incident key the handler derives from ``_alert()`` (its fingerprint and start).
KEY = incident_key(_alert()["fingerprint"], STARTS)


REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def app(rollback_env: dict[str, str]) -> Any:
    return create_app()


async def _notices(owner_db: Database) -> list[dict[str, Any]]:
    async with owner_db.unscoped() as conn:
        rows = await conn.fetch("SELECT * FROM rollback_notices ORDER BY notice_id")
    return [dict(row) for row in rows]


async def _backoff_elapsed(owner_db: Database) -> None:
    """What the passing of each notice's backoff would do (no test waits minutes)."""
    async with owner_db.unscoped() as conn:
        await conn.execute("UPDATE rollback_notices SET next_attempt_at = now()")


def _sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


async def _record_without_telling(db: Database, redis: Redis, key: str) -> None:
    """What a handler that died right after its commit left: the incident and its
    queued notice, and no post."""
    outcome = await roll_back(
        db=db,
        redis=redis,
        notify=True,
        request=RollbackRequest(
            key=key,
            source="alertmanager",
            alertname="VisionLatencyRollback",
            feature="property_vision",
            features=("property_vision",),
            environment="local",
            actor="alertmanager",
            reason="vision p95 above 3 s for 5 minutes",
            starts_at=STARTS,
        ),
    )
    assert outcome.changed_features == ["property_vision"]


@pytest_asyncio.fixture
async def lost(db: Database, redis_client: Redis) -> None:
    """Every flag on, then the incident of ``BODY`` recorded by a handler that
    died before posting its notice."""
    await _all_on(redis_client)
    await _record_without_telling(db, redis_client, KEY)


async def test_a_handler_that_died_before_posting_is_told_for_once_after(
    lost: None, app: Any, app_client: Any, owner_db: Database, slack: SlackStandIn
) -> None:
    assert slack.messages == []
    async with app_client(app) as client:
        # Alertmanager's retry, a duplicate that changes nothing, tells Slack (or
        # the restarted handler's own pass got there first: once either way).
        retry = await client.post(URL, json=BODY, headers=AUTH)
        again = await client.post(URL, json=BODY, headers=AUTH)
        await _until_sent(owner_db)
    assert [r.json()["handled"][0]["duplicate"] for r in (retry, again)] == [True, True]
    assert len(slack.messages) == 1
    assert "rolled back property_vision" in slack.messages[0]
    [notice] = await _notices(owner_db)
    assert (notice["sent_at"] is not None, notice["attempts"]) == (True, 1)


async def test_a_post_that_fails_is_posted_once_by_the_retry(
    app: Any, app_client: Any, redis_client: Redis, owner_db: Database, slack: SlackStandIn
) -> None:
    await _all_on(redis_client)
    slack.down = True
    async with app_client(app) as client:
        first = await client.post(URL, json=BODY, headers=AUTH)
        assert first.status_code == 200
        assert first.json()["handled"][0]["flags_turned_off"] == ["property_vision"]
        await _until_tried(owner_db)
        [notice] = await _notices(owner_db)
        assert (notice["sent_at"], notice["attempts"]) == (None, 1)
        assert notice["last_error"] == "RemoteProtocolError"
        slack.down = False
        # Alertmanager's next copy comes minutes later, after the backoff.
        await _backoff_elapsed(owner_db)
        await client.post(URL, json=BODY, headers=AUTH)
        await client.post(URL, json=BODY, headers=AUTH)
        await _until_sent(owner_db)
    assert len(slack.messages) == 1


async def _copies_while_slack_holds_the_first_post(
    client: Any, slack: SlackStandIn, copies: int
) -> list[Any]:
    """``copies`` copies of the webhook at once; Slack answers only after every
    copy but the one posting has answered (a lease, not a queue)."""
    slack.hold.clear()
    tasks = [asyncio.create_task(client.post(URL, json=BODY, headers=AUTH)) for _ in range(copies)]
    await asyncio.to_thread(slack.holding.wait, 30)
    pending = set(tasks)
    async with asyncio.timeout(30):
        while len(pending) > 1:
            _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
    slack.hold.set()
    return list(await asyncio.gather(*tasks))


async def _until_sent(owner_db: Database) -> None:
    """Until every notice is marked sent (the post held at Slack may be the
    handler's own pass, which the app's shutdown would cancel)."""
    await _until(owner_db, lambda n: n["sent_at"] is not None)


async def _until_tried(owner_db: Database) -> None:
    """Until every notice was tried and is no longer held (the handler's own
    pass may be the one trying, and the app's shutdown would cancel it)."""
    await _until(owner_db, lambda n: n["attempts"] > 0 and n["claimed_until"] is None)


async def _until(owner_db: Database, done: Callable[[dict[str, Any]], bool]) -> None:
    async with asyncio.timeout(30):  # a generous deadline, not a timing check
        while True:
            if all(done(n) for n in await _notices(owner_db)):
                return
            await asyncio.sleep(0.05)


async def test_copies_at_once_after_a_lost_post_tell_slack_once(
    lost: None, app: Any, app_client: Any, owner_db: Database, slack: SlackStandIn
) -> None:
    async with app_client(app) as client:
        answers = await _copies_while_slack_holds_the_first_post(client, slack, 3)
        await _until_sent(owner_db)
    assert [a.json()["handled"][0]["duplicate"] for a in answers] == [True] * 3
    assert len(slack.messages) == 1
    [notice] = await _notices(owner_db)
    assert (notice["sent_at"] is not None, notice["attempts"]) == (True, 1)


async def test_concurrent_copies_of_a_new_incident_post_once_while_slack_is_slow(
    app: Any, app_client: Any, redis_client: Redis, owner_db: Database, slack: SlackStandIn
) -> None:
    await _all_on(redis_client)
    async with app_client(app) as client:
        answers = await _copies_while_slack_holds_the_first_post(client, slack, 4)
        await _until_sent(owner_db)
    assert [a.status_code for a in answers] == [200] * 4
    assert [a.json()["handled"][0]["duplicate"] for a in answers].count(False) == 1
    assert len(slack.messages) == 1
    [notice] = await _notices(owner_db)
    assert (notice["sent_at"] is not None, notice["attempts"]) == (True, 1)


async def test_slack_5xx_backs_off_then_the_pass_posts_once(
    app: Any, app_client: Any, redis_client: Redis, owner_db: Database, slack: SlackStandIn
) -> None:
    await _all_on(redis_client)
    slack.status = 503
    async with app_client(app) as client:
        await client.post(URL, json=BODY, headers=AUTH)
        await _until_tried(owner_db)
    assert (slack.messages, len(slack.refused)) == ([], 1)
    [notice] = await _notices(owner_db)
    assert notice["last_error"] == "HTTP 503"
    assert notice["next_attempt_at"] > notice["created_at"]
    registry = CollectorRegistry()
    metrics = RollbackMetrics(registry)
    url = SecretStr(slack.url)
    # Not due yet: the periodic pass leaves it.
    assert await deliver(owner_db, url, metrics) == 0
    assert len(slack.refused) == 1
    await _backoff_elapsed(owner_db)
    assert await deliver(owner_db, url, metrics) == 0  # still 503
    await refresh_notice_gauges(owner_db, metrics)
    assert _sample(registry, "rollback_notices_unsent", state="pending") == 1
    assert (_sample(registry, "rollback_notice_oldest_unsent_age_seconds") or 0) > 0
    slack.status = 200
    await _backoff_elapsed(owner_db)
    assert await deliver(owner_db, url, metrics) == 1
    await _backoff_elapsed(owner_db)
    assert await deliver(owner_db, url, metrics) == 0
    assert len(slack.messages) == 1
    assert _sample(registry, "rollback_notice_posts_total", outcome="failed") == 1
    assert _sample(registry, "rollback_notice_posts_total", outcome="sent") == 1
    await refresh_notice_gauges(owner_db, metrics)
    assert _sample(registry, "rollback_notices_unsent", state="pending") == 0
    assert _sample(registry, "rollback_notice_oldest_unsent_age_seconds") == 0


async def test_the_handlers_pass_posts_a_queued_notice_without_any_webhook(
    lost: None, app: Any, app_client: Any, owner_db: Database, slack: SlackStandIn
) -> None:
    async with app_client(app):
        async with asyncio.timeout(30):  # a generous deadline, not a timing check
            while True:
                if slack.messages:
                    break
                await asyncio.sleep(0.1)
    assert len(slack.messages) == 1
    [notice] = await _notices(owner_db)
    assert notice["sent_at"] is not None


async def test_a_post_under_way_at_shutdown_is_recorded_before_the_handler_stops(
    lost: None, app: Any, app_client: Any, owner_db: Database, slack: SlackStandIn
) -> None:
    """Slack took the notice while the handler was stopping: the pass was cancelled
    between the post and its "sent" mark, so the next start posted it again."""
    slack.hold.clear()
    async with app_client(app):
        assert await asyncio.to_thread(slack.holding.wait, 30)
        # Slack answers while the shutdown is cancelling the pass.
        answer = threading.Timer(0.5, slack.hold.set)
        answer.start()
    answer.join()
    assert len(slack.messages) == 1
    [notice] = await _notices(owner_db)
    assert notice["sent_at"] is not None


async def test_a_notice_is_given_up_after_its_attempts_and_resent_by_an_operator(
    lost: None, db: Database, owner_db: Database, slack: SlackStandIn
) -> None:
    registry = CollectorRegistry()
    metrics = RollbackMetrics(registry)
    url = SecretStr(slack.url)
    slack.status = 500
    for _ in range(MAX_ATTEMPTS + 2):
        await _backoff_elapsed(owner_db)
        await deliver(db, url, metrics)
    assert len(slack.refused) == MAX_ATTEMPTS
    [unsent] = await unsent_notices(db)
    assert (unsent.given_up, unsent.attempts) == (True, MAX_ATTEMPTS)
    await refresh_notice_gauges(db, metrics)
    assert _sample(registry, "rollback_notices_unsent", state="given_up") == 1
    assert _sample(registry, "rollback_notices_unsent", state="pending") == 0
    slack.status = 200
    assert await resend_given_up(db) == 1
    assert await deliver(db, url, metrics) == 1
    assert await unsent_notices(db) == []
    assert len(slack.messages) == 1


def test_the_backoff_doubles_and_is_bounded() -> None:
    waits = [backoff_seconds(n) for n in range(1, MAX_ATTEMPTS + 1)]
    assert waits[:3] == [15, 30, 60]
    assert max(waits) == 600
    assert all(a <= b for a, b in itertools.pairwise(waits))


def test_a_notice_is_given_up_after_the_minutes_the_docs_promise() -> None:
    # docs/observability.md and the runbook tell the operator when to look.
    given_up_after = sum(backoff_seconds(n) for n in range(1, MAX_ATTEMPTS)) / 60
    for doc in ("docs/observability.md", "docs/runbooks/RollbackNoticesUnsent.md"):
        text = (REPO / doc).read_text(encoding="utf-8")
        promised = re.search(r"after (\d+) attempts (?:over |\()about (\d+) minutes", text)
        assert promised is not None, doc
        assert int(promised[1]) == MAX_ATTEMPTS, doc
        assert int(promised[2]) == round(given_up_after), (doc, given_up_after)


async def test_without_a_slack_url_nothing_is_queued(
    settings_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    app_client: Any,
    redis_client: Redis,
    owner_db: Database,
) -> None:
    monkeypatch.setenv("ALERTMANAGER_WEBHOOK_TOKEN", AUTH["Authorization"].split()[1])
    monkeypatch.delenv("SLACK_WEBHOOK_URL", raising=False)
    await _all_on(redis_client)
    async with app_client(create_app()) as client:
        answer = await client.post(URL, json=BODY, headers=AUTH)
    assert answer.json()["handled"][0]["flags_turned_off"] == ["property_vision"]
    assert await _notices(owner_db) == []


async def test_an_undos_notice_lost_with_slack_down_is_posted_once_by_the_retry(
    undoing: KubernetesApiStandIn,
    app_client: Any,
    redis_client: Redis,
    owner_db: Database,
    slack: SlackStandIn,
) -> None:
    undoing.add_deployment("ml-services", [GOOD, BAD])
    await _all_on(redis_client)
    slack.down = True
    async with app_client(create_app()) as client:
        first = (await client.post(URL, json=BODY, headers=AUTH)).json()["handled"][0]
        assert first["deployments_undone"][0]["rolled_back"] is True
        assert [(n["kind"], n["sent_at"]) for n in await _notices(owner_db)] == [
            ("rollback", None),
            ("undo", None),
        ]
        slack.down = False
        await _backoff_elapsed(owner_db)
        for _ in range(2):
            await client.post(URL, json=BODY, headers=AUTH)
        await _until_sent(owner_db)
    assert len(slack.messages) == 2
    assert "rolled back property_vision" in slack.messages[0]
    assert "undid the rollout" in slack.messages[1]
    # The retries undid nothing again.
    assert len(undoing.requests("PATCH")) == 1
