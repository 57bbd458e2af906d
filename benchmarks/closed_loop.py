"""W7 closed loop: from a fault in one feature to its flag off, with nobody watching.

    .venv/bin/python -m benchmarks.closed_loop [--scenario NAME] [--factor 60] [--json]

Everything is real and on loopback: Postgres and Redis, the services under
``enterprisehub serve`` (two replicas of the faulted one), Prometheus with the
project's rule files, Alertmanager with the project's routing, rollback-handler.
Only time is compressed: every duration of the rules (``for``, ranges, offsets)
is divided by ``--factor`` (``alerts.scale``), and scraping and evaluation run
every second, so "p95 above 3 s for 5 minutes" becomes "for 5 seconds".

The run: traffic flows and the feature is on for every tenant; at t=0 a fault
(``FAULT_INJECTION_FILE``: latency or errors on the feature's route) starts;
the harness watches, through each system's own API, the alert go pending and
firing (Prometheus), the handler receive it (an incident row of that alert),
the flag turn off and no other (Redis), every replica stop serving the feature
(a probe each served before the fault now answers 403 ``feature_disabled``),
then ends the fault and waits for the alert to resolve.
It prints the time of each step from the fault's start.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from alerts.catalog import load_rule_file, rule_files
from alerts.scale import scale_rule_file, scaled
from benchmarks.machine import cpu_model
from localrun.children import Child, ChildProcesses, wait_http_ok
from localrun.datastores import (
    DEFAULT_MODEL_DIR,
    Datastores,
    enterprisehub_command,
    run_setup_step,
    start_datastores,
)
from localrun.monitoring import ROLLBACK_WEBHOOK_PATH, start_monitoring
from localrun.servers import free_port
from services.common.auth import issue_token
from services.common.scopes import LEADS_SCORE, VISION_ANALYZE
from services.common.settings import AuthSettings

TENANT = "loop-tenant"
WEBHOOK_TOKEN = secrets.token_hex(32)


@dataclass(frozen=True, slots=True)
class Scenario:
    """One feature's fault and the rollback trigger that must catch it."""

    name: str
    service: str  # `enterprisehub serve <service>`
    job: str  # the Prometheus job (the catalog's service name)
    feature: str
    alertname: str
    route_prefix: str
    fault: dict[str, float]
    #: (method, path, json body) of the load: requests the rule measures.
    request: tuple[str, str, dict[str, Any] | None]
    #: (method, path, json body) of a request the feature serves (200) while its
    #: flag is on and refuses (403 ``feature_disabled``) once it is off; None when
    #: the feature's routes are not behind a flag (the loop ends at "flag off").
    probe: tuple[str, str, dict[str, Any] | None] | None = None
    #: Concurrent load loops, each loop's pause between requests, and how far
    #: apart the loops start (seconds). Slow requests from loops started together
    #: finish together: the shortened rate windows would then see bursts and
    #: gaps (NaN quantiles that reset the alert's pending state), not a rate.
    concurrency: int = 2
    pause_s: float = 0.05
    stagger_s: float = 0.0
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def gated(self) -> bool:
        """Whether the loop must see every replica stop serving the feature."""
        return self.probe is not None


SCENARIOS: dict[str, Scenario] = {
    "errors": Scenario(
        name="errors",
        service="ml",
        job="ml-services",
        feature="all",
        alertname="PlatformErrorRateRollback",
        route_prefix="/v1/leads/",
        fault={"error_rate": 1.0},
        # Lead scoring itself is not behind a flag: the loop ends at "flag off".
        request=(
            "POST",
            "/v1/leads/score",
            {
                "lead_id": "lead-1",
                "features": {
                    "source": "referral",
                    "timeline": "immediate",
                    "budget_usd": 450000.0,
                    "pre_approved": True,
                    "response_time_minutes": 12.0,
                    "email_opens": 3,
                    "email_clicks": 1,
                    "sms_replies": 0,
                    "calls_connected": 1,
                    "property_views": 12,
                    "saved_searches": 2,
                    "showings_attended": 1,
                    "days_since_last_contact": 2,
                    "days_since_created": 10,
                },
            },
        ),
    ),
    # Property vision slows to 4 s a request (the trigger: p95 above 3 s for 5
    # minutes). The load posts analyses without a photo, which the route refuses
    # 422 after its flag check and before any Claude call: only the duration
    # counts, and no 5xx can fire another rule (PlatformErrorRateRollback would
    # turn every flag off and prove nothing about this one). Claude must look
    # configured for the route to get that far (else 503 claude_not_configured),
    # so the replicas get a key and a base URL where nothing listens: no request
    # ever leaves. The probe lists a property's analyses (200 from Postgres)
    # until the flag is off, then 403 feature_disabled.
    "latency": Scenario(
        name="latency",
        service="ml",
        job="ml-services",
        feature="property_vision",
        alertname="VisionLatencyRollback",
        route_prefix="/v1/ml/vision/",
        fault={"latency_seconds": 4.0},
        request=("POST", "/v1/ml/vision/analyses", {"property_id": "loop-property"}),
        probe=("GET", "/v1/ml/vision/analyses?property_id=loop-property", None),
        # Six loops, a request every 4.5 s each while the fault lasts, started
        # 0.75 s apart: a slow request ends every 0.75 s, so the shortened
        # 5-second rate window always holds several.
        concurrency=6,
        pause_s=0.5,
        stagger_s=0.75,
        extra_env={
            "ANTHROPIC_API_KEY": "closed-loop-key-never-sent",
            "ANTHROPIC_BASE_URL": "http://127.0.0.1:9",
        },
    ),
}


