"""Feature flags: records, the stack seed, bucketing, the local copy, OpenFeature, exposures."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from growthbook import GrowthBook
from openfeature import api as openfeature_api
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from prometheus_client import CollectorRegistry

from localrun.servers import start_redis
from services.common.database import Database, DatabaseUnavailable
from services.common.flags import (
    CHANNEL,
    FEATURES,
    FlagCache,
    FlagState,
    FlagWriteConflict,
    InvalidFlag,
    Reason,
    bucket,
    get_flag,
    get_flags,
    init_flags,
    parse_seed,
    read_flags,
    write_flag,
    write_flags_if_unchanged,
)
from services.common.flags import exposure as exposure_module
from services.common.flags.exposure import ExposureRecorder
from services.common.flags.provider import DecisionMetricsHook, EnterpriseHubProvider
from services.common.redis import Redis, close_redis, create_redis

TENANTS = [f"tenant-{index:05d}" for index in range(10_000)]


async def _until(predicate: Callable[[], bool], seconds: float = 5.0) -> None:
    async with asyncio.timeout(seconds):
        while not predicate():  # noqa: ASYNC110 - polls a plain predicate
            await asyncio.sleep(0.01)


# -- records and the seed ----------------------------------------------------------


async def test_init_without_seed_creates_every_feature_disabled(redis_client: Redis) -> None:
    await init_flags(redis_client)
    states = [await get_flag(redis_client, feature) for feature in FEATURES]
    assert states == [FlagState(enabled=False, rollout_percentage=0)] * 4


async def test_init_creates_missing_flags_from_the_seed_and_never_overwrites(
    redis_client: Redis,
) -> None:
    await redis_client.set("feature_flag:ai_coaching", b'{"enabled":true,"rollout_percentage":25}')
    seed = parse_seed(
        '{"ai_coaching": {"enabled": false}, "property_vision": '
        '{"enabled": true, "rolloutPercentage": 10}}'
    )
    created = await init_flags(redis_client, seed=seed)
    assert created == {
        "realtime_intelligence": True,
        "property_vision": True,
        "churn_prevention": True,
        "ai_coaching": False,
    }
    assert await get_flag(redis_client, "ai_coaching") == FlagState(
        enabled=True, rollout_percentage=25
    )
    assert await get_flag(redis_client, "property_vision") == FlagState(
        enabled=True, rollout_percentage=10
    )
    assert set((await init_flags(redis_client, seed=seed)).values()) == {False}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ('{"nope": true}', "unknown feature"),
        ('{"ai_coaching": {"enabled": true, "rolloutPercentage": 150}}', "between 0 and 100"),
        ('{"ai_coaching": {"enabled": true, "extra": 1}}', "boolean or"),
        ("[1]", "JSON object"),
        ("{", "not JSON"),
    ],
)
def test_bad_seed_is_a_clear_error(raw: str, message: str) -> None:
    with pytest.raises(InvalidFlag, match=message):
        parse_seed(raw)


def test_boolean_seed_is_all_or_nothing() -> None:
    seed = parse_seed({"ai_coaching": True})
    assert seed["ai_coaching"] == FlagState(enabled=True, rollout_percentage=100)
    assert seed["churn_prevention"] == FlagState()


async def test_malformed_record_is_reported(redis_client: Redis) -> None:
    await redis_client.set("feature_flag:ai_coaching", b'{"enabled":true,"rollout_percentage":150}')
    with pytest.raises(InvalidFlag):
        await get_flag(redis_client, "ai_coaching")
    with pytest.raises(InvalidFlag):
        await get_flag(redis_client, "ai_coachin")


async def test_a_key_of_another_type_is_an_invalid_record_not_a_missing_one(
    redis_client: Redis,
) -> None:
    """A hand edit that makes a flag key a hash: GET refused it with WRONGTYPE
    (an error no reader expected) and MGET read it as missing."""
    await init_flags(redis_client)
    await redis_client.delete("feature_flag:ai_coaching")
    await redis_client.hset("feature_flag:ai_coaching", "enabled", "false")
    with pytest.raises(InvalidFlag, match="not a string key"):
        await get_flag(redis_client, "ai_coaching")
    stored = await read_flags(redis_client)
    assert "ai_coaching" in stored.invalid
    assert "ai_coaching" not in stored.states
    # The keeper puts the record back over it, as over any invalid record.
    await write_flags_if_unchanged(redis_client, stored, {"ai_coaching": FlagState()})
    assert await get_flag(redis_client, "ai_coaching") == FlagState()


# -- conditional writes ------------------------------------------------------------


async def _drop_other_connections(redis_client: Redis) -> None:
    """What a failover does to every connection but the one asking (Redis closes them)."""
    await redis_client.client_kill_filter(_type="normal", skipme=True)


async def test_a_conditional_write_stores_announces_and_leaves_the_rest(
    redis_client: Redis,
) -> None:
    await init_flags(redis_client, ["ai_coaching", "property_vision"])
    await redis_client.delete("feature_flag:churn_prevention")
    stored = await read_flags(redis_client)
    on = FlagState(enabled=True, rollout_percentage=10)
    pubsub = redis_client.pubsub()
    await pubsub.subscribe(CHANNEL)
    await pubsub.get_message(timeout=1)  # the subscription's confirmation
    await write_flags_if_unchanged(
        redis_client, stored, {"ai_coaching": on, "churn_prevention": on}
    )
    flags = await get_flags(redis_client)
    assert (flags["ai_coaching"], flags["churn_prevention"]) == (on, on)  # a missing one too
    assert flags["property_vision"] == FlagState()
    announced = [await pubsub.get_message(timeout=1) for _ in range(2)]
    assert sorted(m["data"] for m in announced if m) == [b"ai_coaching", b"churn_prevention"]
    await pubsub.aclose()


async def test_a_flag_changed_after_the_read_is_not_written_over_even_after_a_failover(
    redis_client: Redis,
) -> None:
    """Between a locked writer's read and its write, a writer outside the lock
    changes a flag, and every connection is dropped (what a failover does): the
    write is refused. (A WATCH lived and died with its connection: redis-py's
    health check reconnected a lost one silently, and the write went through.)"""
    await init_flags(redis_client)
    stored = await read_flags(redis_client)
    edited = FlagState(enabled=True, rollout_percentage=5)
    await write_flag(redis_client, "ai_coaching", edited)
    await _drop_other_connections(redis_client)
    with pytest.raises(FlagWriteConflict):
        await write_flags_if_unchanged(
            redis_client, stored, {"ai_coaching": FlagState(), "property_vision": FlagState()}
        )
    assert (await get_flags(redis_client))["ai_coaching"] == edited


# -- bucketing ---------------------------------------------------------------------


def _growthbook_on(feature: str, percentage: float) -> list[bool]:
    rule = {
        "force": True,
        "hashAttribute": "id",
        "seed": feature,
        "hashVersion": 2,
        "range": [0, percentage / 100],
    }
    features = {feature: {"defaultValue": False, "rules": [rule]}}
    decisions = []
    for tenant in TENANTS[:2000]:
        gb = GrowthBook(attributes={"id": tenant}, features=features)
        decisions.append(bool(gb.is_on(feature)))
    return decisions


@pytest.mark.parametrize("percentage", [0.01, 10, 25, 50, 99.99])
def test_assignment_is_growthbooks_v2_rule_exactly(percentage: float) -> None:
    ours = [bucket("ai_coaching", t) < round(percentage * 100) for t in TENANTS[:2000]]
    assert ours == _growthbook_on("ai_coaching", percentage)


def test_raising_only_adds_tenants_and_lowering_removes_the_newest() -> None:
    def reached(percentage: float) -> set[str]:
        return {t for t in TENANTS if bucket("property_vision", t) < percentage * 100}

    stages = [reached(p) for p in (10, 25, 50, 100)]
    for smaller, larger in itertools.pairwise(stages):
        assert smaller < larger
    # 25% -> 10% removes exactly the tenants 10% -> 25% added.
    assert stages[1] - stages[0] == reached(25) - reached(10)
    assert len(stages[3]) == len(TENANTS)
    for expected, got in zip((0.10, 0.25, 0.50), stages, strict=False):
        assert abs(len(got) / len(TENANTS) - expected) < 0.015


def test_features_are_assigned_independently() -> None:
    a = {t for t in TENANTS if bucket("property_vision", t) < 5000}
    b = {t for t in TENANTS if bucket("ai_coaching", t) < 5000}
    # Independent halves overlap on about a quarter of the tenants (sd ~ 0.0043).
    assert abs(len(a & b) / len(TENANTS) - 0.25) < 0.02


# -- the local copy ----------------------------------------------------------------


@pytest_asyncio.fixture
async def cache(redis_client: Redis) -> AsyncIterator[FlagCache]:
    flag_cache = FlagCache(redis_client, registry=CollectorRegistry(), refresh_interval=30)
    async with flag_cache.running():
        yield flag_cache


async def test_a_write_reaches_the_local_copy_through_pub_sub(
    redis_client: Redis, cache: FlagCache
) -> None:
    assert cache.synced
    assert cache.evaluate("ai_coaching", "tenant-1").reason is Reason.ERROR
    await write_flag(redis_client, "ai_coaching", FlagState(enabled=True, rollout_percentage=100))
    await _until(lambda: cache.is_enabled("ai_coaching", "tenant-1"))
    decision = cache.evaluate("ai_coaching", "tenant-1")
    assert (decision.enabled, decision.reason, decision.variant) == (
        True,
        Reason.TARGETING_MATCH,
        "treatment",
    )
    await write_flag(redis_client, "ai_coaching", FlagState(enabled=False, rollout_percentage=100))
    await _until(lambda: not cache.is_enabled("ai_coaching", "tenant-1"))
    assert cache.evaluate("ai_coaching", "tenant-1").reason is Reason.DEFAULT


async def test_a_key_of_another_type_keeps_the_last_state_and_later_changes_arrive(
    redis_client: Redis,
) -> None:
    """Its WRONGTYPE error ended the copy's task: every later change, the kill
    switch included, never arrived, and nothing said the copy was frozen."""
    on = FlagState(enabled=True, rollout_percentage=100)
    await write_flag(redis_client, "churn_prevention", on)
    flag_cache = FlagCache(redis_client, registry=CollectorRegistry(), refresh_interval=0.2)
    async with flag_cache.running():
        assert flag_cache.state("churn_prevention") == on
        await redis_client.delete("feature_flag:churn_prevention")
        await redis_client.hset("feature_flag:churn_prevention", "enabled", "false")
        await redis_client.publish(CHANNEL, "churn_prevention")
        await asyncio.sleep(0.5)  # a notice and two full reads of the junk key
        assert flag_cache.state("churn_prevention") == on
        await write_flag(redis_client, "churn_prevention", FlagState())
        await _until(lambda: flag_cache.state("churn_prevention") == FlagState())


async def test_an_unexpected_error_marks_the_copy_stale_and_the_copy_recovers(
    redis_client: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Errors other than an outage (NOPERM after an ACL change, MASTERDOWN, a bug)
    ended the task for good."""
    flag_cache = FlagCache(redis_client, registry=CollectorRegistry(), refresh_interval=30)
    follow = flag_cache._follow
    failures = iter([RuntimeError("NOPERM this user has no permissions")])

    async def failing_once() -> None:
        for error in failures:
            raise error
        await follow()

    monkeypatch.setattr(flag_cache, "_follow", failing_once)
    async with flag_cache.running(first_sync_timeout=0):
        await _until(lambda: flag_cache.stale)
        await _until(lambda: flag_cache.synced and not flag_cache.stale)
        await write_flag(redis_client, "ai_coaching", FlagState(enabled=True))
        await _until(lambda: flag_cache.state("ai_coaching") == FlagState(enabled=True))


