"""Replica processes killed with SIGKILL and Postgres restarted mid-work.

Real ``enterprisehub serve churn`` processes (worker and scheduler each) run
against the session's Postgres and the LeadConnector stand-in. Nothing may be
lost (every send delivered), nothing sent twice (one delivery per idempotency
key at the stand-in), nothing left stuck (no row ``pending``/``sending``, no
job waiting) once the surviving replica has caught up.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from localrun.servers import LocalServers, free_port, start_postgres
from localrun.standins.leadconnector import Faults, StandinServer
from services.common.database import Database
from tests.services.churn.conftest import STANDIN_KEY, seed_leads

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]


def _replica(
    env: dict[str, str], standin: StandinServer, log: Path
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    replica_env = {
        **os.environ,
        **env,
        "GHL_API_KEY": STANDIN_KEY,
        "GHL_BASE_URL": standin.url,
        "CHURN_MONITORING_INTERVAL": "1",
        "LOG_LEVEL": "WARNING",
    }
    with log.open("ab") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "services.cli",
                "serve",
                "churn",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-access-log",
            ],
            cwd=ROOT,
            env=replica_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return process, port


async def _ready(port: int, process: subprocess.Popen[bytes], limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            assert process.poll() is None, "replica exited during start-up"
            try:
                if (await client.get(f"http://127.0.0.1:{port}/health")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError("replica did not start")


async def _states(owner: Database) -> Counter[str]:
    for _ in range(50):
        try:
            async with owner.unscoped() as conn:
                rows = await conn.fetch("SELECT status FROM churn_outbox")
            return Counter(row["status"] for row in rows)
        except Exception:
            await asyncio.sleep(0.2)
    raise AssertionError("postgres did not come back")


async def _wait_for(owner: Database, predicate, limit: float) -> Counter[str]:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + limit
    states: Counter[str] = Counter()
    while time.monotonic() < deadline:
        states = await _states(owner)
        if predicate(states):
            return states
        await asyncio.sleep(0.3)
    raise AssertionError(f"condition not reached in {limit} s; outbox states {dict(states)}")


async def _until_no_job_waits(owner: Database, limit: float) -> None:
    # A row is delivered before its job is finished, and a job recovered from
    # the killed replica may still be queued for a row delivered meanwhile (it
    # then does nothing): the queue drains shortly after the last delivery.
    deadline = time.monotonic() + limit
    waiting = None
    while time.monotonic() < deadline:
        async with owner.unscoped() as conn:
            waiting = await conn.fetchval(
                "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"
            )
        if waiting == 0:
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"{waiting} jobs still queued or running after {limit} s")


def _restart_postgres(servers: LocalServers) -> None:
    server = servers.postgres
    server.stop()
    start_postgres(server.data_dir.parent, port=server.port)


async def test_sigkill_between_claim_and_send_and_postgres_restart_lose_and_repeat_nothing(
    churn_env: dict[str, str],
    db: Database,
    owner_db: Database,
    standin: StandinServer,
    local_servers: LocalServers,
    tmp_path: Path,
) -> None:
    leads = 12
    expected = leads * 2
    await seed_leads(db, "t1", leads // 2)
    await seed_leads(db, "t2", leads // 2)
    log = tmp_path / "replicas.log"
    # Phase 1: the CRM holds every request before accepting it; replica A claims
    # sends (rows 'sending', jobs 'doing') and is killed while they hang.
    standin.standin.set_faults(Faults(hold=True))
    first, port = _replica(churn_env, standin, log)
    try:
        await _ready(port, first)
        await _wait_for(owner_db, lambda s: s["sending"] >= 2, 60)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    # Phase 2: the CRM answers again (slowly); replica B recovers A's work.
    standin.standin.set_faults(Faults(latency_seconds=0.3))
    second, port = _replica(churn_env, standin, log)
    try:
        await _ready(port, second)
        await _wait_for(owner_db, lambda s: 0 < s["delivered"] < expected, 90)
        # Phase 3: Postgres restarts while B is sending.
        await asyncio.to_thread(_restart_postgres, local_servers)
        states = await _wait_for(owner_db, lambda s: s["delivered"] == expected, 120)
        await _until_no_job_waits(owner_db, 60)
    finally:
        second.send_signal(signal.SIGTERM)
        try:
            second.wait(20)
        except subprocess.TimeoutExpired:
            second.kill()
    assert states == Counter({"delivered": expected}), log.read_text()[-3000:]
    keys = Counter(d["key"] for d in standin.standin.stats()["deliveries"])
    assert len(keys) == expected
    assert set(keys.values()) == {1}
    async with owner_db.unscoped() as conn:
        waiting = await conn.fetchval(
            "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"
        )
        interventions = await conn.fetch("SELECT status FROM churn_interventions")
    assert waiting == 0
    assert {row["status"] for row in interventions} == {"delivered"}
    assert len(interventions) == leads