@dataclass
class Timeline:
    """Seconds from the fault's start to each step (None: not seen)."""

    pending: float | None = None
    firing: float | None = None
    #: From the incident row's received_at (the handler's transaction start).
    webhook_received: float | None = None
    flag_off: float | None = None
    #: Start of the first probe round every replica refused (403 feature_disabled).
    replicas_stopped: float | None = None
    #: Whether the flags of the other features were still on when this one went
    #: off (a rollback of one feature must leave the rest alone).
    other_flags_on: bool | None = None
    #: Whether every replica served the probe (200) before the fault: the
    #: "stopped serving" step means something only if it did.
    served_before: bool | None = None
    fault_ended: float | None = None
    resolved: float | None = None


def _token() -> tuple[dict[str, str], str]:
    env = {"JWT_SECRET_KEY": secrets.token_hex(32), "JWT_KEY_ID": "loop"}
    settings = AuthSettings.from_env(
        jwt_secret_key=env["JWT_SECRET_KEY"], jwt_key_id=env["JWT_KEY_ID"]
    )
    token = issue_token(
        settings,
        tenant_id=TENANT,
        subject="loop-client",
        # Scoring for the ingest scenario, vision for the latency one.
        scopes=[LEADS_SCORE, VISION_ANALYZE],
        ttl_seconds=3600,
    )
    return env, token


def _write_rules(directory: Path, factor: float) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for path in rule_files():
        out = directory / path.name
        out.write_text(yaml.safe_dump(scale_rule_file(load_rule_file(path), factor)))
        written.append(out)
    return written


async def _alert_state(client: httpx.AsyncClient, prometheus: str, alertname: str) -> str | None:
    response = await client.get(f"{prometheus}/api/v1/alerts")
    for alert in response.json()["data"]["alerts"]:
        if alert["labels"].get("alertname") == alertname:
            return str(alert["state"])
    return None


async def _flags_on(stores: Datastores) -> dict[str, bool]:
    """Feature -> whether its flag is on in Redis now."""
    from services.common.flags import get_flags
    from services.common.redis import close_redis, create_redis

    redis = create_redis(stores.redis_url)
    try:
        flags = await get_flags(redis)
    finally:
        await close_redis(redis)
    return {f: state is not None and state.enabled for f, state in flags.items()}


async def _incident_received(stores: Datastores, alertname: str) -> float | None:
    """When the handler received ``alertname`` (Unix time), from its incident row.

    ``received_at`` is the start of the handler's transaction, which also writes
    the flags; the row is visible only once it commits, after the flags changed
    in Redis, so the harness reads the time from the row rather than noting when
    it first sees it.
    """
    import asyncpg

    conn = await asyncpg.connect(stores.servers.postgres.owner_url)
    try:
        received = await conn.fetchval(
            "SELECT min(received_at) FROM rollback_incidents WHERE alertname = $1", alertname
        )
    finally:
        await conn.close()
    return None if received is None else float(received.timestamp())