async def test_each_features_state_is_exported_as_a_ratio_and_a_switch(
    redis_client: Redis,
) -> None:
    registry = CollectorRegistry()

    def exported(feature: str) -> tuple[float | None, float | None]:
        labels = {"feature": feature}
        return (
            registry.get_sample_value("feature_flag_enabled", labels),
            registry.get_sample_value("feature_flag_rollout_ratio", labels),
        )

    flag_cache = FlagCache(redis_client, registry=registry, refresh_interval=30)
    # Before any read every feature is off at 0, as its decisions are.
    assert {feature: exported(feature) for feature in FEATURES} == dict.fromkeys(
        FEATURES, (0.0, 0.0)
    )
    await write_flag(
        redis_client, "property_vision", FlagState(enabled=True, rollout_percentage=12.5)
    )
    async with flag_cache.running():
        assert exported("property_vision") == (1.0, 0.125)
        await write_flag(
            redis_client, "property_vision", FlagState(enabled=False, rollout_percentage=12.5)
        )
        await _until(lambda: exported("property_vision")[0] == 0)
        # The kill switch is off; the share it will return to is kept.
        assert exported("property_vision") == (0.0, 0.125)
        await write_flag(
            redis_client, "ai_coaching", FlagState(enabled=True, rollout_percentage=100)
        )
        await _until(lambda: exported("ai_coaching") == (1.0, 1.0))
    samples = {
        sample.labels["feature"]
        for family in registry.collect()
        if family.name in {"feature_flag_enabled", "feature_flag_rollout_ratio"}
        for sample in family.samples
    }
    assert samples == set(FEATURES)


