"""Fixtures for churn-orchestrator: a trained model, a LeadConnector stand-in, runtimes.

The model is trained once per session on a small generated set (a few
seconds); runtimes are real (procrastinate over the session's Postgres, the
application role under row-level security) and send to the stand-in over HTTP.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from localrun.standins.leadconnector import Faults, StandinServer
from services.churn.config import ChurnSettings
from services.churn.crm import LeadConnectorClient
from services.churn.main import create_app
from services.churn.metrics import ChurnMetrics
from services.churn.model import ChurnModel
from services.churn.queue import QUEUE
from services.churn.runtime import ChurnRuntime
from services.churn.schemas import LeadUpsert
from services.churn.signals import upsert_leads
from services.churn.training import train_to_file
from services.common.database import Database
from services.common.flags import FlagCache, FlagState, openfeature_client, write_flag
from services.common.redis import Redis, close_redis, create_redis_from_settings

TEST_ROWS = 6000
TEST_SEED = 11
QUIET = (23, 0)
STANDIN_KEY = "standin-key-for-tests"


@pytest.fixture(scope="session")
def churn_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained churn model file and its sidecar (read-only)."""
    path = tmp_path_factory.mktemp("churn-model") / "churn_risk.joblib"
    train_to_file(out=path, rows=TEST_ROWS, seed=TEST_SEED)
    return path


@pytest.fixture(scope="session")
def churn_model(churn_artifact: Path) -> ChurnModel:
    """The session's model, loaded and verified."""
    return ChurnModel.load(str(churn_artifact))


@pytest_asyncio.fixture
async def churn_prevention_on(redis_client: Redis) -> None:
    """churn_prevention on for every tenant (the session's FLUSHALL wipes flags per test)."""
    await write_flag(
        redis_client, "churn_prevention", FlagState(enabled=True, rollout_percentage=100)
    )


@pytest.fixture(autouse=True)
def _churn_prevention_for_store_tests(request: pytest.FixtureRequest) -> None:
    # Autouse fixtures run first, so the flag is in Redis before any app, runtime
    # or replica starts; model and contact-rule tests stay store-free.
    if "_clean_state" in request.fixturenames:
        request.getfixturevalue("churn_prevention_on")


@pytest.fixture
def standin() -> Iterator[StandinServer]:
    """A LeadConnector stand-in on a free loopback port, no faults."""
    with StandinServer(api_key=STANDIN_KEY, faults=Faults()) as server:
        yield server