async def _drive(
    scenario: Scenario,
    *,
    replicas: list[str],
    prometheus: str,
    stores: Datastores,
    fault_file: Path,
    token: str,
    timeout_s: float,
    say: Callable[[str], None],
) -> Timeline:
    method, path, body = scenario.request
    headers = {"Authorization": f"Bearer {token}"}
    stop_load = asyncio.Event()
    statuses: dict[str, int] = {}

    async def load(client: httpx.AsyncClient, start_after: float) -> None:
        # A few requests a second per loop spread over the replicas: enough for
        # every traffic guard of the rules, far from saturating anything.
        await asyncio.sleep(start_after)
        i = 0
        while not stop_load.is_set():
            url = replicas[i % len(replicas)] + path
            i += 1
            with contextlib.suppress(httpx.HTTPError):
                answer = await client.request(method, url, json=body, headers=headers)
                statuses[url] = answer.status_code
            await asyncio.sleep(scenario.pause_s)

    from services.common.flags import FEATURES

    features = FEATURES if scenario.feature == "all" else (scenario.feature,)
    timeline = Timeline()
    async with httpx.AsyncClient(timeout=30) as client:
        loaders = [
            asyncio.create_task(load(client, i * scenario.stagger_s))
            for i in range(scenario.concurrency)
        ]
        try:
            # Warm up: the rules need a few scrapes of healthy traffic first.
            await asyncio.sleep(8)
            if scenario.probe is not None:
                answers = await _probe(client, replicas, scenario.probe, headers)
                timeline.served_before = answers == [200] * len(replicas)
                say(f"probe before the fault: {answers}")
            say(f"fault on: {scenario.fault} on {scenario.route_prefix}")
            fault = json.dumps({"route_prefix": scenario.route_prefix, **scenario.fault})
            await asyncio.to_thread(fault_file.write_text, fault)
            started = time.monotonic()
            started_unix = time.time()
            deadline = started + timeout_s
            while time.monotonic() < deadline and not _done(timeline, scenario):
                now = time.monotonic() - started
                state = await _alert_state(client, prometheus, scenario.alertname)
                if state in ("pending", "firing") and timeline.pending is None:
                    timeline.pending = now
                if state == "firing" and timeline.firing is None:
                    timeline.firing = now
                if timeline.webhook_received is None:
                    received = await _incident_received(stores, scenario.alertname)
                    if received is not None:
                        timeline.webhook_received = received - started_unix
                if timeline.flag_off is None:
                    flags = await _flags_on(stores)
                    if not any(flags[f] for f in features):
                        timeline.flag_off = now
                        timeline.other_flags_on = all(
                            on for f, on in flags.items() if f not in features
                        )
                if (
                    scenario.probe is not None
                    and timeline.flag_off is not None
                    and await _all_refused(client, replicas, scenario.probe, headers)
                ):
                    timeline.replicas_stopped = now
                await asyncio.sleep(0.2)
            if timeline.webhook_received is None:
                # The flags and the row commit together: the row may show only now.
                received = await _incident_received(stores, scenario.alertname)
                if received is not None:
                    timeline.webhook_received = received - started_unix
            await asyncio.to_thread(fault_file.write_text, "")
            timeline.fault_ended = time.monotonic() - started
            say("fault off")
            while time.monotonic() < deadline + timeout_s:
                state = await _alert_state(client, prometheus, scenario.alertname)
                if state is None:
                    timeline.resolved = time.monotonic() - started
                    break
                await asyncio.sleep(0.2)
        finally:
            stop_load.set()
            await asyncio.gather(*loaders, return_exceptions=True)
    return timeline


def _done(timeline: Timeline, scenario: Scenario) -> bool:
    if scenario.gated:
        return timeline.replicas_stopped is not None
    return timeline.flag_off is not None and timeline.firing is not None


async def _probe_one(
    client: httpx.AsyncClient,
    url: str,
    probe: tuple[str, str, dict[str, Any] | None],
    headers: dict[str, str],
) -> tuple[int, str | None]:
    method, path, body = probe
    try:
        answer = await client.request(method, url + path, json=body, headers=headers)
    except httpx.HTTPError:
        return 0, None
    reason = answer.json().get("reason") if answer.status_code >= 400 else None
    return answer.status_code, reason


async def _probe(
    client: httpx.AsyncClient,
    replicas: list[str],
    probe: tuple[str, str, dict[str, Any] | None],
    headers: dict[str, str],
) -> list[int]:
    """The probe's status on every replica (0: no answer), all at once."""
    answers = await asyncio.gather(*(_probe_one(client, r, probe, headers) for r in replicas))
    return [status for status, _ in answers]


async def _all_refused(
    client: httpx.AsyncClient,
    replicas: list[str],
    probe: tuple[str, str, dict[str, Any] | None],
    headers: dict[str, str],
) -> bool:
    """Every replica answers the probe 403 ``feature_disabled`` (asked all at once:
    while the fault lasts, each answer waits out its latency)."""
    answers = await asyncio.gather(*(_probe_one(client, r, probe, headers) for r in replicas))
    return all(answer == (403, "feature_disabled") for answer in answers)