async def test_split_decisions_follow_the_buckets(redis_client: Redis, cache: FlagCache) -> None:
    state = FlagState(enabled=True, rollout_percentage=25)
    await write_flag(redis_client, "churn_prevention", state)
    await _until(lambda: cache.state("churn_prevention") is not None)
    for tenant in TENANTS[:500]:
        decision = cache.evaluate("churn_prevention", tenant)
        assert decision.reason is Reason.SPLIT
        assert decision.enabled is (bucket("churn_prevention", tenant) < 2500)
        assert decision.variant == ("treatment" if decision.enabled else "control")
        assert cache.is_enabled("churn_prevention", tenant) is decision.enabled


async def test_redis_outage_keeps_the_last_known_state_and_says_so(tmp_path: Path) -> None:
    server = start_redis(tmp_path)
    client = create_redis(server.url, socket_timeout=0.5)
    registry = CollectorRegistry()
    try:
        await write_flag(client, "ai_coaching", FlagState(enabled=True, rollout_percentage=100))
        flag_cache = FlagCache(client, registry=registry, refresh_interval=0.2)
        async with flag_cache.running():
            assert flag_cache.is_enabled("ai_coaching", "tenant-1")
            assert registry.get_sample_value("feature_flags_stale") == 0
            assert not flag_cache.stale
            server.stop()
            await _until(lambda: registry.get_sample_value("feature_flags_stale") == 1)
            assert flag_cache.stale
            assert flag_cache.is_enabled("ai_coaching", "tenant-1")
            assert not flag_cache.is_enabled("property_vision", "tenant-1")
            assert registry.get_sample_value("feature_flag_sync_failures_total") >= 1
    finally:
        server.stop()
        await close_redis(client)


