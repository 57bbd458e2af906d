"""``enterprisehub rollback stuck-undos|close-undo``: an operator finishes a stuck undo.

A handler killed between its PATCH and recording the outcome leaves the claim
open for good (test_undo_claims simulates it the same way); the runbook's
answer is these two commands, against real Postgres and Redis.
"""

from __future__ import annotations

import asyncio
import re
from contextlib import nullcontext
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.catalog import feature_deployments
from services.cli import main
from services.common.database import Database
from services.common.redis import Redis
from services.rollback import procedure
from services.rollback.config import RollbackSettings
from services.rollback.deployments import RESTORED_HASH_ANNOTATION, undo_deadline_seconds
from services.rollback.main import create_app
from services.rollback.undo_claims import REFRESH_SECONDS, oldest_claim_age_seconds
from tests.services.rollback.conftest import SlackStandIn
from tests.services.rollback.kubernetes_api import KubernetesApiStandIn
from tests.services.rollback.test_undo_claims import _claimed_ago, _kill_after_claim
from tests.services.rollback.test_undo_deployments import BAD, GOOD, _all_on, _incident, _post
from tests.services.rollback.test_webhook import STARTS, _alert, _notification

RULES = Path(__file__).resolve().parents[3] / "alerts" / "rules" / "rollback.yml"


def _rule(name: str) -> dict[str, Any]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    (rule,) = [r for g in groups for r in g["rules"] if r.get("alert") == name]
    return dict(rule)


def _duration_seconds(text: str) -> float:
    value, unit = re.fullmatch(r"(\d+)([smh])", text).groups()  # type: ignore[union-attr]
    return float(value) * {"s": 1, "m": 60, "h": 3600}[unit]


