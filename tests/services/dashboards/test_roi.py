"""The ROI page: its loaders against real Postgres, its drawing under AppTest and in Chromium.

The page is drawn twice: by a tiny Streamlit script giving it the two members
of ``PageContext`` it uses (``tenant_id``, ``run``) over the real database
(AppTest and Chromium, fast), and in the real app served by ``enterprisehub
serve dashboards``, signed in with a token, in Chromium.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from localrun.demo import seed_impact_history
from localrun.servers import free_port
from services.common.database import Database
from services.dashboards.views.roi import (
    CACHE_SECONDS,
    MAX_PERIOD_DAYS,
    load_roi,
    period_problem,
    to_csv,
)
from services.impact.assumptions import ASSUMPTIONS
from tests.services.dashboards.conftest import wait_healthy
from tests.services.dashboards.test_browser import dashboards_url  # noqa: F401 - fixture

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[3]
TODAY = datetime.now(UTC).date()

SCRIPT = """
import asyncio, os
from services.common.database import Database
from services.dashboards.views import roi
from services.impact.config import AssumptionsSettings

class Context:
    tenant_id = os.environ["ROI_TENANT"]
    settings = AssumptionsSettings.from_env()

    def run(self, fn):
        async def go():
            db = await Database.open(os.environ["ROI_DATABASE_URL"], max_size=1)
            try:
                return await fn(db)
            finally:
                await db.close()
        return asyncio.run(go())