async def test_a_flag_redis_lost_is_off_and_reported_missing_until_it_is_back(
    redis_client: Redis,
) -> None:
    registry = CollectorRegistry()

    def missing(feature: str) -> float | None:
        return registry.get_sample_value("feature_flag_missing", {"feature": feature})

    on = FlagState(enabled=True, rollout_percentage=100)
    flag_cache = FlagCache(redis_client, registry=registry, refresh_interval=0.2)
    # Not read yet: unknown, not missing (FeatureFlagsStale covers that).
    assert {missing(feature) for feature in FEATURES} == {0.0}
    await write_flag(redis_client, "ai_coaching", on)
    async with flag_cache.running():
        assert missing("ai_coaching") == 0
        assert missing("property_vision") == 1
        # A FLUSHALL announces nothing: the periodic read finds it gone.
        await redis_client.flushdb()
        await _until(lambda: missing("ai_coaching") == 1)
        assert not flag_cache.is_enabled("ai_coaching", "tenant-1")
        assert registry.get_sample_value("feature_flags_stale") == 0
        await write_flag(redis_client, "ai_coaching", on)
        await _until(lambda: missing("ai_coaching") == 0)
        assert flag_cache.is_enabled("ai_coaching", "tenant-1")


async def test_nothing_known_means_disabled(tmp_path: Path) -> None:
    server = start_redis(tmp_path)
    server.stop()
    client = create_redis(server.url, socket_timeout=0.2)
    registry = CollectorRegistry()
    try:
        flag_cache = FlagCache(client, registry=registry)
        async with flag_cache.running(first_sync_timeout=0.5):
            assert not flag_cache.synced
            for feature in FEATURES:
                assert flag_cache.evaluate(feature, "tenant-1").enabled is False
            assert registry.get_sample_value("feature_flags_stale") == 1
    finally:
        await close_redis(client)