async def _cli(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


async def _stuck(
    undoing: KubernetesApiStandIn,
    app_client: Any,
    redis_client: Redis,
    owner_db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> str:
    """An incident whose handler patched ml-services and died before recording it."""
    undoing.add_deployment("ml-services", [GOOD, BAD])
    await _all_on(redis_client)
    await _kill_after_claim(app_client, monkeypatch, _notification(_alert()))
    await _claimed_ago(owner_db, "property_vision", timedelta(minutes=25))
    incident = await _incident(owner_db)
    assert incident["deployments_state"] == "claimed"
    return str(incident["incident_key"])


async def test_the_operator_lists_and_closes_a_stuck_undo(
    rollback_env: dict[str, str],
    undoing: KubernetesApiStandIn,
    app_client: Any,
    redis_client: Redis,
    owner_db: Database,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    slack: SlackStandIn,
) -> None:
    key = await _stuck(undoing, app_client, redis_client, owner_db, monkeypatch)
    assert await _cli("rollback", "stuck-undos", "--environment", "local") == 0
    listed = capsys.readouterr().out
    assert key in listed
    assert "property_vision" in listed
    assert "(25 min ago)" in listed
    assert "deployments: ml-services" in listed

    # What `kubectl get deployment ml-services -o jsonpath=...` shows the operator.
    restored = undoing.deployments["ml-services"]["metadata"]["annotations"][
        RESTORED_HASH_ANNOTATION
    ]
    code = await _cli(
        "rollback", "close-undo", key, "--environment", "local", "--actor", "oncall",
        "--reason", "the patch landed (annotation present)", "--yes",
        "--restored", f"ml-services={restored}",
    )  # fmt: skip
    assert code == 0
    assert "undo closed with 1 outcome(s)" in capsys.readouterr().out
    # The channel that saw the rollback hears how the undo ended (the dead
    # handler never told it).
    assert slack.messages[-1] == (
        f":white_check_mark: [local] oncall closed the stuck undo after VisionLatencyRollback "
        f"(incident {key}): ml-services: rolled back (template {restored})."
    )

    incident = await _incident(owner_db)
    assert incident["deployments_state"] == "done"
    assert incident["deployments_done_at"] is not None
    (outcome,) = incident["deployments_outcome"]
    assert outcome["deployment"] == "ml-services"
    assert outcome["rolled_back"] is True
    assert outcome["restored_hash"] == restored
    assert outcome["reason"] == "closed by hand by oncall: the patch landed (annotation present)"
    # The alert's gauge reads 0 again, the health page shows the outcome, and
    # a later incident reads the restored template from the row.
    assert await oldest_claim_age_seconds(owner_db) == 0
    async with app_client(create_app()) as client:
        (shown,) = (await client.get("/health/rollback")).json()["latest_incidents"]
    assert shown["deployments_undo"] == "done"
    async with owner_db.unscoped() as conn:
        assert await conn.fetchval(procedure.LAST_RESTORED, "ml-services") == restored
    assert await _cli("rollback", "stuck-undos", "--environment", "local") == 0
    assert "no undo is claimed and unfinished" in capsys.readouterr().out


async def test_a_deployment_found_not_rolled_back_is_recorded_so(
    rollback_env: dict[str, str],
    undoing: KubernetesApiStandIn,
    app_client: Any,
    redis_client: Redis,
    owner_db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = await _stuck(undoing, app_client, redis_client, owner_db, monkeypatch)
    code = await _cli(
        "rollback", "close-undo", key, "--environment", "local", "--yes",
        "--reason", "no annotation: the patch never landed", "--not-restored", "ml-services",
    )  # fmt: skip
    assert code == 0
    (outcome,) = (await _incident(owner_db))["deployments_outcome"]
    assert (outcome["rolled_back"], outcome["restored_hash"]) == (False, None)
    async with owner_db.unscoped() as conn:
        assert await conn.fetchval(procedure.LAST_RESTORED, "ml-services") is None


@pytest.mark.parametrize(
    ("verdicts", "message"),
    [
        ([], "say what happened to ml-services"),
        (["--not-restored", "coaching-engine"], "coaching-engine was not part of it"),
        (["--restored", "ml-services=Not A Hash"], "is not a pod-template-hash"),
        (["--restored", "ml-services=abc\n"], "is not a pod-template-hash"),
        (["--restored", "ml-services=abc", "--not-restored", "ml-services"], "named twice"),
        (["--restored", "ml-services"], "expected DEPLOYMENT=HASH"),
    ],
    ids=["missing", "unplanned", "bad-hash", "hash-newline", "twice", "no-hash"],
)
async def test_wrong_verdicts_change_nothing(
    rollback_env: dict[str, str],
    undoing: KubernetesApiStandIn,
    app_client: Any,
    redis_client: Redis,
    owner_db: Database,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    slack: SlackStandIn,
    verdicts: list[str],
    message: str,
) -> None:
    key = await _stuck(undoing, app_client, redis_client, owner_db, monkeypatch)
    usage_error = pytest.raises(SystemExit) if "DEPLOYMENT=HASH" in message else nullcontext()
    with usage_error:
        code = await _cli(
            "rollback", "close-undo", key, "--environment", "local", "--yes",
            "--reason", "checked", *verdicts,
        )  # fmt: skip
        assert code != 0
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    incident = await _incident(owner_db)
    assert (incident["deployments_state"], incident["deployments_outcome"]) == ("claimed", [])
    assert not any("closed the stuck undo" in message for message in slack.messages)


async def test_a_claim_is_closed_once_and_only_a_claim(
    rollback_env: dict[str, str],
    undoing: KubernetesApiStandIn,
    app_client: Any,
    redis_client: Redis,
    owner_db: Database,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    key = await _stuck(undoing, app_client, redis_client, owner_db, monkeypatch)
    close = ("rollback", "close-undo", key, "--environment", "local", "--yes", "--reason", "x")
    # Two operators at once: one closes it, the other is told it is closed.
    codes = await asyncio.gather(
        _cli(*close, "--not-restored", "ml-services"),
        _cli(*close, "--restored", "ml-services=abc123"),
    )
    assert sorted(codes) == [0, 1]
    assert "has no open claim (undo: done); nothing changed" in capsys.readouterr().err
    assert len((await _incident(owner_db))["deployments_outcome"]) == 1
    assert await _cli(*close, "--not-restored", "ml-services") == 1
    assert "has no open claim" in capsys.readouterr().err
    assert await _cli("rollback", "close-undo", "operator:nope", "--environment", "local",
                      "--yes", "--reason", "x", "--not-restored", "ml-services") == 1  # fmt: skip
    assert "no incident 'operator:nope'" in capsys.readouterr().err


async def test_close_undo_without_a_terminal_or_yes_says_what_it_did_not_do(
    rollback_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    # It said "refusing to change flags", which close-undo never does.
    code = await _cli("rollback", "close-undo", "operator:nope", "--environment", "local",
                      "--reason", "x", "--not-restored", "ml-services")  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "flags" not in err
    assert (
        "refusing without confirmation (close the undo of incident operator:nope in local): "
        "stdin is not a terminal; pass --yes"
    ) in err


async def test_a_finished_undo_cannot_be_closed_over(
    rollback_env: dict[str, str],
    undoing: KubernetesApiStandIn,
    app_client: Any,
    redis_client: Redis,
    owner_db: Database,
    capsys: pytest.CaptureFixture[str],
) -> None:
    undoing.add_deployment("ml-services", [GOOD, BAD])
    await _all_on(redis_client)
    await _post(create_app(), app_client, _notification(_alert()))
    before = await _incident(owner_db)
    assert before["deployments_state"] == "done"
    code = await _cli(
        "rollback", "close-undo", before["incident_key"], "--environment", "local", "--yes",
        "--reason", "x", "--not-restored", "ml-services",
    )  # fmt: skip
    assert code == 1
    assert "has no open claim (undo: done)" in capsys.readouterr().err
    assert (await _incident(owner_db))["deployments_outcome"] == before["deployments_outcome"]


async def test_a_trickling_api_is_given_up_at_the_deadline_and_an_operator_close_stands(
    rollback_env: dict[str, str],
    undoing: KubernetesApiStandIn,
    app_client: Any,
    redis_client: Redis,
    owner_db: Database,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each byte within the read timeout, the whole answer never: the undo ends at
    its deadline (3 attempts x 3 calls x the timeout) and is recorded as failed,
    unless an operator closed the claim meanwhile; then the operator's record stands."""
    monkeypatch.setenv("ROLLBACK_KUBERNETES_TIMEOUT_SECONDS", "0.5")
    assert undo_deadline_seconds(0.5) == 4.5
    undoing.add_deployment("ml-services", [GOOD, BAD])
    undoing.add_deployment("coaching-engine", [GOOD, BAD])
    undoing.trickle_seconds = 0.1
    await _all_on(redis_client)

    async def webhook() -> list[Any]:
        return await _post(create_app(), app_client, _notification(_alert()))

    # property_vision: ml-services alone, no operator. The whole answer of the
    # first GET alone takes minutes at this pace; the deadline ends it.
    (answer,) = await asyncio.wait_for(webhook(), timeout=30)
    (undone,) = answer["handled"][0]["deployments_undone"]
    assert undone["failed"] is True
    assert "no complete answer within 4.5 s" in undone["reason"]
    (recorded,) = (await _incident(owner_db))["deployments_outcome"]
    assert recorded["reason"] == undone["reason"]

    # ai_coaching: the operator closes the claim while the handler still waits
    # (a deadline of 9 s leaves the command time on a busy machine).
    monkeypatch.setenv("ROLLBACK_KUBERNETES_TIMEOUT_SECONDS", "1")
    await _all_on(redis_client)
    coaching = _notification(
        _alert(feature="ai_coaching", fingerprint="0f1e2d3c4b5a6978", starts=STARTS)
    )
    running = asyncio.create_task(_post(create_app(), app_client, coaching))
    key = await _claim_of(owner_db, "ai_coaching")
    code = await _cli(
        "rollback", "close-undo", key, "--environment", "local", "--yes",
        "--reason", "handler looked hung", "--not-restored", "coaching-engine",
    )  # fmt: skip
    assert code == 0
    await asyncio.wait_for(running, timeout=30)
    async with owner_db.unscoped() as conn:
        outcomes = await conn.fetchval(
            "SELECT deployments_outcome FROM rollback_incidents WHERE incident_key = $1", key
        )
    (kept,) = outcomes
    assert kept["reason"].startswith("closed by hand by ")
    assert kept["reason"].endswith(": handler looked hung")


async def _claim_of(owner_db: Database, feature: str) -> str:
    for _ in range(200):
        async with owner_db.unscoped() as conn:
            key = await conn.fetchval(
                "SELECT incident_key FROM rollback_incidents "
                "WHERE feature_name = $1 AND deployments_state = 'claimed'",
                feature,
            )
        if key is not None:
            return str(key)
        await asyncio.sleep(0.05)
    raise AssertionError(f"no claim of {feature} appeared")


def test_the_stuck_alert_never_fires_for_an_undo_still_within_its_deadlines() -> None:
    """The alert's threshold plus its `for` must outlast the slowest undo the
    settings allow (every Deployment at the longest timeout) and a gauge refresh."""
    rule = _rule("RollbackDeploymentUndoStuck")
    threshold = float(re.fullmatch(r".*> (\d+)", rule["expr"].strip()).group(1))  # type: ignore[union-attr]
    pending = _duration_seconds(rule["for"])
    (le,) = [
        m.le
        for m in RollbackSettings.model_fields["rollback_kubernetes_timeout_seconds"].metadata
        if hasattr(m, "le")
    ]
    deployments = {name for names in feature_deployments().values() for name in names}
    slowest = len(deployments) * undo_deadline_seconds(le) + REFRESH_SECONDS
    assert slowest < threshold + pending, (slowest, threshold, pending)
    # ...and pages within half an hour of a dead handler's claim.
    assert threshold + pending <= 1800


async def test_the_closing_message_waits_for_slack_and_goes_out_once(
    rollback_env: dict[str, str],
    undoing: KubernetesApiStandIn,
    app_client: Any,
    redis_client: Redis,
    owner_db: Database,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    slack: SlackStandIn,
) -> None:
    key = await _stuck(undoing, app_client, redis_client, owner_db, monkeypatch)
    slack.down = True
    code = await _cli(
        "rollback", "close-undo", key, "--environment", "local", "--actor", "oncall",
        "--reason", "no annotation: not rolled back", "--yes", "--not-restored", "ml-services",
    )  # fmt: skip
    # The undo is closed whatever Slack does; the message waits in the outbox.
    assert code == 0
    assert (await _incident(owner_db))["deployments_state"] == "done"
    slack.down = False
    capsys.readouterr()
    for _ in range(2):
        assert await _cli("rollback", "notices", "--environment", "local", "--resend") == 0
    closing = [m for m in slack.messages if "closed the stuck undo" in m]
    assert closing == [
        f":white_check_mark: [local] oncall closed the stuck undo after VisionLatencyRollback "
        f"(incident {key}): ml-services: not rolled back."
    ]
    assert "every rollback notice was sent" in capsys.readouterr().out
