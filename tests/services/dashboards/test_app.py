"""The dashboards app under Streamlit's AppTest: sign-in and the lead hub.

Events are posted through the real ingest of a running websocket-manager and
read back by the hub through ``WS /v1/feed`` with the signed-in user's token.
AppTest runs the script synchronously, so it runs in a thread while the
server keeps serving on the test's event loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from localrun.servers import free_port
from services.common.auth import issue_token
from services.common.database import Database
from services.common.scoring import LeadFeatures
from services.common.settings import AuthSettings
from services.dashboards import app as dashboards_app
from services.dashboards import context
from services.dashboards.feed import FeedUnavailable, read_feed, stream_id_at
from services.dashboards.views import lead_hub
from services.dashboards.views.lead_hub import HOT_SCORE, merge, summarize
from tests.revocations import FAST_REFRESH, eventually, revoke_now, token_id
from tests.services.realtime.conftest import Replica, event_body, post_event

APP = str(dashboards_app.__file__)
TIMEOUT = 60


async def _run(at: AppTest) -> AppTest:
    return await asyncio.to_thread(at.run, timeout=TIMEOUT)


async def _sign_in(token: str) -> AppTest:
    at = await _run(AppTest.from_file(APP, default_timeout=TIMEOUT))
    at.text_input[0].input(token)
    at.button[0].click()
    return await _run(at)


async def test_sign_in_refuses_a_bad_token(dashboards_env: dict[str, str]) -> None:
    at = await _sign_in("not-a-token")
    assert [e.value for e in at.error] == [
        "Sign-in refused: token is not a well-formed JWT (malformed_token)."
    ]
    assert not at.get("plotly_chart")
    assert "Real-Time Lead Intelligence Hub" not in [t.value for t in at.title]


async def test_sign_in_refuses_a_token_of_another_key(dashboards_env: dict[str, str]) -> None:
    forged = issue_token(
        AuthSettings(jwt_secret_key="another-signing-key-0123456789abcdefgh", jwt_key_id="x"),
        tenant_id="tenant-a",
        subject="agent-1",
        scopes=("feed:read",),
    )
    at = await _sign_in(forged)
    assert len(at.error) == 1
    assert "unknown_kid" in at.error[0].value


async def test_sign_in_refuses_a_token_without_the_dashboards_scope(
    dashboards_env: dict[str, str], make_token: Callable[..., str]
) -> None:
    # An agent's feed token or the CRM integration's must not open pages that
    # show every agent's coaching and the tenant's ROI.
    for scopes in [("feed:read",), ("crm:ingest", "leads:score", "coaching:analyze")]:
        at = await _sign_in(make_token("tenant-a", subject="agent-1", scopes=scopes))
        assert len(at.error) == 1
        assert "dashboards:view" in at.error[0].value
        assert "(insufficient_scope)" in at.error[0].value
        assert "📡 Real-Time Lead Intelligence Hub" not in [t.value for t in at.title]
    at = await _sign_in(make_token("tenant-a", subject="agent-1", scopes=("dashboards:view",)))
    assert not at.error
    assert [t.value for t in at.title] == ["📡 Real-Time Lead Intelligence Hub"]


async def test_a_revoked_token_signs_its_user_out_at_the_next_rerun(
    dashboards_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    make_token: Callable[..., str],
    db: Database,
) -> None:
    """The dashboards verify the token on every rerun with the verifier every service
    uses; its revocations are kept current on the dashboards' own loop."""
    monkeypatch.setenv("AUTH_REVOCATION_REFRESH_SECONDS", str(FAST_REFRESH))
    token = make_token("tenant-a", subject="manager-1", scopes=("dashboards:view", "feed:read"))
    at = await _sign_in(token)
    assert not at.error
    await revoke_now(db, "tenant-a", jti=token_id(token))
    warnings: list[str] = []

    async def signed_out() -> bool:
        shown = [w.value for w in (await _run(at)).warning]
        warnings[:] = [w for w in shown if w.startswith("Signed out")]
        return bool(warnings)

    await eventually(signed_out)
    assert warnings == ["Signed out: token has been revoked; ask for a new one."]
    again = await _sign_in(token)
    assert [e.value for e in again.error] == [
        "Sign-in refused: token has been revoked; ask for a new one (revoked_token)."
    ]


