"""Tell people: one Slack message per rollback that changed something.

Slack's incoming webhooks take ``{"text": ...}``; the URL is a secret
(SLACK_WEBHOOK_URL). Without it the message is only logged. A failed post is
logged and never undoes the rollback: the flags are already off. The
handler's messages go through the outbox (``services.rollback.notices``),
which retries them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import httpx
from pydantic import SecretStr

from services.rollback.deployments import UndoOutcome

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 5.0


async def notify_slack(webhook_url: SecretStr | None, text: str) -> bool:
    """Post ``text``; True when Slack accepted it."""
    if webhook_url is None:
        log.info("slack not configured (SLACK_WEBHOOK_URL); message: %s", text)
        return False
    return await post_slack(webhook_url, text) is None


async def post_slack(webhook_url: SecretStr, text: str) -> str | None:
    """Post ``text`` once; None when Slack answered 2xx, else why not (no URL in it)."""
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS) as client:
            response = await client.post(
                webhook_url.get_secret_value(), json={"text": slack_escape(text)}
            )
    except httpx.HTTPError as exc:
        # The URL is a credential: name the failure, never the URL.
        log.warning("slack notification failed: %s", type(exc).__name__)
        return type(exc).__name__
    if not response.is_success:
        log.warning("slack notification refused: HTTP %s", response.status_code)
        return f"HTTP {response.status_code}"
    return None


def slack_escape(text: str) -> str:
    """Slack's three escapes: ``<``, ``>`` and ``&`` in the text are shown, never read
    as ``<!channel>`` mentions or ``<url|label>`` links.

    Alert summaries, alert names and the Kubernetes API's messages end up in
    the text; none of them may ping a channel or hide a link.
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def rollback_message(
    *, environment: str, features: list[str], alertname: str, reason: str, actor: str
) -> str:
    """The message text."""
    flags = ", ".join(features)
    return (
        f":rotating_light: [{environment}] rolled back {flags} (flag off) "
        f"after {alertname} by {actor}: {reason}"
    )


def undo_message(*, environment: str, alertname: str, outcomes: Sequence[UndoOutcome]) -> str:
    """The message about the Deployments an incident undid (or could not, or left alone).

    It says "undid" only when a rollout was undone, and warns about the next
    ``pulumi up`` only then: a paused Deployment or one without history was
    left as it is, and the message must not claim otherwise.
    """
    undone = any(outcome.rolled_back for outcome in outcomes)
    if any(outcome.failed for outcome in outcomes):
        head = ":warning: could not undo every rollout"
    elif undone:
        head = ":rewind: undid the rollout"
    else:
        head = ":information_source: left the rollout as it is (the flag is off)"
    text = f"{head} [{environment}] after {alertname}: " + "; ".join(
        outcome.describe() for outcome in outcomes
    )
    if not undone:
        return text + "."
    return text + (
        ". Pulumi still declares the template that failed: roll the stack back "
        "(python -m infra.deploy rollback) or deploy a fix before the next pulumi up."
    )


def closed_undo_message(
    *,
    environment: str,
    incident_key: str,
    alertname: str,
    actor: str,
    outcomes: Sequence[UndoOutcome],
) -> str:
    """The message about a stuck undo an operator closed: what each Deployment was found in."""
    found = "; ".join(
        f"{o.deployment}: rolled back (template {o.restored_hash})"
        if o.rolled_back
        else f"{o.deployment}: not rolled back"
        for o in outcomes
    )
    return (
        f":white_check_mark: [{environment}] {actor} closed the stuck undo after {alertname} "
        f"(incident {incident_key}): {found}."
    )
