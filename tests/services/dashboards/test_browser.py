"""The dashboards served by ``enterprisehub serve dashboards``, driven by a real
headless Chromium (Playwright): sign in with a token, see the tenant's events.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
import pytest_asyncio

from services.common.errors import reason_for_status
from services.common.scopes import DASHBOARDS_VIEW
from services.common.scoring import LeadFeatures
from tests.raw_http import raw_exchange
from tests.services.dashboards.conftest import serve_dashboards
from tests.services.realtime.conftest import Replica, event_body, post_event

if TYPE_CHECKING:
    from playwright.async_api import Page

CHROMIUM = Path("/usr/bin/chromium")
JWT_SHAPE = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="/usr/bin/chromium is absent (scripts/install-system-packages.sh installs it)",
)


@pytest_asyncio.fixture
async def dashboards_url(dashboards_env: dict[str, str], tmp_path: Path) -> AsyncIterator[str]:
    """The app served as in production, in its own process, on a free port."""
    async with serve_dashboards(dashboards_env, tmp_path) as served:
        yield served.url


@pytest_asyncio.fixture
async def page() -> AsyncIterator[Page]:
    """A page of a headless Chromium that resolves only loopback names."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost, EXCLUDE 127.0.0.1"],
        )
        try:
            yield await browser.new_page()
        finally:
            await browser.close()


async def test_sign_in_and_see_the_lead_hub_in_chromium(
    dashboards_url: str,
    page: Page,
    replica: Replica,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
) -> None:
    webhook = make_token("tenant-a", subject="crm")
    for i, lead in enumerate(sample_leads[:4]):
        await post_event(http, replica, webhook, event_body(lead, lead_id=f"lead-{i}"))

    await page.goto(dashboards_url)
    await page.get_by_label("Access token", exact=True).fill("not-a-token")
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_text("Sign-in refused").wait_for(timeout=30_000)

    await page.get_by_label("Access token", exact=True).fill(
        make_token("tenant-a", subject="agent-2")
    )
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("heading", name="Real-Time Lead Intelligence Hub").wait_for(
        timeout=30_000
    )
    events_shown = page.locator('[data-testid="stMetric"]', has_text="Events shown")
    await (
        events_shown.locator('[data-testid="stMetricValue"]')
        .get_by_text("4", exact=True)
        .wait_for(timeout=30_000)
    )
    sidebar = await page.get_by_test_id("stSidebar").inner_text()
    assert "tenant-a" in sidebar
    assert "agent-2" in sidebar


async def test_signing_out_leaves_nothing_of_the_last_user_for_the_next(
    dashboards_url: str,
    page: Page,
    replica: Replica,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
) -> None:
    # A shared browser (an office's front desk). Three defects: the hub kept
    # what it had read with agent-1's token (the event the feed sends to
    # agent-1 alone included) and showed it to agent-2 signing in next;
    # "Sign out" on the hub itself did nothing (its refreshing fragment
    # swallowed the click), so nobody could sign out from the landing page;
    # and a click on the hub's own link while it refreshed showed every event
    # twice (two runs read from one cursor).
    webhook = make_token("tenant-a", subject="crm")
    for lead_id, agent in [("for-everyone", None), ("for-agent-1-only", "agent-1")]:
        body = event_body(sample_leads[0], lead_id=lead_id, agent_id=agent)
        await post_event(http, replica, webhook, body)

    async def sign_in_and_see(page: Page, subject: str, events: str) -> None:
        await page.get_by_label("Access token", exact=True).fill(
            make_token("tenant-a", subject=subject)
        )
        await page.get_by_role("button", name="Sign in").click()
        await page.get_by_test_id("stSidebar").get_by_text(subject).wait_for(timeout=30_000)
        await page.get_by_role("link", name="Real-Time Lead Intelligence Hub").click()
        shown = page.locator('[data-testid="stMetric"]', has_text="Events shown")
        await (
            shown.locator('[data-testid="stMetricValue"]')
            .get_by_text(events, exact=True)
            .wait_for(timeout=30_000)
        )

    await page.goto(dashboards_url)
    await sign_in_and_see(page, "agent-1", "2")
    # Signed out from another page first (that button always worked).
    await page.get_by_role("link", name="Property Intelligence").click()
    await page.get_by_role("heading", name="Property Intelligence").wait_for(timeout=30_000)
    await page.get_by_role("button", name="Sign out").click()
    await sign_in_and_see(page, "agent-2", "1")
    # Then from the hub, which refreshes itself every few seconds.
    await page.get_by_role("button", name="Sign out").click()
    await page.get_by_label("Access token", exact=True).wait_for(timeout=30_000)