@contextlib.contextmanager
def _platform(
    scenario: Scenario, base: Path, factor: float, say: Callable[[str], None]
) -> Iterator[tuple[list[str], str, Datastores, Path, str]]:
    auth_env, token = _token()
    fault_file = base / "fault.json"
    fault_file.write_text("")
    token_file = base / "webhook-token"
    token_file.write_text(WEBHOOK_TOKEN)
    seed = json.dumps({f: {"enabled": True, "rolloutPercentage": 100} for f in _features()})
    base_env = {**os.environ, **auth_env, "ENVIRONMENT": "local", "LOG_LEVEL": "WARNING"}
    with (
        start_datastores(
            base, base_env=base_env, migrate=True, model_dir=DEFAULT_MODEL_DIR, flags=False
        ) as stores,
        ChildProcesses(log_dir=base / "logs") as children,
    ):
        env = {**base_env, **stores.service_env(), **scenario.extra_env}
        run_setup_step("flags init", enterprisehub_command("flags", "init", "--seed", seed), env)
        handler_port = free_port()
        started: list[tuple[Child, str]] = []
        handler = children.start(
            "rollback",
            _serve("rollback", handler_port),
            env={**env, "ALERTMANAGER_WEBHOOK_TOKEN": WEBHOOK_TOKEN},
        )
        started.append((handler, f"http://127.0.0.1:{handler_port}"))
        replicas = []
        for i in range(2):
            port = free_port()
            child = children.start(
                f"{scenario.service}-{i}",
                _serve(scenario.service, port),
                env={**env, "FAULT_INJECTION_FILE": str(fault_file)},
            )
            started.append((child, f"http://127.0.0.1:{port}"))
            replicas.append(f"http://127.0.0.1:{port}")
        for child, url in started:
            wait_http_ok(child, f"{url}/health", timeout_s=120)
        with start_monitoring(
            base,
            jobs={scenario.job: [u.removeprefix("http://") for u in replicas]},
            rollback_url=f"http://127.0.0.1:{handler_port}{ROLLBACK_WEBHOOK_PATH}",
            token_file=token_file,
            rule_files=_write_rules(base / "rules", factor),
            scrape_interval="1s",
            evaluation_interval="1s",
            group_wait="1s",
            group_interval=scaled("5m", factor),
        ) as monitoring:
            prometheus, alertmanager = monitoring.prometheus, monitoring.alertmanager
            say(f"platform up: prometheus {prometheus.url}, alertmanager {alertmanager.url}")
            yield replicas, prometheus.url, stores, fault_file, token


def _features() -> tuple[str, ...]:
    from services.common.flags import FEATURES

    return FEATURES


def _serve(service: str, port: int) -> list[str]:
    return enterprisehub_command("serve", service, "--host", "127.0.0.1", "--port", str(port))


def run(
    scenario: Scenario, *, factor: float, timeout_s: float, say: Callable[[str], None]
) -> Timeline:
    """Run the loop once and return its timeline."""
    with (
        tempfile.TemporaryDirectory(prefix="closed-loop-") as tmp,
        _platform(scenario, Path(tmp), factor, say) as (replicas, prom, stores, fault, token),
    ):
        # A loop of its own, never installed as the thread's: asyncio.run() would
        # leave the caller (a test session) without an event loop afterwards.
        loop = asyncio.new_event_loop()
        try:
            return loop.run_until_complete(
                _drive(
                    scenario,
                    replicas=replicas,
                    prometheus=prom,
                    stores=stores,
                    fault_file=fault,
                    token=token,
                    timeout_s=timeout_s,
                    say=say,
                )
            )
        finally:
            loop.close()


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.closed_loop", description=__doc__)
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="errors")
    parser.add_argument("--factor", type=float, default=60.0, help="time compression of the rules")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait per phase")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    scenario = SCENARIOS[args.scenario]
    say: Callable[[str], None] = (lambda _: None) if args.json else print
    timeline = run(scenario, factor=args.factor, timeout_s=args.timeout, say=say)
    result = {
        "scenario": scenario.name,
        "alert": scenario.alertname,
        "feature": scenario.feature,
        "factor": args.factor,
        "scrape_and_evaluation_interval_s": 1.0,
        "machine": f"{os.cpu_count()} cores, {cpu_model()}",
        "seconds_from_fault_start": timeline.__dict__,
    }
    print(json.dumps(result, indent=2))
    stopped = not scenario.gated or (
        timeline.served_before is True and timeline.replicas_stopped is not None
    )
    alone = scenario.feature == "all" or timeline.other_flags_on is True
    stopped = stopped and alone
    return 0 if timeline.flag_off is not None and stopped and timeline.resolved is not None else 1


if __name__ == "__main__":
    sys.exit(main())
