"""Tell people: one Slack message per rollback that changed something.

Slack's incoming webhooks take ``{"text": ...}``; the URL is a secret
(SLACK_WEBHOOK_URL). Without it the message is only logged. A failed post is
logged and never undoes the rollback: the flags are already off.
"""

from __future__ import annotations

import logging

import httpx
from pydantic import SecretStr

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 5.0


async def notify_slack(webhook_url: SecretStr | None, text: str) -> bool:
    """Post ``text``; True when Slack accepted it."""
    if webhook_url is None:
        log.info("slack not configured (SLACK_WEBHOOK_URL); message: %s", text)
        return False
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS) as client:
            response = await client.post(webhook_url.get_secret_value(), json={"text": text})
    except httpx.HTTPError as exc:
        # The URL is a credential: name the failure, never the URL.
        log.warning("slack notification failed: %s", type(exc).__name__)
        return False
    if response.status_code != 200:
        log.warning("slack notification refused: HTTP %s", response.status_code)
        return False
    return True


def rollback_message(
    *, environment: str, features: list[str], alertname: str, reason: str, actor: str
) -> str:
    """The message text."""
    flags = ", ".join(features)
    return (
        f":rotating_light: [{environment}] rolled back {flags} (flag off) "
        f"after {alertname} by {actor}: {reason}"
    )


def undo_message(*, environment: str, alertname: str, outcomes: list[str], failed: bool) -> str:
    """The message about the Deployments an incident undid (or could not)."""
    head = ":warning: could not undo every rollout" if failed else ":rewind: undid the rollout"
    return (
        f"{head} [{environment}] after {alertname}: {'; '.join(outcomes)}. "
        "The stack still declares the undone template: roll the stack back "
        "(python -m infra.deploy rollback) or deploy a fix before the next pulumi up."
    )