async def test_hub_shows_the_tenants_events_from_the_real_feed(
    dashboards_env: dict[str, str],
    replica: Replica,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
) -> None:
    webhook = make_token("tenant-a", subject="crm")
    posted = [
        await post_event(
            http,
            replica,
            webhook,
            event_body(
                lead, lead_id=f"lead-{i}", event_type=("lead.created", "email.opened")[i % 2]
            ),
        )
        for i, lead in enumerate(sample_leads[:3])
    ]
    other = make_token("tenant-b", subject="crm")
    await post_event(http, replica, other, event_body(sample_leads[3], lead_id="other-tenant"))

    at = await _sign_in(make_token("tenant-a", subject="agent-7"))

    assert not at.error
    assert [t.value for t in at.title] == ["📡 Real-Time Lead Intelligence Hub"]
    shown = at.dataframe[0].value
    assert sorted(shown["lead"]) == ["lead-0", "lead-1", "lead-2"]
    assert sorted(shown["score"]) == sorted(round(p["score"], 3) for p in posted)
    assert len(at.get("plotly_chart")) == 2
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Events shown"] == "3"
    assert "Tenant **tenant-a**" in at.sidebar.caption[0].value


async def test_read_feed_resumes_after_its_cursor(
    replica: Replica,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
) -> None:
    webhook = make_token("tenant-a", subject="crm")
    agent = make_token("tenant-a", subject="agent-1")
    await post_event(http, replica, webhook, event_body(sample_leads[0], lead_id="first"))
    first = await read_feed(
        replica.ws, agent, since=stream_id_at(0), listen_seconds=0.2, open_timeout=10
    )
    assert [e["lead_id"] for e in first.events] == ["first"]
    await post_event(http, replica, webhook, event_body(sample_leads[1], lead_id="second"))
    second = await read_feed(
        replica.ws, agent, since=first.cursor, listen_seconds=0.2, open_timeout=10
    )
    assert [e["lead_id"] for e in second.events] == ["second"]


async def test_an_unreachable_feed_tells_the_page_nothing_of_its_internal_address(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The page showed "cannot reach the feed at ws://<cluster address>/v1/feed"
    # to every signed-in user; the address belongs in the operator's log.
    url = f"ws://127.0.0.1:{free_port()}/v1/feed"
    with caplog.at_level(logging.WARNING), pytest.raises(FeedUnavailable) as refused:
        await read_feed(url, "t", since=None, listen_seconds=0.1, open_timeout=5)
    assert refused.value.reason == "cannot reach the feed (ConnectionRefusedError)"
    assert url in caplog.text


async def test_read_feed_reports_a_refused_token(replica: Replica) -> None:
    with pytest.raises(FeedUnavailable, match="HTTP 401"):
        await read_feed(replica.ws, "bad", since=None, listen_seconds=0.1, open_timeout=5)


def test_summary_counts_types_and_hot_leads() -> None:
    events: list[dict[str, Any]] = [
        {"lead_id": f"l{i}", "event_type": t, "score": s, "accepted_at": 1_700_000_000 + i}
        for i, (t, s) in enumerate([("a", 0.9), ("b", 0.1), ("a", HOT_SCORE), ("c", 0.5)])
    ]
    view = summarize(events, latest=3)
    assert [row["lead"] for row in view.rows] == ["l3", "l2", "l1"]
    assert view.by_type == {"b": 1, "a": 1, "c": 1}
    assert view.hot == 1
    assert view.mean_score is not None
    assert round(view.mean_score, 3) == round((0.1 + HOT_SCORE + 0.5) / 3, 3)


def test_merge_keeps_each_event_once_when_two_runs_read_from_one_cursor() -> None:
    # A rerun in a new thread and the refreshing fragment's thread both read
    # from the same cursor; whichever merges second adds nothing and never
    # moves the cursor back.
    state: dict[str, Any] = {"cursor": "1000-0", "events": []}
    read = [{"stream_id": "1000-1", "score": 0.5}, {"stream_id": "1001-0", "score": 0.9}]
    merge(state, read, "1001-0")
    merge(state, read, "1001-0")
    merge(state, read[:1], "1000-1")
    assert [e["stream_id"] for e in state["events"]] == ["1000-1", "1001-0"]
    assert state["cursor"] == "1001-0"
    merge(state, [{"stream_id": "1001-1", "score": 0.1}], None)
    assert len(state["events"]) == 3
    assert state["cursor"] == "1001-1"


async def _open_page(at: AppTest, url_path: str) -> AppTest:
    # AppTest.switch_page matches pages by file, and the app's pages are
    # functions with a url_path: select the registered page by that path.
    at._page_hash = next(
        page_hash
        for page_hash, info in at._registered_pages.items()
        if info.get("url_pathname") == url_path
    )
    return await _run(at)


@pytest.mark.parametrize("url_path", ["property", "coaching", "roi"])
async def test_a_page_says_postgres_is_down_instead_of_a_traceback(
    settings_env: dict[str, str],
    make_token: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
    url_path: str,
) -> None:
    # Nothing listens on the port: Postgres is down, not faked. The page drew
    # DatabaseUnavailable with its traceback (the server's files and code).
    monkeypatch.setenv("DATABASE_URL", f"postgresql://app:pw@127.0.0.1:{free_port()}/app")
    at = await _sign_in(make_token("tenant-a", scopes=("dashboards:view",)))
    at = await _open_page(at, url_path)
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.error) == 1
    assert "cannot read its data right now: postgres unavailable" in at.error[0].value