async def test_the_hub_signs_out_when_its_token_expires(
    dashboards_url: str, page: Page, make_token: Callable[..., str]
) -> None:
    # The hub only refreshes its fragment, which skipped the app's sign-in
    # check: with an expired token it kept the page (and the data already
    # read) on screen, saying only that the feed was unavailable.
    await page.goto(dashboards_url)
    await page.get_by_label("Access token", exact=True).fill(
        make_token("tenant-a", subject="agent-3", ttl_seconds=6)
    )
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("heading", name="Real-Time Lead Intelligence Hub").wait_for(
        timeout=30_000
    )
    await page.get_by_text("Signed out: token has expired").wait_for(timeout=60_000)
    await page.get_by_label("Access token", exact=True).wait_for(timeout=10_000)


async def test_the_sign_in_page_lists_no_pages(dashboards_url: str, page: Page) -> None:
    # Streamlit lists the modules of a pages/ folder beside the app as pages
    # of their own; signed out, the app never called st.navigation, so the
    # first visitor's sidebar offered "app, coaching, lead hub, property, roi".
    await page.goto(dashboards_url)
    await page.get_by_label("Access token", exact=True).wait_for(timeout=30_000)
    await page.wait_for_timeout(2_000)  # what a late navigation message would draw
    assert await page.get_by_test_id("stSidebarNav").count() == 0
    assert await page.get_by_test_id("stSidebar").count() == 0


@pytest.mark.parametrize(
    ("path", "heading"), [("coaching", "Agent Coaching"), ("roi", "Phase 3 ROI")]
)
async def test_a_deep_link_asks_for_sign_in_then_shows_its_page(
    dashboards_url: str,
    page: Page,
    make_token: Callable[..., str],
    path: str,
    heading: str,
) -> None:
    # A page's own address (a bookmark, a link, a new tab) opens a new browser
    # session, signed out: the signed-out app knew no page but the form, so it
    # said "Page not found" and, once signed in, showed the lead hub instead.
    await page.goto(f"{dashboards_url}/{path}")
    await page.get_by_label("Access token", exact=True).fill(
        make_token("tenant-a", subject="agent-4")
    )
    assert await page.get_by_text("Page not found").count() == 0
    assert await page.get_by_test_id("stSidebarNav").count() == 0
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("heading", name=heading).wait_for(timeout=30_000)
    assert page.url == f"{dashboards_url}/{path}"
    assert await page.get_by_text("Page not found").count() == 0
    await page.get_by_test_id("stSidebar").get_by_text("agent-4").wait_for(timeout=10_000)


async def test_the_page_offers_no_deploy_button(dashboards_url: str, page: Page) -> None:
    # serve.py set Streamlit's options as STREAMLIT_* variables, which only
    # `streamlit run` reads: the viewer's toolbar among them never applied, and
    # every visitor was offered Streamlit's "Deploy" (so were 200 MB uploads).
    await page.goto(dashboards_url)
    await page.get_by_label("Access token", exact=True).wait_for(timeout=30_000)
    await page.get_by_test_id("stToolbar").wait_for(state="attached", timeout=10_000)
    await page.wait_for_timeout(1_000)  # what a late toolbar message would draw
    assert await page.get_by_test_id("stAppDeployButton").count() == 0
    assert await page.get_by_role("button", name="Deploy").count() == 0


async def test_a_message_over_the_cap_closes_the_socket_before_any_sign_in(
    dashboards_url: str,
) -> None:
    """Anyone who loads the page holds Streamlit's socket, signed in or not. The
    cap on what a browser sends was Streamlit's cap on what it sends (16 MB), so
    uvicorn read anonymous messages of 15 MB whole (six sockets: +100 MB); it is
    what the pages need now (``serve.MAX_CLIENT_MESSAGE_BYTES``), and uvicorn, the
    services' own, refuses a bigger message from its frame's header."""
    from websockets.asyncio.client import ClientConnection, connect
    from websockets.exceptions import ConnectionClosed

    from services.cli import SERVICES
    from services.dashboards.serve import MAX_CLIENT_MESSAGE_BYTES, MAX_CLIENT_MESSAGE_MB

    # The two written values (uvicorn's and Streamlit's) agree.
    assert SERVICES["dashboards"].ws_max_bytes == MAX_CLIENT_MESSAGE_BYTES
    assert MAX_CLIENT_MESSAGE_BYTES == MAX_CLIENT_MESSAGE_MB * 1_000_000

    ws_url = dashboards_url.replace("http://", "ws://") + "/_stcore/stream"

    async def send_then_read(socket: ClientConnection) -> None:
        # The server may close while the message is still being sent.
        await socket.send(b"\x00" * (MAX_CLIENT_MESSAGE_BYTES + 1))
        while True:
            await asyncio.wait_for(socket.recv(), 10)

    async with connect(ws_url, origin=dashboards_url, max_size=None) as socket:  # type: ignore[arg-type]
        with pytest.raises(ConnectionClosed) as closed:
            await send_then_read(socket)
    assert closed.value.rcvd is not None
    # Message too big (before: read whole, then 1002 as no BackMsg).
    assert closed.value.rcvd.code == 1009
    async with httpx.AsyncClient(timeout=5) as client:
        assert (await client.get(f"{dashboards_url}/_stcore/health")).status_code == 200


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(
            b"GET /_stcore/health HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"d" * 9000 + b"\r\n\r\n",
            id="header over 8 KiB",
        ),
        pytest.param(
            b"GET /_stcore/health HTTP/1.1\r\nHost: x\r\n" + b"X-Endless: c\r\n" * 8000,
            id="headers that never end",
        ),
    ],
)
async def test_the_server_is_the_services_bounded_one(
    dashboards_url: str, request_bytes: bytes
) -> None:
    """``streamlit run`` served the dashboards on a uvicorn of its own: request
    heads of any size (httptools has no limit), no deadline on a slow head, a
    text/plain 400 for what it could not parse. They run on the services' server
    now (``services.common.serving``)."""
    port = int(dashboards_url.rsplit(":", 1)[1])
    answer, closed = await asyncio.to_thread(raw_exchange, port, request_bytes)
    assert closed, f"connection left open; received {answer[:200]!r}"
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert b"content-type: application/json" in head.lower(), head
    assert json.loads(body)["reason"] == "bad_request"