roi.render(Context())
"""


def _feature_colours(figure: dict[str, Any]) -> dict[str, str]:
    """Feature label -> its colour in a plotly figure of lines or of one pie."""
    traces = figure["data"]
    if traces[0]["type"] == "pie":
        pie = traces[0]
        return dict(zip(pie["labels"], pie.get("marker", {}).get("colors", []), strict=False))
    return {trace["name"]: trace.get("line", {}).get("color") for trace in traces}


async def _seed(app_database_url: str, owner_db: Database) -> None:
    await seed_impact_history(app_database_url, ["tenant-a", "tenant-b"], days=30, today=TODAY)
    async with owner_db.unscoped() as conn:
        await conn.execute(
            "INSERT INTO rollout_decisions (environment, feature_name, stage_percentage, "
            "decision, reason, inputs, actor) VALUES ('local', 'ai_coaching', 25, 'hold', "
            "'3.0 of 7 days in stage', '{}'::jsonb, 'ops')"
        )


@pytest.fixture(autouse=True)
def _empty_data_cache() -> None:
    """The page's data cache is the process's: one test's rows must not be served to the
    next (each has a fresh database with the same tenant names)."""
    st.cache_data.clear()


async def test_loaders_read_only_the_tenants_rows(
    app_database_url: str, owner_db: Database, db: Database
) -> None:
    await _seed(app_database_url, owner_db)
    data = await load_roi(
        db, "tenant-a", TODAY - timedelta(days=30), TODAY, assumptions=ASSUMPTIONS
    )
    assert len(data.rows) == 30 * 4
    assert {r["tenant_id"] for r in data.rows} == {"tenant-a"}
    features = data.summary["features"]
    assert all(f["lift_source"] == "measured" for f in features.values())
    assert sum(f["usage"] for f in features.values()) == sum(r["usage_count"] for r in data.rows)
    total = data.summary["total_platform"]
    assert total["revenue"]["low"] <= total["revenue"]["point"] <= total["revenue"]["high"]
    assert data.decisions["ai_coaching"]["decision"] == "hold"
    assert to_csv(data.rows).count("\n") == 1 + 30 * 4
    # The seed is idempotent: a second run adds nothing.
    assert await seed_impact_history(app_database_url, ["tenant-a"], days=30, today=TODAY) == 0
    nobody = await load_roi(
        db, "tenant-z", TODAY - timedelta(days=30), TODAY, assumptions=ASSUMPTIONS
    )
    assert nobody.rows == []


async def test_page_renders_every_section(
    app_database_url: str, owner_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _seed(app_database_url, owner_db)
    monkeypatch.setenv("ROI_DATABASE_URL", app_database_url)
    monkeypatch.setenv("ROI_TENANT", "tenant-a")
    at = AppTest.from_string(SCRIPT, default_timeout=60)
    at = await asyncio.to_thread(at.run)
    assert not at.exception, [e.value for e in at.exception]
    headers = [h.value for h in at.header]
    assert headers == [
        "Summary",
        "ROI success criteria",
        "Revenue trend by feature",
        "Usage and revenue distribution",
        "Performance against targets",
        "Projected annual impact",
        "Experiments and rollout decisions",
    ]
    labels = {m.label: m.value for m in at.metric}
    assert labels["Revenue impact"].startswith("$")
    assert labels["Platform goal"] == "$265,000-$440,000"
    charts = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    assert len(charts) == 3
    # A colour names one feature in the trend and in both pies (a pie left to
    # plotly colours its slices by size, so each pie told a different story).
    colours = [_feature_colours(chart) for chart in charts]
    assert len(set(colours[0].values())) == 4
    assert colours[0] == colours[1] == colours[2]
    criteria = at.dataframe[0].value.set_index("Criterion")
    assert list(criteria.index) == [
        "Positive net impact within 30 days",
        "500%+ ROI within 90 days",
        "Operating costs within budget (<20% of revenue impact)",
    ]
    assert set(criteria["Status"]) <= {"pass", "fail", "not yet measurable"}
    assert criteria.loc["500%+ ROI within 90 days", "Target"] == "ROI >= 500% by day 90"
    # The period is 31 days: the 30-day deadline has passed, the 90-day one has not.
    assert criteria.loc["Positive net impact within 30 days", "Status"] != "not yet measurable"
    captions = " ".join(c.value for c in at.caption)
    # The true midpoint of $265K-440K, and why it is not the seed's $350,000.
    assert "$352,500: the true midpoint of $265,000-$440,000" in captions
    assert "$350,000" in captions
    annual = at.dataframe[2].value.set_index("Feature")
    assert annual.loc["Property Vision", "Goal (platform, a year)"] == "$75,000-$150,000"
    assert annual.loc["Churn Prevention", "Goal (platform, a year)"] == "$55,000-$80,000"
    experiments = at.dataframe[3].value
    assert "hold at 25%" in " ".join(map(str, experiments["Decision"]))
    # Multiple-testing correction across the stored features x metrics.
    assert experiments["p (Holm)"].notna().all()
    assert (experiments["p (Holm)"] >= experiments["p (Welch)"]).all()
    assert at.get("download_button")


async def _render(tenant: str, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("ROI_TENANT", tenant)
    at = await asyncio.to_thread(AppTest.from_string(SCRIPT, default_timeout=60).run)
    assert not at.exception, [e.value for e in at.exception]
    return at


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


async def test_the_page_prices_with_the_configured_assumptions(
    app_database_url: str, owner_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """IMPACT_ASSUMPTIONS changed `impact report` and the daily aggregate, not the page."""
    await _seed(app_database_url, owner_db)
    monkeypatch.setenv("ROI_DATABASE_URL", app_database_url)
    monkeypatch.setenv(
        "IMPACT_ASSUMPTIONS", '{"ai_coaching": {"annual_value_high": 100000, "lift": 0.2}}'
    )
    at = await _render("tenant-a", monkeypatch)
    assert _metrics(at)["Platform goal"] == "$265,000-$450,000"
    annual = at.dataframe[2].value.set_index("Feature")
    assert annual.loc["AI Coaching", "Goal (platform, a year)"] == "$60,000-$100,000"


async def test_loaded_data_is_reused_per_tenant_and_never_across_tenants(
    app_database_url: str, owner_db: Database, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The seed's ``@st.cache_data(ttl=300)``: a rerun within the TTL does not query, and
    the cache, shared by every session of the process, is keyed by the tenant."""
    assert CACHE_SECONDS == 300
    await seed_impact_history(app_database_url, ["tenant-a", "tenant-b"], days=30, today=TODAY)
    monkeypatch.setenv("ROI_DATABASE_URL", app_database_url)
    start = TODAY - timedelta(days=30)

    async def revenue(tenant: str) -> str:
        data = await load_roi(db, tenant, start, TODAY, assumptions=ASSUMPTIONS)
        return f"${data.summary['total_platform']['revenue']['point']:,.0f}"

    first_a = _metrics(await _render("tenant-a", monkeypatch))["Revenue impact"]
    assert first_a == await revenue("tenant-a")
    # tenant-a uses AI Coaching a lot today: stored, but not shown within the TTL.
    async with db.tenant("tenant-a") as conn:
        await conn.execute(
            "INSERT INTO phase3_business_metrics (metric_date, feature_name, usage_count, "
            "success_count, revenue_impact, operating_cost) "
            "VALUES ($1, 'ai_coaching', 1000, 1000, 20000, 10)",
            TODAY,
        )
    assert await revenue("tenant-a") != first_a
    assert _metrics(await _render("tenant-a", monkeypatch))["Revenue impact"] == first_a
    # Another tenant with the same dates gets its own numbers, not tenant-a's cached ones.
    b = _metrics(await _render("tenant-b", monkeypatch))["Revenue impact"]
    assert b == await revenue("tenant-b")
    assert b != first_a
    # Past the cache (cleared here in place of waiting 300 s), tenant-a's new row shows.
    st.cache_data.clear()
    assert _metrics(await _render("tenant-a", monkeypatch))["Revenue impact"] == await revenue(
        "tenant-a"
    )


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is absent")
async def test_page_in_headless_chromium(
    app_database_url: str, owner_db: Database, tmp_path: Path
) -> None:
    from playwright.async_api import async_playwright

    await _seed(app_database_url, owner_db)
    script = tmp_path / "roi_page.py"
    script.write_text(SCRIPT)
    port = free_port()
    env = {
        **os.environ,
        "ROI_DATABASE_URL": app_database_url,
        "ROI_TENANT": "tenant-a",
        "HOME": str(tmp_path),
        "PYTHONPATH": str(REPO),
    }
    log_path = tmp_path / "streamlit.log"
    log = log_path.open("wb")
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "streamlit", "run", str(script)),
        *("--server.headless", "true", "--server.address", "127.0.0.1"),
        *("--server.port", str(port), "--browser.gatherUsageStats", "false"),
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_healthy(url, process, log_path)
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=str(CHROMIUM),
                headless=True,
                args=[
                    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost, EXCLUDE 127.0.0.1"
                ],
            )
            try:
                page = await browser.new_page(viewport={"width": 1400, "height": 1000})
                await page.goto(url)
                await page.get_by_role(
                    "heading", name="Experiments and rollout decisions"
                ).wait_for(timeout=180_000)
                await page.locator(".js-plotly-plot").first.wait_for(timeout=120_000)
                assert await page.locator(".js-plotly-plot").count() == 3
                # The last element drawn: the page is complete once it is there.
                await page.get_by_text("Export data to CSV").wait_for(timeout=120_000)
                text = await page.inner_text("body")
                assert "Revenue impact" in text
                assert "Export data to CSV" in text
                shot = Path(os.environ.get("ROI_SCREENSHOT", tmp_path / "roi.png"))
                await page.screenshot(path=str(shot), full_page=True)
                assert len(await asyncio.to_thread(shot.read_bytes)) > 50_000
            finally:
                await browser.close()
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 20)
        log.close()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is absent")
