"""The LeadConnector client: a connection kept alive per concurrent send, no line per send."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from localrun.standins.leadconnector import Faults, StandinServer
from services.churn.config import ChurnSettings
from services.churn.crm import SendRequest
from services.churn.main import build_crm
from services.common.serving import quiet_client_request_logs

CONCURRENCY = 32


def _in_own_loop(coro: Any) -> None:
    # Not asyncio.run() in pytest's main thread (later Pulumi mock tests need it free).
    errors: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(coro)
        except BaseException as exc:  # re-raised in the test's thread
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(60)
    if errors:
        raise errors[0]


@pytest.fixture(autouse=True)
def _httpx_log_level() -> Iterator[None]:
    """Restore the ``httpx`` logger's level, which `quiet_client_request_logs` sets."""
    logger = logging.getLogger("httpx")
    level = logger.level
    yield
    logger.setLevel(level)


def test_sends_at_full_concurrency_reuse_their_connections(churn_env: dict[str, str]) -> None:
    # Each request is held briefly, so a round's sends are all in flight together.
    with StandinServer(api_key="k", faults=Faults(latency_seconds=0.2)) as standin:
        # The tests' 1 s send timeout is for the retry tests: 32 connections opened
        # at once to a threaded stand-in on a loaded 2-core machine took longer, and
        # a timed-out send failed a test about connection reuse.
        settings = ChurnSettings.from_env(
            ghl_api_key="k",
            ghl_base_url=standin.url,
            churn_worker_concurrency=CONCURRENCY,
            ghl_timeout_seconds=10,
        )
        crm = build_crm(settings)
        assert crm is not None

        async def rounds() -> None:
            try:
                for round_ in range(3):
                    await asyncio.gather(
                        *(
                            crm.send(
                                SendRequest(
                                    channel="sms",
                                    contact_id=f"c-{i}",
                                    agent_id=None,
                                    stage="nudge",
                                    idempotency_key=f"key-{round_}-{i}",
                                )
                            )
                            for i in range(CONCURRENCY)
                        )
                    )
            finally:
                await crm.aclose()

        _in_own_loop(rounds())
        stats = standin.standin.stats()
    assert stats["results"] == {"accepted": 3 * CONCURRENCY}
    # Opened once; httpx's default keeps 20 and would have opened 12 more per round.
    assert stats["connections"] == CONCURRENCY


def _send_one(crm: Any) -> None:
    async def send() -> None:
        try:
            await crm.send(
                SendRequest(
                    channel="task", contact_id="c-1", agent_id=None, stage="nudge",
                    idempotency_key="key-1",
                )
            )  # fmt: skip
        finally:
            await crm.aclose()

    _in_own_loop(send())


def test_a_send_logs_no_line_at_info(
    churn_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with StandinServer(api_key="k") as standin:
        settings = ChurnSettings.from_env(
            ghl_api_key="k", ghl_base_url=standin.url, log_level="INFO"
        )
        quiet_client_request_logs(settings.log_level)  # as `serve` does
        crm = build_crm(settings)
        _send_one(crm)
        assert standin.standin.stats()["results"] == {"accepted": 1}
    assert [r for r in caplog.records if r.name.startswith("httpx")] == []


def test_at_debug_httpx_logs_its_requests(
    churn_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with StandinServer(api_key="k") as standin:
        settings = ChurnSettings.from_env(
            ghl_api_key="k", ghl_base_url=standin.url, log_level="DEBUG"
        )
        quiet_client_request_logs(settings.log_level)  # as `serve` does
        crm = build_crm(settings)
        _send_one(crm)
    assert any(r.name == "httpx" and "HTTP Request" in r.getMessage() for r in caplog.records)