#: Requests Streamlit itself refuses, each with the status and words it answers.
STREAMLIT_REFUSALS = [
    # Its path-security middleware, on an encoded traversal (no content type at all).
    ("GET", "/%2e%2e/%2e%2e/etc/passwd", 400, "Bad Request"),
    ("GET", "/component/x", 404, "Component not found"),
    ("GET", "/media/x.png", 404, "File not found"),
    ("PUT", "/_stcore/upload_file/a/b", 403, "XSRF token missing or invalid"),
    ("POST", "/_stcore/health", 405, "Method Not Allowed"),
]


async def test_streamlits_refusals_are_answered_as_the_projects_json(
    dashboards_url: str,
) -> None:
    """Streamlit answered these in plain text (or with no content type), where
    every other error of the platform is ``{detail, reason}`` JSON; its pages,
    its health check and its own JSON stay as they were."""
    async with httpx.AsyncClient(base_url=dashboards_url, timeout=10) as client:
        for method, path, status, detail in STREAMLIT_REFUSALS:
            answer = await client.request(method, path)
            assert answer.status_code == status, (path, answer.text[:200])
            assert answer.headers["content-type"] == "application/json", path
            assert answer.json() == {
                "detail": detail,
                "reason": reason_for_status(status),
            }, path
        head = await client.head("/component/x")
        assert (head.status_code, head.headers["content-type"], head.content) == (
            404,
            "application/json",
            b"",
        )
        page = await client.get("/coaching")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        health = await client.get("/_stcore/health")
        assert (health.status_code, health.text) == (200, "ok")
        config = await client.get("/_stcore/host-config")
        assert config.status_code == 200
        assert "allowedOrigins" in config.json()


async def test_streamlits_metrics_are_not_served(dashboards_url: str) -> None:
    """``/_stcore/metrics`` told anyone, before any sign-in, how many sessions the
    dashboards hold; nothing of the platform scrapes it (Prometheus reads the
    workloads' ``/metrics``, and the dashboards are not among them)."""
    async with httpx.AsyncClient(base_url=dashboards_url, timeout=10) as client:
        for method, path in [
            ("GET", "/_stcore/metrics"),
            ("GET", "/_stcore/metrics/"),
            ("OPTIONS", "/_stcore/metrics"),
        ]:
            answer = await client.request(method, path)
            assert answer.status_code == 404, (method, path, answer.text[:200])
            assert answer.json() == {"detail": "Not Found", "reason": "not_found"}
            assert "session" not in answer.text


async def test_no_token_reaches_the_dashboards_log(
    dashboards_url: str, tmp_path: Path, make_token: Callable[..., str]
) -> None:
    """Streamlit gives uvicorn's loggers handlers of its own and stops them
    propagating, past the services' redacting handlers: a token in a request's
    query (a link pasted with it) reached the log whole."""
    from websockets.asyncio.client import connect

    token = make_token("tenant-a", scopes=(DASHBOARDS_VIEW,))
    async with httpx.AsyncClient(base_url=dashboards_url, timeout=10) as client:
        assert (await client.get(f"/?access_token={token}")).status_code == 200
    ws_url = dashboards_url.replace("http://", "ws://") + f"/_stcore/stream?access_token={token}"
    async with connect(ws_url, origin=dashboards_url):
        pass
    await asyncio.sleep(0.5)
    log = (tmp_path / "dashboards.log").read_text()
    assert "GET /?access_token=[redacted]" in log  # the request was logged, redacted
    assert token.split(".")[2] not in log
    assert JWT_SHAPE.findall(log) == []
