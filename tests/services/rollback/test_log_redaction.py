"""The Slack webhook URL is a credential: no log line of the handler carries it."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from services.common.serving import RedactCredentials, register_secrets
from services.rollback.config import RollbackSettings
from services.rollback.notify import post_slack
from tests.services.rollback.conftest import SlackStandIn

#: The part of an incoming-webhook URL that lets anyone post to the channel.
WEBHOOK_SECRET = "T0001/B0002/s3cr3tW3bh00kT0kenValue"


class Lines(logging.Handler):
    """The formatted lines of the records it handles, after its filters."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def client_request_lines() -> Iterator[Lines]:
    """httpx's line per request, as a service at LOG_LEVEL=DEBUG writes it (redacting)."""
    handler = Lines()
    handler.addFilter(RedactCredentials())
    logger = logging.getLogger("httpx")
    level = logger.level
    # LOG_LEVEL=DEBUG leaves the clients' request lines on (quiet_client_request_logs).
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def test_a_notice_posted_at_debug_does_not_log_the_webhook_url(
    rollback_env: dict[str, str],
    slack: SlackStandIn,
    monkeypatch: pytest.MonkeyPatch,
    client_request_lines: Lines,
) -> None:
    # httpx logs each request's URL whole; the handler named the failure of a
    # post and never the URL, but every successful post printed it.
    secret_url = slack.url.replace("T/B/X", WEBHOOK_SECRET)
    monkeypatch.setenv("SLACK_WEBHOOK_URL", secret_url)
    settings = RollbackSettings.from_env()
    register_secrets(settings)  # what `enterprisehub serve` does before serving
    assert settings.slack_webhook_url is not None
    assert await post_slack(settings.slack_webhook_url, "flags off") is None
    assert slack.messages == ["flags off"]
    posted = [line for line in client_request_lines.lines if "HTTP Request: POST" in line]
    assert len(posted) == 1, client_request_lines.lines
    assert "[redacted]" in posted[0]
    assert not any("s3cr3t" in line for line in client_request_lines.lines)