async def test_the_hub_of_a_tenant_quiet_for_the_lookback_reads_its_feed(
    dashboards_env: dict[str, str],
    replica: Replica,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The hub opens at "an hour ago" as a stream id. For a tenant whose newest
    # event is older than that (overnight), the feed refuses the cursor as one
    # it never sent (1008), and the hub said "Feed unavailable" on every
    # refresh until the tenant's next event. A lookback of zero puts the same
    # tenant's only event before the hub's first cursor without waiting an hour.
    webhook = make_token("tenant-a", subject="crm")
    await post_event(http, replica, webhook, event_body(sample_leads[0], lead_id="old"))
    await asyncio.sleep(0.05)
    monkeypatch.setattr(lead_hub, "LOOKBACK_SECONDS", 0.0)
    at = await _sign_in(make_token("tenant-a", subject="agent-7"))
    assert not at.exception, [e.value for e in at.exception]
    assert [w.value for w in at.warning] == []
    assert [i.value for i in at.info] == [
        "No lead events yet for this tenant; they appear here as the CRM sends them."
    ]
    # Live again: the next event is read on the next refresh.
    await post_event(http, replica, webhook, event_body(sample_leads[1], lead_id="new"))
    at = await _run(at)
    assert [w.value for w in at.warning] == []
    assert list(at.dataframe[0].value["lead"]) == ["new"]


def test_merge_keeps_only_what_the_hub_draws() -> None:
    # The CRM's data (up to 64 KiB an event) stayed in every session's state.
    state: dict[str, Any] = {"cursor": "1000-0", "events": []}
    event = {
        "type": "lead_event",
        "stream_id": "1000-1",
        "event_id": "e1",
        "lead_id": "lead-1",
        "event_type": "lead.created",
        "agent_id": None,
        "score": 0.5,
        "model_version": "v1",
        "data": {"notes": "x" * 60_000},
        "accepted_at": 1_700_000_000.0,
    }
    merge(state, [event], "1000-1")
    assert state["events"] == [
        {
            "stream_id": "1000-1",
            "lead_id": "lead-1",
            "event_type": "lead.created",
            "agent_id": None,
            "score": 0.5,
            "accepted_at": 1_700_000_000.0,
        }
    ]
    assert summarize(state["events"], latest=10).rows[0]["lead"] == "lead-1"


async def test_the_sidebar_shows_the_tokens_subject_as_written(
    dashboards_env: dict[str, str], make_unchecked_token: Callable[..., str]
) -> None:
    # A token minted before subjects were checked carries whatever the minter
    # wrote: this was a link (and $...$ LaTeX) in the signed-in sidebar's markdown.
    subject = "[Reset your password](http://evil.example) $x$ agent_7"
    at = await _sign_in(make_unchecked_token("tenant-a", subject, ("dashboards:view",)))
    assert not at.exception, [e.value for e in at.exception]
    assert [c.value for c in at.sidebar.caption] == ["Tenant **tenant-a**"]
    assert [t.value for t in at.sidebar.text] == [subject]


async def test_a_page_stuck_behind_a_lock_gives_up_and_says_so(
    settings_env: dict[str, str],
    make_token: Callable[..., str],
    owner_db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Postgres has no statement timeout for the app: a page's query behind a
    # lock (a migration, a long transaction) held the user's page forever.
    monkeypatch.setattr(context, "PAGE_DATA_SECONDS", 2.0)
    at = await _sign_in(make_token("tenant-a", scopes=("dashboards:view",)))
    async with owner_db.unscoped() as conn:
        await conn.execute("LOCK TABLE coaching_sessions IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        at = await _open_page(at, "coaching")
        waited = time.monotonic() - started
    assert not at.exception, [e.value for e in at.exception]
    assert [e.value for e in at.error] == [
        "This page cannot read its data right now: postgres did not answer within 2 s. "
        "It is not your input; reload the page in a minute."
    ]
    assert waited < 20
    # The cancelled query gave its connection back: the page reads again.
    at = await _run(at)
    assert not at.error
    assert [t.value for t in at.title] == ["🎯 Agent Coaching"]


async def test_a_runner_the_script_built_stops_with_its_cache_entry(
    dashboards_env: dict[str, str],
) -> None:
    # Its revocation refresher would otherwise read on after the test session
    # stopped Postgres, and log "unavailable" after the summary.
    await _sign_in("not-a-token")
    loops = [t for t in threading.enumerate() if t.name == "dashboards-loop" and t.is_alive()]
    assert loops, "the sign-in page built no runner"
    await asyncio.to_thread(st.cache_resource.clear)
    assert [t for t in loops if t.is_alive()] == []
