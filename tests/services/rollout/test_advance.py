"""``rollout advance`` end to end: a real Prometheus scraping real metrics, stored results."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, start_http_server

from localrun.servers import PrometheusServer, free_port, start_prometheus
from services.cli import build_parser, main
from services.common.database import Database
from services.common.flags import FlagState, get_flag, write_flag
from services.common.metrics import HttpMetrics
from services.common.redis import Redis
from services.impact.assumptions import PRIMARY_METRICS

VISION_ROUTE = "/v1/ml/vision/analyses"


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """Prometheus scraping a process-local exporter every second, as job ``ml-services``.

    Route ``/good`` answers fast and well; route ``/bad`` is slow and fails. The
    vision route answers as ``/good`` does, beside the service's other traffic:
    slow failing scores and a stream of fast health probes.

    A second exporter is ``websocket-manager`` with realtime at 0 %: readiness
    probes only, and no delivery latency at all (every socket is refused).
    """
    registry = CollectorRegistry()
    metrics = HttpMetrics(registry)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    feed_registry = CollectorRegistry()
    feed_metrics = HttpMetrics(feed_registry)
    feed_port = free_port()
    feed_server, feed_thread = start_http_server(
        feed_port, addr="127.0.0.1", registry=feed_registry
    )

    def traffic(index: int) -> None:
        metrics.observe(method="POST", route="/good", status=200, seconds=0.4)
        metrics.observe(method="POST", route="/bad", status=500 if index % 3 else 200, seconds=5)
        metrics.observe(method="POST", route=VISION_ROUTE, status=200, seconds=0.4)
        metrics.observe(method="POST", route="/v1/leads/score", status=500, seconds=5)
        for _ in range(5):
            metrics.observe(method="GET", route="/health/ml", status=200, seconds=0.001)
            feed_metrics.observe(method="GET", route="/health/websocket", status=200, seconds=0.001)

    for index in range(2000):
        traffic(index)
    prom = start_prometheus(
        Path(tmp_path_factory.mktemp("prom")),
        jobs={
            "ml-services": [f"127.0.0.1:{port}"],
            "websocket-manager": [f"127.0.0.1:{feed_port}"],
        },
        scrape_interval="1s",
    )
    # Rates need two samples, and the counters must move between them.
    deadline = time.monotonic() + 30
    query = 'sum(rate(http_requests_total{route="/good"}[1m]))'
    while time.monotonic() < deadline:
        for _ in range(50):
            traffic(1)
        body = httpx.get(f"{prom.url}/api/v1/query", params={"query": query}).json()
        if body["data"]["result"] and float(body["data"]["result"][0]["value"][1]) > 0:
            time.sleep(2.5)  # one more scrape for every series
            break
        time.sleep(0.5)
    else:
        pytest.fail("prometheus never had two scrapes")
    yield prom
    prom.stop()
    for running, serving in ((server, thread), (feed_server, feed_thread)):
        running.shutdown()
        running.server_close()
        serving.join(timeout=5)


async def _cli(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


async def _advance(prometheus_url: str, *options: str) -> int:
    """``rollout advance`` of property_vision in ``local`` against ``prometheus_url``."""
    return await _cli(
        "rollout",
        "advance",
        "--feature",
        "property_vision",
        "--environment",
        "local",
        "--prometheus-url",
        prometheus_url,
        *options,
    )


async def _start_week_one(owner_db: Database, days_ago: float) -> None:
    assert await _cli("flags", "init") == 0
    assert (
        await _cli(
            "rollout",
            "set",
            "--feature",
            "property_vision",
            "--percentage",
            "10",
            "--environment",
            "local",
            "--reason",
            "week 1",
            "--yes",
        )
        == 0
    )
    async with owner_db.unscoped() as conn:
        await conn.execute(
            "UPDATE flag_audit SET changed_at = now() - make_interval(secs => $1) "
            "WHERE command = 'rollout set'",
            days_ago * 86400,
        )


async def _store_result(
    owner_db: Database, metric: str = PRIMARY_METRICS["property_vision"], **fields: float
) -> None:
    result = {
        "n_control": 400,
        "n_treatment": 45,
        "srm_p_value": 0.6,
        "lift": 0.04,
        "seq_lift_ci_low": -0.02,
        "adoption": 0.7,
        **fields,
    }
    async with owner_db.unscoped() as conn:
        await conn.execute(
            "INSERT INTO experiment_results (feature_name, metric, window_start, window_end, "
            "result) VALUES ('property_vision', $1, current_date - 7, current_date, $2)",
            metric,
            result,
        )


async def _decisions(owner_db: Database) -> list[dict[str, object]]:
    async with owner_db.unscoped() as conn:
        rows = await conn.fetch("SELECT * FROM rollout_decisions ORDER BY decision_id")
    return [dict(r) for r in rows]


@pytest.mark.parametrize(
    "selection",
    [
        ("--selector", 'route="/good"'),
        # None given: property_vision reads ml-services' vision routes (as its
        # alerts do), not the failing scores beside them nor the health probes.
        (),
    ],
    ids=["selector", "the feature's own routes"],
)
async def test_criteria_met_advances_and_records_inputs(
    settings_env: dict[str, str],
    prometheus: PrometheusServer,
    redis_client: Redis,
    owner_db: Database,
    capsys: pytest.CaptureFixture[str],
    selection: tuple[str, ...],
) -> None:
    await _start_week_one(owner_db, days_ago=8)
    await _store_result(owner_db)
    code = await _advance(prometheus.url, *selection, "--window", "1m", "--yes")
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "property_vision at 10%: advance" in captured.out, captured.out
    assert await get_flag(redis_client, "property_vision") == FlagState(
        enabled=True, rollout_percentage=25
    )
    [decision] = await _decisions(owner_db)
    assert (decision["decision"], decision["applied"]) == ("advance", True)
    inputs = decision["inputs"]
    assert isinstance(inputs, dict)
    observed = inputs["observations"]
    assert 0.25 < observed["latency_p95_seconds"] <= 0.5  # the 0.4 s observations' bucket
    assert observed["error_rate"] == 0
    assert 7.9 < observed["days_in_stage"] < 8.1
    assert observed["n_treatment"] == 45
    assert "histogram_quantile" in json.dumps(inputs["sources"])


async def test_guardrail_breach_rolls_back(
    settings_env: dict[str, str],
    prometheus: PrometheusServer,
    redis_client: Redis,
    owner_db: Database,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await _start_week_one(owner_db, days_ago=2)
    code = await _advance(prometheus.url, "--selector", 'route="/bad"', "--window", "1m", "--yes")
    assert code == 0
    assert "rollback" in capsys.readouterr().out
    assert await get_flag(redis_client, "property_vision") == FlagState(
        enabled=False, rollout_percentage=10
    )
    [decision] = await _decisions(owner_db)
    assert decision["decision"] == "rollback"
    assert "guardrail" in str(decision["reason"])


async def test_a_rolled_back_feature_is_not_turned_on_again_by_advance(
    settings_env: dict[str, str],
    prometheus: PrometheusServer,
    redis_client: Redis,
    owner_db: Database,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Off with its percentage kept is a rollback; it was read as stage 0 and,
    # with healthy numbers, advanced to on at 10 %.
    await _start_week_one(owner_db, days_ago=8)
    rolled_back = FlagState(enabled=False, rollout_percentage=10)
    await write_flag(redis_client, "property_vision", rolled_back)
    code = await _advance(prometheus.url, "--selector", 'route="/good"', "--window", "1m", "--yes")
    assert code == 1
    err = capsys.readouterr().err
    assert "rollout set --feature property_vision --percentage 10" in err
    # The hint is pasted: it named neither of `rollout set`'s required options.
    [hint] = re.findall(r"`enterprisehub (rollout set [^`]*)`", err)
    args = build_parser().parse_args(hint.replace("WHY", "fixed").split())
    assert (args.environment, args.reason) == ("local", "fixed")
    assert await get_flag(redis_client, "property_vision") == rolled_back
    assert await _decisions(owner_db) == []


async def test_no_prometheus_and_no_results_hold(
    settings_env: dict[str, str],
    redis_client: Redis,
    owner_db: Database,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await _start_week_one(owner_db, days_ago=9)
    code = await _advance(f"http://127.0.0.1:{free_port()}", "--yes")
    assert code == 0
    out = capsys.readouterr().out
    assert "hold" in out
    # Why there is no data is said, not only recorded in the inputs.
    assert "error_rate: prometheus unreachable at http://127.0.0.1:" in out
    assert await get_flag(redis_client, "property_vision") == FlagState(
        enabled=True, rollout_percentage=10
    )
    [decision] = await _decisions(owner_db)
    assert decision["decision"] == "hold"
    assert decision["applied"] is False
    assert "unreachable" in json.dumps(decision["inputs"])


async def test_a_hold_without_prometheus_says_prometheus_url_is_unset(
    settings_env: dict[str, str],
    redis_client: Redis,
    owner_db: Database,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # It printed "no data for error_rate, latency_p95_seconds, ...: holding" and
    # nothing else: the missing setting was only in the recorded inputs.
    monkeypatch.delenv("PROMETHEUS_URL", raising=False)
    await _start_week_one(owner_db, days_ago=9)
    code = await _cli(
        "rollout", "advance", "--feature", "property_vision", "--environment", "local", "--yes"
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "hold" in out
    assert "PROMETHEUS_URL is not set (nor --prometheus-url)" in out


@pytest.mark.parametrize(
    "options",
    [("--selector", 'route="/good'), ("--window", "1 day")],
    ids=["unclosed-selector", "window-with-a-space"],
)
async def test_a_query_prometheus_refuses_is_an_error_not_a_hold(
    settings_env: dict[str, str],
    prometheus: PrometheusServer,
    redis_client: Redis,
    owner_db: Database,
    capsys: pytest.CaptureFixture[str],
    options: tuple[str, str],
) -> None:
    """A mistyped --selector or --window was recorded as a hold ("no data") and
    exited 0: the rollout waited at every run, its cause only in the inputs."""
    await _start_week_one(owner_db, days_ago=9)
    code = await _advance(prometheus.url, *options, "--yes")
    assert code == 1
    err = capsys.readouterr().err
    assert "prometheus refused the query" in err
    assert "check --selector and --window" in err
    assert await _decisions(owner_db) == []
    assert await get_flag(redis_client, "property_vision") == FlagState(
        enabled=True, rollout_percentage=10
    )


async def test_a_declined_decision_is_recorded_and_changes_nothing(
    settings_env: dict[str, str],
    prometheus: PrometheusServer,
    redis_client: Redis,
    owner_db: Database,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await _start_week_one(owner_db, days_ago=2)
    # No --yes and no terminal (pytest's stdin): the rollback is refused, not applied.
    code = await _advance(prometheus.url, "--selector", 'route="/bad"', "--window", "1m")
    assert code != 0
    assert "confirmation" in capsys.readouterr().err
    assert await get_flag(redis_client, "property_vision") == FlagState(
        enabled=True, rollout_percentage=10
    )
    [decision] = await _decisions(owner_db)
    assert (decision["decision"], decision["applied"]) == ("rollback", False)
    assert "guardrail" in str(decision["reason"])
    assert decision["inputs"]["observations"]["error_rate"] > 0.1  # type: ignore[index]


@pytest.mark.parametrize(
    ("arms", "stored_srm_p_value", "verdict"),
    [
        # An honest 10 % split analysed with --expected-split 0.5: its stored
        # p of 1e-29 held the rollout forever as a "sample-ratio mismatch".
        ((180, 20), 1.1e-29, "advance"),
        # Half the tenants in treatment at 10 % (assignment is broken), analysed
        # with the same wrong 0.5: its stored p of 0.38 hid the mismatch.
        ((220, 200), 0.38, "hold"),
    ],
    ids=["honest-split-wrong-stored-test", "broken-split-wrong-stored-test"],
)
async def test_the_sample_ratio_is_tested_against_the_stages_share(
    settings_env: dict[str, str],
    prometheus: PrometheusServer,
    redis_client: Redis,
    owner_db: Database,
    capsys: pytest.CaptureFixture[str],
    arms: tuple[int, int],
    stored_srm_p_value: float,
    verdict: str,
) -> None:
    await _start_week_one(owner_db, days_ago=8)
    await _store_result(
        owner_db,
        n_control=arms[0],
        n_treatment=arms[1],
        srm_p_value=stored_srm_p_value,
        expected_split=0.5,
    )
    code = await _advance(prometheus.url, "--selector", 'route="/good"', "--window", "1m", "--yes")
    captured = capsys.readouterr()
    assert code == 0, captured.err
    [decision] = await _decisions(owner_db)
    assert decision["decision"] == verdict, decision["reason"]
    inputs = decision["inputs"]
    assert isinstance(inputs, dict)
    assert inputs["sources"]["srm"] == {
        "expected_split": 0.1,
        "stored_expected_split": 0.5,
        "stored_srm_p_value": stored_srm_p_value,
    }
    if verdict == "hold":
        assert "sample-ratio mismatch" in str(decision["reason"])
        assert inputs["observations"]["srm_p_value"] < 1e-6
    else:
        assert inputs["observations"]["srm_p_value"] == pytest.approx(1.0)


@pytest.mark.parametrize("primary_first", [True, False], ids=["primary-first", "primary-last"])
async def test_the_stage_is_judged_on_the_features_primary_metric_only(
    settings_env: dict[str, str],
    prometheus: PrometheusServer,
    redis_client: Redis,
    owner_db: Database,
    capsys: pytest.CaptureFixture[str],
    primary_first: bool,
) -> None:
    # A latency analysis stored after the decision metric's decided the stage.
    await _start_week_one(owner_db, days_ago=8)
    primary = PRIMARY_METRICS["property_vision"]
    stores = [
        _store_result(owner_db),
        # Numbers that would hold the stage: too few tenants, low adoption.
        _store_result(owner_db, "analysis_latency_p95", adoption=0.1, n_treatment=3),
    ]
    for store in stores if primary_first else stores[::-1]:
        await store
    code = await _advance(prometheus.url, "--selector", 'route="/good"', "--window", "1m", "--yes")
    captured = capsys.readouterr()
    assert code == 0, captured.err
    [decision] = await _decisions(owner_db)
    assert decision["decision"] == "advance", decision["reason"]
    inputs = decision["inputs"]
    assert isinstance(inputs, dict)
    assert inputs["sources"]["experiment_metric"] == primary
    assert inputs["sources"]["experiment_result"]["metric"] == primary
    assert inputs["observations"]["adoption"] == 0.7


async def test_a_feature_without_traffic_at_zero_advances_on_its_services_health(
    settings_env: dict[str, str],
    prometheus: PrometheusServer,
    redis_client: Redis,
    owner_db: Database,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Realtime at 0 % has no delivery latency (websocket-manager refuses every
    # socket): advance held it there forever with "no data for latency_p95_seconds".
    assert await _cli("flags", "init") == 0
    code = await _cli(
        "rollout", "advance", "--feature", "realtime_intelligence", "--environment", "local",
        "--prometheus-url", prometheus.url, "--window", "5m", "--yes",
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "realtime_intelligence at 0%: advance" in captured.out, captured.out
    assert await get_flag(redis_client, "realtime_intelligence") == FlagState(
        enabled=True, rollout_percentage=10
    )
    [decision] = await _decisions(owner_db)
    inputs = decision["inputs"]
    assert isinstance(inputs, dict)
    assert inputs["observations"]["service_up"] == 1
    assert inputs["observations"]["error_rate"] == 0
    assert inputs["observations"]["latency_p95_seconds"] is None
    queries = inputs["sources"]["prometheus"]["queries"]
    assert queries["service_up"] == 'min(up{job="websocket-manager"})'
    # All of the service's answers: its readiness probes turn 503 when a store is down.
    assert 'http_requests_total{job="websocket-manager"}' in queries["error_rate"]


async def test_full_rollout_reports_adoption_and_daily_active_usage_from_the_stored_rows(
    settings_env: dict[str, str],
    prometheus: PrometheusServer,
    redis_client: Redis,
    owner_db: Database,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """At 100 % no experiment has a control arm: adoption and daily active usage are
    measured from ``phase3_business_metrics`` over the stage's whole days, and held
    against the seed's 80%+ and 60%+."""
    await _start_week_one(owner_db, days_ago=8)
    set_full = (
        "rollout set --feature property_vision --percentage 100 --environment local "
        "--reason week-4 --yes"
    )
    assert await _cli(*set_full.split()) == 0
    async with owner_db.unscoped() as conn:
        await conn.execute(
            "UPDATE flag_audit SET changed_at = now() - interval '8 days' "
            "WHERE command = 'rollout set'"
        )
    today = datetime.now(UTC).date()
    # The whole days since the stage began, up to yesterday: 7 of them.
    first = today - timedelta(days=7)
    async with owner_db.unscoped() as conn:
        await conn.executemany(
            "INSERT INTO phase3_business_metrics (tenant_id, metric_date, feature_name, "
            "usage_count, success_count, revenue_impact, operating_cost) "
            "VALUES ($1, $2, $3, $4, 0, 0, 0)",
            [("tenant-a", first + timedelta(days=n), "property_vision", 2) for n in range(7)]
            + [
                ("tenant-b", first, "property_vision", 1),
                ("tenant-c", first, "ai_coaching", 4),
                ("tenant-d", first, "ai_coaching", 4),
            ],
        )
    code = await _advance(prometheus.url, "--selector", 'route="/good"', "--window", "1m", "--yes")
    captured = capsys.readouterr()
    assert code == 0, captured.err
    [*_, decision] = await _decisions(owner_db)
    assert decision["decision"] == "hold"
    assert decision["reason"] == "adoption 50.0% below 80%"
    inputs = decision["inputs"]
    assert isinstance(inputs, dict)
    assert inputs["observations"]["adoption"] == 0.5
    assert inputs["observations"]["daily_active_usage"] == (7 + 1) / (7 * 4)
    assert inputs["sources"]["usage"] == {
        "start": first.isoformat(),
        "end": (today - timedelta(days=1)).isoformat(),
        "tenants": 4,
        "days": 7,
    }
    assert await get_flag(redis_client, "property_vision") == FlagState(
        enabled=True, rollout_percentage=100
    )