# -- OpenFeature -------------------------------------------------------------------


async def test_openfeature_client_gives_values_reasons_and_variants(
    redis_client: Redis, cache: FlagCache
) -> None:
    registry = CollectorRegistry()
    provider = EnterpriseHubProvider(cache, hooks=[DecisionMetricsHook(registry)])
    openfeature_api.set_provider(provider, domain="flags-test")
    client = openfeature_api.get_client(domain="flags-test")
    half = FlagState(enabled=True, rollout_percentage=50)
    await write_flag(redis_client, "property_vision", half)
    await write_flag(redis_client, "ai_coaching", FlagState(enabled=True, rollout_percentage=100))
    await _until(lambda: cache.state("ai_coaching") is not None)
    inside = next(t for t in TENANTS if bucket("property_vision", t) < 5000)
    outside = next(t for t in TENANTS if bucket("property_vision", t) >= 5000)

    details = client.get_boolean_details("property_vision", False, EvaluationContext(inside))
    assert (details.value, details.reason, details.variant) == (True, "SPLIT", "treatment")
    details = client.get_boolean_details("property_vision", True, EvaluationContext(outside))
    assert (details.value, details.reason, details.variant) == (False, "SPLIT", "control")
    assert client.get_string_value("property_vision", "x", EvaluationContext(outside)) == "control"
    details = client.get_boolean_details("ai_coaching", False, EvaluationContext(outside))
    assert (details.value, details.reason) == (True, "TARGETING_MATCH")
    details = client.get_boolean_details("churn_prevention", False, EvaluationContext(inside))
    assert (details.value, details.reason, details.error_code) == (
        False,
        "ERROR",
        ErrorCode.FLAG_NOT_FOUND,
    )
    details = client.get_boolean_details("ai_coaching", False, EvaluationContext())
    assert details.error_code == ErrorCode.TARGETING_KEY_MISSING
    details = client.get_boolean_details("no_such_flag", False, EvaluationContext(inside))
    assert details.error_code == ErrorCode.FLAG_NOT_FOUND
    # Flags are booleans: any other type answers its default as a type mismatch.
    for details in (
        client.get_integer_details("ai_coaching", 3, EvaluationContext(inside)),
        client.get_float_details("ai_coaching", 0.5, EvaluationContext(inside)),
        client.get_object_details("ai_coaching", {"k": 1}, EvaluationContext(inside)),
    ):
        assert details.value in (3, 0.5, {"k": 1})
        assert details.error_code == ErrorCode.TYPE_MISMATCH
    assert (
        registry.get_sample_value(
            "feature_flag_evaluations_total", {"feature": "property_vision", "reason": "SPLIT"}
        )
        == 3
    )


# -- exposures ---------------------------------------------------------------------