async def test_roi_page_in_the_real_app_after_sign_in(
    dashboards_url: str,  # noqa: F811 - the fixture imported above
    app_database_url: str,
    owner_db: Database,
    make_token: Callable[..., str],
    tmp_path: Path,
) -> None:
    """``enterprisehub serve dashboards``, signed in as tenant-a, ROI page from the sidebar."""
    from playwright.async_api import async_playwright

    await _seed(app_database_url, owner_db)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost, EXCLUDE 127.0.0.1"],
        )
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 1000})
            await page.goto(dashboards_url)
            await page.get_by_label("Access token", exact=True).fill(make_token("tenant-a"))
            await page.get_by_role("button", name="Sign in").click()
            await page.get_by_role("link", name="Phase 3 ROI").click(timeout=120_000)
            await page.get_by_role("heading", name="Experiments and rollout decisions").wait_for(
                timeout=180_000
            )
            await page.locator(".js-plotly-plot").nth(2).wait_for(timeout=120_000)
            await page.get_by_text("Export data to CSV").wait_for(timeout=120_000)
            text = await page.inner_text("body")
            # Tables are drawn on a canvas; their content is checked under AppTest.
            assert "Revenue impact" in text
            assert "AI Coaching measured" in text
            assert "tenant-a" in await page.get_by_test_id("stSidebar").inner_text()
            shot = Path(os.environ.get("ROI_SCREENSHOT", tmp_path / "roi.png"))
            await page.screenshot(path=str(shot), full_page=True)
        finally:
            await browser.close()


