"""Undoing a feature's rollout: real Postgres, Redis, lightkube, a stand-in API server.

The handler reads its in-cluster configuration (ServiceAccount token, CA,
namespace, KUBERNETES_SERVICE_HOST/PORT) as in a pod and talks TLS to the
stand-in, which counts every request.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from services.common.database import Database
from services.common.flags import FEATURES, FlagState, get_flags, write_flag
from services.common.redis import Redis
from services.common.settings import SettingsError
from services.rollback import procedure
from services.rollback.config import RollbackSettings
from services.rollback.deployments import (
    PATCH_ATTEMPTS,
    RESTORED_HASH_ANNOTATION,
    TEMPLATE_CHANGED,
    label_selector,
    plan_undo,
)
from services.rollback.main import create_app
from services.rollback.procedure import ALREADY_OFF
from tests.services.rollback.conftest import (
    SERVICE_ACCOUNT_TOKEN,
    SlackStandIn,
)
from tests.services.rollback.kubernetes_api import JSON_PATCH, KubernetesApiStandIn, template
from tests.services.rollback.test_webhook import AUTH, STARTS, URL, _alert, _notification

GOOD, BAD = "registry.example/hub@sha256:" + "1" * 64, "registry.example/hub@sha256:" + "2" * 64


async def _all_on(redis: Redis, owner_db: Database | None = None) -> None:
    """Every feature on at 25%; recorded in the audit with ``owner_db``, as an
    operator's change is (the handler reverts an unrecorded state the record
    says is off: a stale copy)."""
    for feature in FEATURES:
        await write_flag(redis, feature, FlagState(enabled=True, rollout_percentage=25))
    if owner_db is not None:
        async with owner_db.unscoped() as conn:
            await conn.executemany(
                "INSERT INTO flag_audit (environment, feature_name, actor, to_enabled, "
                "to_percentage, reason, command) VALUES ('local', $1, 'ops', true, 25, "
                "'turned on again', 'rollout set')",
                [(feature,) for feature in FEATURES],
            )


async def _incident(owner_db: Database) -> dict[str, Any]:
    async with owner_db.unscoped() as conn:
        (row,) = await conn.fetch("SELECT * FROM rollback_incidents")
    return dict(row)


async def _post(app: Any, app_client: Any, *bodies: dict[str, Any]) -> list[Any]:
    async with app_client(app) as client:
        return [(await client.post(URL, json=body, headers=AUTH)).json() for body in bodies]


async def test_off_the_handler_never_calls_the_api(
    rollback_env: dict[str, str],
    kubernetes_api: KubernetesApiStandIn,
    app_client: Any,
    redis_client: Redis,
    owner_db: Database,
) -> None:
    kubernetes_api.add_deployment("ml-services", [GOOD, BAD])
    await _all_on(redis_client)
    (answer,) = await _post(create_app(), app_client, _notification(_alert()))
    assert "deployments_undone" not in answer["handled"][0]
    assert not (await get_flags(redis_client))["property_vision"].enabled  # type: ignore[union-attr]
    assert kubernetes_api.received == []
    incident = await _incident(owner_db)
    assert incident["deployments_state"] is None
    assert incident["deployments_outcome"] == []


async def test_on_one_patch_restores_the_previous_template_as_kubectl_does(
    undoing: KubernetesApiStandIn,
    app_client: Any,
    redis_client: Redis,
    owner_db: Database,
    slack: SlackStandIn,
) -> None:
    undoing.add_deployment("ml-services", [GOOD, BAD, BAD + "x"], foreign=1)
    # The revision to go back to is the second newest: BAD (revision 2).
    undoing.add_deployment("coaching-engine", [GOOD, BAD])
    get_answer_version = undoing.deployments["ml-services"]["metadata"]["resourceVersion"]
    await _all_on(redis_client)
    (answer,) = await _post(create_app(), app_client, _notification(_alert()))

    assert not (await get_flags(redis_client))["property_vision"].enabled  # type: ignore[union-attr]
    get, listing, patch = undoing.received
    assert (get.method, get.path) == (
        "GET",
        "/apis/apps/v1/namespaces/enterprisehub/deployments/ml-services",
    )
    assert listing.path == "/apis/apps/v1/namespaces/enterprisehub/replicasets"
    assert listing.query["labelSelector"] == ["app.kubernetes.io/name=ml-services"]
    assert all(r.authorization == f"Bearer {SERVICE_ACCOUNT_TOKEN}" for r in undoing.received)
    assert (patch.method, patch.content_type) == ("PATCH", JSON_PATCH)
    assert patch.query["fieldManager"] == ["rollback-handler"]
    # The second newest ReplicaSet's template, without its hash label, every field kept;
    # the Deployment keeps its revision bookkeeping and takes the ReplicaSet's others,
    # plus the hash of the template restored (written with the change itself).
    # First, only onto the Deployment it read (resourceVersion).
    assert patch.body == [
        {"op": "test", "path": "/metadata/resourceVersion", "value": get_answer_version},
        {"op": "replace", "path": "/spec/template", "value": template("ml-services", BAD, None)},
        {
            "op": "replace",
            "path": "/metadata/annotations",
            "value": {
                "deployment.kubernetes.io/revision": "3",
                "pulumi.com/autonamed": "false",
                RESTORED_HASH_ANNOTATION: "hash2",
            },
        },
    ]
    assert undoing.deployments["ml-services"]["spec"]["template"]["spec"]["containers"][0][
        "futureField"
    ] == {"kept": True}

    record = {
        "deployment": "ml-services",
        "rolled_back": True,
        "reason": "rolled back",
        "from_revision": 3,
        "to_revision": 2,
        "failed": False,
        "restored_hash": "hash2",
    }
    assert answer["handled"][0]["deployments_undone"] == [record]
    incident = await _incident(owner_db)
    assert incident["deployments_state"] == "done"
    assert incident["deployments_planned"] == ["ml-services"]
    assert incident["deployments_outcome"] == [record]
    assert incident["deployments_done_at"] is not None
    assert len(slack.messages) == 2
    # As sent: Slack shows "&gt;" as ">" (notify.slack_escape).
    assert "ml-services: revision 3 -&gt; 2" in slack.messages[1]
    assert slack.messages[1].startswith(":rewind: undid the rollout")
    assert "Pulumi still declares the template that failed" in slack.messages[1]


async def test_duplicates_patch_once(
    undoing: KubernetesApiStandIn, app_client: Any, redis_client: Redis, owner_db: Database
) -> None:
    undoing.add_deployment("ml-services", [GOOD, BAD])
    await _all_on(redis_client)
    body = _notification(_alert())
    app = create_app()
    async with app_client(app) as client:
        # Retries, repeats and an HA peer, concurrently; then a late retry.
        answers = await asyncio.gather(
            *(client.post(URL, json=body, headers=AUTH) for _ in range(6))
        )
        late = await client.post(URL, json=body, headers=AUTH)
    assert [a.status_code for a in [*answers, late]] == [200] * 7
    assert len(undoing.requests("PATCH")) == 1
    undone = [a.json()["handled"][0]["deployments_undone"] for a in [*answers, late]]
    assert sum(u is not None for u in undone) == 1
    assert (await _incident(owner_db))["deployments_outcome"][0]["rolled_back"] is True


async def test_an_undo_is_never_undone_by_a_later_incident_without_a_release(
    undoing: KubernetesApiStandIn, app_client: Any, redis_client: Redis, owner_db: Database
) -> None:
    undoing.add_deployment("ml-services", [GOOD, BAD])
    app = create_app()

    async def incident(client: Any, hours: int) -> dict[str, Any]:
        # The operator turned the feature back on; the same alert fires again later.
        await _all_on(redis_client, owner_db)
        body = _notification(_alert(starts=STARTS + timedelta(hours=hours)))
        answer = await client.post(URL, json=body, headers=AUTH)
        (undone,) = answer.json()["handled"][0]["deployments_undone"]
        return dict(undone)

    async with app_client(app) as client:
        first = await incident(client, 0)
        assert (first["rolled_back"], first["to_revision"]) == (True, 1)
        undoing.roll_out("ml-services")  # GOOD's ReplicaSet becomes revision 3
        again = await incident(client, 1)
        assert again["rolled_back"] is False
        assert "an earlier automatic undo restored" in again["reason"]
        assert len(undoing.requests("PATCH")) == 1
        good = template("ml-services", GOOD, None)
        assert undoing.deployments["ml-services"]["spec"]["template"] == good
        # After a new release, the next incident undoes it, back to GOOD.
        undoing.release("ml-services", BAD + "v3")
        third = await incident(client, 2)
    assert (third["rolled_back"], third["from_revision"], third["to_revision"]) == (True, 4, 3)
    assert len(undoing.requests("PATCH")) == 2
    assert undoing.deployments["ml-services"]["spec"]["template"] == good


async def test_a_handler_killed_after_the_patch_never_undoes_its_own_undo(
    undoing: KubernetesApiStandIn,
    app_client: Any,
    redis_client: Redis,
    owner_db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The pod dies between the PATCH and the incident row's record: the row
    # keeps its claim and no restored_hash. The next incident (feature turned
    # back on, no release) must still see the restored template, on the
    # Deployment itself, and leave it alone.
    undoing.add_deployment("ml-services", [GOOD, BAD])
    await _all_on(redis_client, owner_db)
    record_undo = procedure.RECORD_UNDO
    killed = "SELECT $1::text, $2::jsonb FROM the_pod_was_killed_here"
    monkeypatch.setattr(procedure, "RECORD_UNDO", killed)
    with pytest.raises(asyncpg.UndefinedTableError):
        await _post(create_app(), app_client, _notification(_alert()))
    monkeypatch.setattr(procedure, "RECORD_UNDO", record_undo)
    incident = await _incident(owner_db)
    assert (incident["deployments_state"], incident["deployments_outcome"]) == ("claimed", [])
    # What an operator sees: claimed, since when, and no outcome.
    async with app_client(create_app()) as client:
        (shown,) = (await client.get("/health/rollback")).json()["latest_incidents"]
    assert (shown["deployments_undo"], shown["deployments"]) == ("claimed", [])
    assert shown["deployments_claimed_at"] == incident["deployments_claimed_at"].isoformat()
    assert len(undoing.requests("PATCH")) == 1
    undoing.roll_out("ml-services")  # GOOD's ReplicaSet becomes revision 3
    good = template("ml-services", GOOD, None)
    assert undoing.deployments["ml-services"]["spec"]["template"] == good

    await _all_on(redis_client, owner_db)
    (answer,) = await _post(
        create_app(), app_client, _notification(_alert(starts=STARTS + timedelta(hours=1)))
    )
    (again,) = answer["handled"][0]["deployments_undone"]
    assert again["rolled_back"] is False
    assert "an earlier automatic undo restored" in again["reason"]
    assert len(undoing.requests("PATCH")) == 1
    assert undoing.deployments["ml-services"]["spec"]["template"] == good


async def test_a_token_the_kubelet_rotated_is_read_again(
    undoing: KubernetesApiStandIn,
    app_client: Any,
    redis_client: Redis,
    owner_db: Database,
    tmp_path: Path,
) -> None:
    # Projected ServiceAccount tokens expire (an hour, 90 days at most on EKS)
    # and the kubelet rewrites the file; a handler that started long before the
    # incident must send the new one, not the token it read at start-up.
    for name in ("ml-services", "coaching-engine"):
        undoing.add_deployment(name, [GOOD, BAD])
    await _all_on(redis_client)
    app = create_app()
    async with app_client(app) as client:
        first = await client.post(URL, json=_notification(_alert()), headers=AUTH)
        rotated = "rotated-service-account-token-9876543210"
        (tmp_path / "serviceaccount" / "token").write_text(rotated)
        undoing.token = rotated
        second = await client.post(
            URL,
            json=_notification(_alert(feature="ai_coaching", fingerprint="c0ac4196")),
            headers=AUTH,
        )
    assert [
        a.json()["handled"][0]["deployments_undone"][0]["rolled_back"] for a in (first, second)
    ] == [
        True,
        True,
    ]
    patches = undoing.requests("PATCH")
    assert [p.path.rsplit("/", 1)[1] for p in patches] == ["ml-services", "coaching-engine"]
    assert patches[-1].authorization == f"Bearer {rotated}"


async def test_a_release_between_the_read_and_the_patch_is_never_overwritten(
    undoing: KubernetesApiStandIn,
    app_client: Any,
    redis_client: Redis,
    owner_db: Database,
    slack: SlackStandIn,
) -> None:
    # pulumi up lands a fix while the handler plans its undo of the bad
    # release: undoing would put the older template over the fix.
    undoing.add_deployment("ml-services", [GOOD, BAD])
    fix = BAD + "-fixed"

    def concurrent_release() -> None:
        undoing.after_list = None
        undoing.release("ml-services", fix)

    undoing.after_list = concurrent_release
    await _all_on(redis_client)
    await _post(create_app(), app_client, _notification(_alert()))
    assert len(undoing.requests("PATCH")) == 1
    containers = undoing.deployments["ml-services"]["spec"]["template"]["spec"]["containers"]
    assert containers[0]["image"] == fix
    (outcome,) = (await _incident(owner_db))["deployments_outcome"]
    assert (outcome["rolled_back"], outcome["failed"]) == (False, True)
    assert outcome["reason"] == TEMPLATE_CHANGED
    assert "could not undo" in slack.messages[-1]


async def test_a_status_write_between_the_read_and_the_patch_is_read_again(
    undoing: KubernetesApiStandIn, app_client: Any, redis_client: Redis, owner_db: Database
) -> None:
    # The controller's status writes and the autoscaler bump resourceVersion
    # without touching the template: the undo reads again and goes through.
    undoing.add_deployment("ml-services", [GOOD, BAD])
    writes = iter(range(1))

    def status_write() -> None:
        if next(writes, None) is None:
            return
        undoing.deployments["ml-services"]["metadata"]["resourceVersion"] += "0"

    undoing.after_list = status_write
    await _all_on(redis_client)
    await _post(create_app(), app_client, _notification(_alert()))
    assert len(undoing.requests("PATCH")) == 2
    assert undoing.deployments["ml-services"]["spec"]["template"] == template(
        "ml-services", GOOD, None
    )
    (outcome,) = (await _incident(owner_db))["deployments_outcome"]
    assert (outcome["rolled_back"], outcome["to_revision"]) == (True, 1)


async def test_a_deployment_that_keeps_changing_is_left_after_the_last_attempt(
    undoing: KubernetesApiStandIn, app_client: Any, redis_client: Redis, owner_db: Database
) -> None:
    undoing.add_deployment("ml-services", [GOOD, BAD])

    def status_write() -> None:
        undoing.deployments["ml-services"]["metadata"]["resourceVersion"] += "0"

    undoing.after_list = status_write
    await _all_on(redis_client)
    await _post(create_app(), app_client, _notification(_alert()))
    assert len(undoing.requests("PATCH")) == PATCH_ATTEMPTS
    assert undoing.deployments["ml-services"]["spec"]["template"] == template(
        "ml-services", BAD, None
    )
    (outcome,) = (await _incident(owner_db))["deployments_outcome"]
    assert (outcome["rolled_back"], outcome["failed"]) == (False, True)
    assert outcome["reason"].startswith("Kubernetes API: HTTP 422")


async def test_a_resolved_alert_undoes_nothing(
    undoing: KubernetesApiStandIn, app_client: Any, redis_client: Redis
) -> None:
    undoing.add_deployment("ml-services", [GOOD, BAD])
    await _all_on(redis_client)
    await _post(
        create_app(), app_client, _notification(_alert(status="resolved"), status="resolved")
    )
    assert undoing.received == []
    assert (await get_flags(redis_client))["property_vision"].enabled  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("images", "paused", "reason"),
    [
        ([GOOD], False, "no rollout history found for deployment 'ml-services'"),
        ([GOOD, BAD], True, "the deployment is paused"),
        ([GOOD, GOOD], False, "current template already matches revision 1"),
    ],
    ids=["first-revision", "paused", "same-template"],
)
async def test_no_patch_when_kubectl_would_not_undo_and_the_reason_is_recorded(
    undoing: KubernetesApiStandIn,
    app_client: Any,
    redis_client: Redis,
    owner_db: Database,
    slack: SlackStandIn,
    images: list[str],
    paused: bool,
    reason: str,
) -> None:
    undoing.add_deployment("ml-services", images, paused=paused)
    await _all_on(redis_client)
    await _post(create_app(), app_client, _notification(_alert()))
    assert undoing.requests("PATCH") == []
    assert len(undoing.requests("GET")) == 2
    (outcome,) = (await _incident(owner_db))["deployments_outcome"]
    assert (outcome["rolled_back"], outcome["failed"], outcome["reason"]) == (False, False, reason)
    # Slack hears that nothing was undone, not "undid the rollout" nor a pulumi warning.
    told = slack.messages[-1]
    assert "left the rollout as it is" in told
    assert f"ml-services: not rolled back ({reason})" in told
    assert "undid" not in told
    assert "pulumi" not in told.lower()
    assert not (await get_flags(redis_client))["property_vision"].enabled  # type: ignore[union-attr]


@pytest.mark.parametrize("status", [500, 403])
async def test_an_api_failure_is_recorded_and_notified_and_the_flag_stays_off(
    undoing: KubernetesApiStandIn,
    app_client: Any,
    redis_client: Redis,
    owner_db: Database,
    slack: SlackStandIn,
    status: int,
) -> None:
    undoing.add_deployment("ml-services", [GOOD, BAD])
    undoing.fail_with = status
    await _all_on(redis_client)
    app = create_app()
    async with app_client(app) as client:
        answer = await client.post(URL, json=_notification(_alert()), headers=AUTH)
        # A retry does not try again: the claim is taken and the failure is on record.
        await client.post(URL, json=_notification(_alert()), headers=AUTH)
        metrics = (await client.get("/metrics")).text.splitlines()
    assert answer.status_code == 200
    assert not (await get_flags(redis_client))["property_vision"].enabled  # type: ignore[union-attr]
    assert len(undoing.received) == 1
    (outcome,) = (await _incident(owner_db))["deployments_outcome"]
    assert outcome["failed"] is True
    assert outcome["rolled_back"] is False
    assert outcome["reason"].startswith(f"Kubernetes API: HTTP {status}")
    assert "stand-in told to fail" in outcome["reason"]
    assert SERVICE_ACCOUNT_TOKEN not in outcome["reason"]
    assert "could not undo" in slack.messages[-1]
    # Nothing was undone: no claim that the stack now disagrees with the cluster.
    assert "pulumi" not in slack.messages[-1].lower()
    assert any(
        line.startswith(
            'rollback_deployment_undos_total{deployment="ml-services",outcome="failed"}'
        )
        for line in metrics
    )


async def test_a_feature_already_off_is_not_undone_again(
    undoing: KubernetesApiStandIn, app_client: Any, redis_client: Redis, owner_db: Database
) -> None:
    undoing.add_deployment("ml-services", [GOOD, BAD])
    await _all_on(redis_client)
    await write_flag(
        redis_client, "property_vision", FlagState(enabled=False, rollout_percentage=25)
    )
    await _post(create_app(), app_client, _notification(_alert()))
    assert undoing.received == []
    incident = await _incident(owner_db)
    assert incident["deployments_state"] == "done"
    assert incident["deployments_outcome"] == [
        {
            "deployment": "ml-services",
            "rolled_back": False,
            "reason": ALREADY_OFF,
            "from_revision": None,
            "to_revision": None,
            "failed": False,
            "restored_hash": None,
        }
    ]


async def test_all_undoes_every_feature_turned_off(
    undoing: KubernetesApiStandIn, app_client: Any, redis_client: Redis
) -> None:
    for name in ("websocket-manager", "ml-services", "coaching-engine", "churn-orchestrator"):
        undoing.add_deployment(name, [GOOD, BAD])
    await _all_on(redis_client)
    await write_flag(redis_client, "ai_coaching", FlagState(enabled=False, rollout_percentage=0))
    await _post(create_app(), app_client, _notification(_alert(feature="all")))
    patched = sorted(r.path.rsplit("/", 1)[1] for r in undoing.requests("PATCH"))
    assert patched == ["churn-orchestrator", "ml-services", "websocket-manager"]


def test_a_missing_service_account_fails_at_start(
    undoing: KubernetesApiStandIn, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    from lightkube import ConfigError

    monkeypatch.setenv("ROLLBACK_SERVICE_ACCOUNT_DIR", str(tmp_path / "absent"))
    app = create_app()

    async def start() -> None:
        async with app.router.lifespan_context(app):
            pass

    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(ConfigError):
            loop.run_until_complete(start())
    finally:
        loop.close()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ROLLBACK_UNDO_DEPLOYMENTS": "true"}, "needs ROLLBACK_FEATURE_DEPLOYMENTS"),
        ({"ROLLBACK_FEATURE_DEPLOYMENTS": '{"vision": ["ml-services"]}'}, "unknown features"),
        ({"ROLLBACK_FEATURE_DEPLOYMENTS": '{"ai_coaching": ["Coaching"]}'}, "Deployment name"),
        (
            {"ROLLBACK_FEATURE_DEPLOYMENTS": '{"ai_coaching": ["coaching-engine\\n"]}'},
            "Deployment name",
        ),
    ],
    ids=["on-without-deployments", "unknown-feature", "bad-name", "trailing-newline"],
)
def test_settings_refuse_what_cannot_work(
    rollback_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError, match=message):
        RollbackSettings.from_env()


def test_match_expressions_select_as_kubectl_does() -> None:
    selector = label_selector(
        {
            "matchLabels": {"app": "x"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["a", "b"]},
                {"key": "canary", "operator": "DoesNotExist"},
            ],
        }
    )
    from lightkube.core.selector import build_selector

    assert build_selector(selector) == "app=x,tier in (a,b),!canary"


def test_replica_sets_of_another_owner_are_ignored() -> None:
    api = KubernetesApiStandIn(namespace="ns", token="t")
    api.add_deployment("web", [GOOD], foreign=2)
    # Only revision 1 is the Deployment's; the foreign ones (revision 99) do not count.
    plan = plan_undo(api.deployments["web"], api.replica_sets)
    assert plan.patch is None
    assert plan.reason == "no rollout history found for deployment 'web'"