async def test_first_exposure_is_recorded_once_per_tenant(
    redis_client: Redis, db: Database, owner_db: Database
) -> None:
    await write_flag(redis_client, "ai_coaching", FlagState(enabled=True, rollout_percentage=25))
    caches = []
    for _ in range(2):  # two replicas see the same tenants
        recorder = ExposureRecorder(db, registry=CollectorRegistry())
        caches.append(
            (
                recorder,
                FlagCache(redis_client, registry=CollectorRegistry(), exposure=recorder.record),
            )
        )
    for recorder, replica in caches:
        await replica.refresh()
        for _ in range(3):
            for tenant in ("tenant-a", "tenant-b"):
                replica.evaluate("ai_coaching", tenant)
        replica.evaluate("property_vision", "tenant-a")  # unknown flag: no exposure
        await recorder.drain()
    async with owner_db.unscoped() as conn:
        rows = await conn.fetch(
            "SELECT tenant_id, user_id, feature_name, variant, bucket, rollout_percentage "
            "FROM ab_test_assignments ORDER BY tenant_id"
        )
    assert [(r["tenant_id"], r["user_id"], r["feature_name"]) for r in rows] == [
        ("tenant-a", "*", "ai_coaching"),
        ("tenant-b", "*", "ai_coaching"),
    ]
    for row in rows:
        expected = bucket("ai_coaching", row["tenant_id"])
        assert row["bucket"] == expected
        assert row["variant"] == ("treatment" if expected < 2500 else "control")
        assert float(row["rollout_percentage"]) == 25
    async with db.tenant("tenant-a") as conn:
        assert await conn.fetchval("SELECT count(*) FROM ab_test_assignments") == 1


async def _assigned(owner_db: Database) -> list[str]:
    async with owner_db.unscoped() as conn:
        rows = await conn.fetch("SELECT tenant_id FROM ab_test_assignments ORDER BY tenant_id")
    return [row["tenant_id"] for row in rows]


async def test_an_exposure_the_full_queue_refused_is_offered_again(
    redis_client: Redis, db: Database, owner_db: Database
) -> None:
    """The cache marked a first exposure done whatever became of it: refused by a
    full queue, the tenant was missing from the experiment's units for good."""
    await write_flag(redis_client, "ai_coaching", FlagState(enabled=True, rollout_percentage=25))
    recorder = ExposureRecorder(db, registry=CollectorRegistry(), max_pending=1)
    replica = FlagCache(redis_client, registry=CollectorRegistry(), exposure=recorder.record)
    await replica.refresh()
    replica.evaluate("ai_coaching", "tenant-a")
    replica.evaluate("ai_coaching", "tenant-b")  # the queue is full
    assert recorder.dropped._value.get() == 1
    await recorder.drain()
    replica.evaluate("ai_coaching", "tenant-b")
    replica.evaluate("ai_coaching", "tenant-b")  # once is enough
    await recorder.drain()
    assert await _assigned(owner_db) == ["tenant-a", "tenant-b"]
    assert recorder.written._value.get() == 2


async def test_an_exposure_postgres_could_not_take_is_written_when_it_can(
    redis_client: Redis, db: Database, owner_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    await write_flag(redis_client, "ai_coaching", FlagState(enabled=True, rollout_percentage=25))
    recorder = ExposureRecorder(db, registry=CollectorRegistry())
    write = recorder.write
    outage = iter([DatabaseUnavailable("postgres is restarting")])

    async def write_after_an_outage(exposure: Any) -> None:
        for error in outage:
            raise error
        await write(exposure)

    monkeypatch.setattr(recorder, "write", write_after_an_outage)
    monkeypatch.setattr(exposure_module, "RETRY_SECONDS", 0.05)
    replica = FlagCache(redis_client, registry=CollectorRegistry(), exposure=recorder.record)
    await replica.refresh()
    async with recorder.running():
        replica.evaluate("ai_coaching", "tenant-a")
        await _until(lambda: recorder.written._value.get() == 1)
    assert await _assigned(owner_db) == ["tenant-a"]
    assert recorder.dropped._value.get() == 0