@pytest.mark.parametrize(
    ("start", "end", "refusal"),
    [
        (TODAY - timedelta(days=MAX_PERIOD_DAYS), TODAY, f"at most {MAX_PERIOD_DAYS} days"),
        (TODAY - timedelta(days=3650), TODAY - timedelta(days=1), "at most"),
        (TODAY, TODAY - timedelta(days=1), "start date on or before the end date"),
    ],
)
async def test_the_page_refuses_a_period_it_cannot_price(
    app_database_url: str,
    owner_db: Database,
    monkeypatch: pytest.MonkeyPatch,
    start: Any,
    end: Any,
    refusal: str,
) -> None:
    # Ten years was one cache entry of every row of the tenant per start date a
    # session stepped through.
    await _seed(app_database_url, owner_db)
    monkeypatch.setenv("ROI_DATABASE_URL", app_database_url)
    at = await _render("tenant-a", monkeypatch)
    at.date_input(key="roi_start").set_value(start)
    at.date_input(key="roi_end").set_value(end)
    at = await asyncio.to_thread(at.run)
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.error) == 1
    assert refusal in at.error[0].value
    assert not at.header
    assert not at.metric


async def test_an_end_date_ahead_is_held_to_today(
    app_database_url: str, owner_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Days not yet lived diluted every per-day figure (the annual projection is
    # revenue x 365 / days): a month ahead cut the projection by half.
    await _seed(app_database_url, owner_db)
    monkeypatch.setenv("ROI_DATABASE_URL", app_database_url)
    at = await _render("tenant-a", monkeypatch)
    projected = _metrics(at)["Projected annual (this tenant)"]
    at.date_input(key="roi_end").set_value(TODAY + timedelta(days=30))
    at = await asyncio.to_thread(at.run)
    assert not at.exception, [e.value for e in at.exception]
    assert at.date_input(key="roi_end").value == TODAY
    assert _metrics(at)["Projected annual (this tenant)"] == projected
    assert period_problem(TODAY, TODAY + timedelta(days=1), today=TODAY) == (
        f"Choose an end date on or before today ({TODAY.isoformat()})."
    )


async def test_a_year_and_a_day_is_priced(
    app_database_url: str, owner_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _seed(app_database_url, owner_db)
    monkeypatch.setenv("ROI_DATABASE_URL", app_database_url)
    at = await _render("tenant-a", monkeypatch)
    at.date_input(key="roi_start").set_value(TODAY - timedelta(days=MAX_PERIOD_DAYS - 1))
    at = await asyncio.to_thread(at.run)
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error
    assert _metrics(at)["Revenue impact"].startswith("$")
