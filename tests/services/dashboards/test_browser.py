"""The dashboards served by ``enterprisehub serve dashboards``, driven by a real
headless Chromium (Playwright): sign in with a token, see the tenant's events.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from localrun.servers import free_port
from services.common.scoring import LeadFeatures
from tests.services.realtime.conftest import Replica, event_body, post_event

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[3]
START_TIMEOUT = 60.0

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="/usr/bin/chromium is absent (scripts/install-system-packages.sh installs it)",
)


@pytest_asyncio.fixture
async def dashboards_url(dashboards_env: dict[str, str], tmp_path: Path) -> AsyncIterator[str]:
    """The app served as in production, in its own process, on a free port."""
    port = free_port()
    log = (tmp_path / "dashboards.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "services.cli", "serve", "dashboards"),
        *("--host", "127.0.0.1", "--port", str(port)),
        cwd=REPO,
        env={**os.environ, **dashboards_env, "HOME": str(tmp_path)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            for _ in range(int(START_TIMEOUT / 0.2)):
                if process.returncode is not None:
                    raise RuntimeError((tmp_path / "dashboards.log").read_text())
                try:
                    if (await client.get(f"{url}/_stcore/health")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
            else:
                raise RuntimeError(
                    "dashboards did not start: " + (tmp_path / "dashboards.log").read_text()
                )
        yield url
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 20)
        log.close()


async def test_sign_in_and_see_the_lead_hub_in_chromium(
    dashboards_url: str,
    replica: Replica,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
) -> None:
    from playwright.async_api import async_playwright

    webhook = make_token("tenant-a", subject="crm")
    for i, lead in enumerate(sample_leads[:4]):
        await post_event(http, replica, webhook, event_body(lead, lead_id=f"lead-{i}"))

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost, EXCLUDE 127.0.0.1"],
        )
        try:
            page = await browser.new_page()
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
        finally:
            await browser.close()