@pytest.fixture
def churn_env(
    settings_env: dict[str, str], churn_artifact: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The session environment plus churn settings tuned for fast tests."""
    extra = {
        "CHURN_MODEL_URI": churn_artifact.as_uri(),
        "CHURN_RETRY_BASE_SECONDS": "0.2",
        "CHURN_RETRY_MAX_SECONDS": "1",
        "CHURN_QUIET_HOURS_START": str(QUIET[0]),
        "CHURN_QUIET_HOURS_END": str(QUIET[1]),
        "CHURN_MAX_CONTACTS_PER_DAY": "5",
        "CHURN_MAX_CONTACTS_PER_WEEK": "10",
        "GHL_TIMEOUT_SECONDS": "1",
        "CHURN_WORKER_CONCURRENCY": "4",
    }
    for key, value in extra.items():
        monkeypatch.setenv(key, value)
    return {**settings_env, **extra}


def open_zone(now: datetime | None = None) -> str:
    """A time zone where it is not quiet hours right now (tests must not depend on the clock)."""
    now = now or datetime.now(UTC)
    for name in ("UTC", "Asia/Tokyo", "America/New_York", "Europe/Berlin"):
        from zoneinfo import ZoneInfo

        if now.astimezone(ZoneInfo(name)).hour not in (23,):
            return name
    raise AssertionError("no open zone")


def quiet_zone(now: datetime | None = None) -> str:
    """A zone where it is 23:00-23:59 now, i.e. inside the tests' quiet hours; any hour works."""
    now = now or datetime.now(UTC)
    from zoneinfo import ZoneInfo, available_timezones

    for name in sorted(available_timezones()):
        if name.startswith(("Etc/", "posix", "right")):
            continue
        if now.astimezone(ZoneInfo(name)).hour == 23:
            return name
    raise AssertionError("no zone at 23:00")


async def seed_leads(
    db: Database,
    tenant_id: str,
    count: int,
    *,
    prefix: str = "lead",
    at_risk: bool = True,
    timezone: str | None = None,
) -> list[str]:
    """Register ``count`` leads: at risk (silent for 60 days) or just created."""
    created = datetime.now(UTC) - (timedelta(days=60) if at_risk else timedelta(minutes=1))
    leads = [
        LeadUpsert(
            lead_id=f"{prefix}-{i}",
            timezone=timezone or open_zone(),
            agent_id="agent-1",
            created_at=created,
        )
        for i in range(count)
    ]
    async with db.tenant(tenant_id) as conn:
        await upsert_leads(conn, leads)
    return [lead.lead_id for lead in leads]


RuntimeFactory = Callable[..., AbstractAsyncContextManager[ChurnRuntime]]


@pytest.fixture
def make_runtime(
    churn_env: dict[str, str], churn_model: ChurnModel, app_database_url: str
) -> RuntimeFactory:
    """``async with make_runtime(standin=..., **settings) as runtime``: opened, not started.

    Its flag cache is a real one over the session's Redis, read when the
    runtime is made: write a flag before, or wait for the change to arrive.
    The runtime decides through an OpenFeature client over that cache (our
    provider, its metrics hook on the runtime's registry, as in the app).
    """

    @asynccontextmanager
    async def make(
        *, standin: StandinServer | None = None, **overrides: Any
    ) -> AsyncIterator[ChurnRuntime]:
        settings = ChurnSettings.from_env(**overrides)
        db = await Database.open(app_database_url, max_size=8, acquire_timeout=10)
        crm = (
            LeadConnectorClient(
                api_key=STANDIN_KEY,
                base_url=standin.url,
                timeout=settings.ghl_timeout_seconds,
            )
            if standin is not None
            else None
        )
        redis = create_redis_from_settings(settings)
        registry = CollectorRegistry()
        flags = FlagCache(redis, registry=registry)
        try:
            async with flags.running():
                with openfeature_client(flags, registry=registry, name="churn") as flag_client:
                    runtime = ChurnRuntime(
                        settings=settings,
                        db=db,
                        model=churn_model,
                        metrics=ChurnMetrics(registry),
                        crm=crm,
                        flags=flags,
                        flag_client=flag_client,
                    )
                    await runtime.app.open_async()
                    try:
                        yield runtime
                    finally:
                        await runtime.stop()
        finally:
            await db.close()
            await close_redis(redis)

    return make


async def queued(db: Database, *, due_only: bool = False) -> int:
    """Jobs of the churn queue still to run or running (``due_only``: not scheduled later)."""
    async with db.unscoped() as conn:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM procrastinate_jobs WHERE queue_name = $1 "
            "AND status IN ('todo', 'doing') "
            "AND (NOT $2 OR scheduled_at IS NULL OR scheduled_at <= now() + interval '5 seconds')",
            QUEUE,
            due_only,
        )
    return count


async def drain(runtime: ChurnRuntime, *, limit: float = 60.0, due_only: bool = False) -> None:
    """Run the worker until the queue is empty (``due_only``: of jobs due soon)."""
    deadline = time.monotonic() + limit
    while True:
        await runtime.app.run_worker_async(
            queues=[QUEUE],
            wait=False,
            concurrency=runtime.settings.churn_worker_concurrency,
            install_signal_handlers=False,
            delete_jobs="successful",
            fetch_job_polling_interval=0.1,
        )
        if await queued(runtime.db, due_only=due_only) == 0:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"queue not drained in {limit} s")
        await asyncio.sleep(0.2)


@pytest_asyncio.fixture
async def owner(owner_db: Database) -> Database:
    """The owner pool (sees every tenant), for assertions."""
    return owner_db


@pytest.fixture
def served_app(
    churn_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Callable[[StandinServer], FastAPI]:
    """``served_app(standin)``: the app sending to ``standin``, no retries, its worker and
    scheduler off (tests drive them through ``app.state.churn``)."""

    def make(standin: StandinServer) -> FastAPI:
        for key, value in {
            "CHURN_WORKER_ENABLED": "false",
            "CHURN_SCHEDULER_ENABLED": "false",
            "CHURN_INTERVENTION_RETRY_COUNT": "0",
            "GHL_API_KEY": STANDIN_KEY,
            "GHL_BASE_URL": standin.url,
        }.items():
            monkeypatch.setenv(key, value)
        return create_app(ChurnSettings.from_env(), registry=CollectorRegistry())

    return make


@pytest_asyncio.fixture
async def served(
    served_app: Callable[[StandinServer], FastAPI],
    standin: StandinServer,
    app_client: Callable[[FastAPI], AbstractAsyncContextManager[httpx.AsyncClient]],
) -> AsyncIterator[tuple[httpx.AsyncClient, ChurnRuntime]]:
    """A client of the app serving (sending to ``standin``) and its runtime."""
    app = served_app(standin)
    async with app_client(app) as client:
        yield client, app.state.churn


def signal_body(lead: str, kind: str, occurred: datetime) -> dict[str, str]:
    """One signal as the CRM posts it, with a fresh ``signal_id``."""
    return {
        "signal_id": str(uuid.uuid4()),
        "lead_id": lead,
        "type": kind,
        "occurred_at": occurred.isoformat(),
    }
