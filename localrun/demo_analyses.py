"""Demo photo analyses and coaching sessions, so the Claude pages have something to show.

``make run`` leaves Claude unconfigured unless ``ANTHROPIC_API_KEY`` is set,
so property vision and coaching answer 503 and their dashboards (Property
Intelligence, Agent Coaching) stayed empty while the ROI page showed a month
of their usage. ``seed_analyses`` stores, per demo tenant, a few finished
photo analyses and coaching sessions in exactly the shape the services store
them: the results are validated by the services' own models
(``VisionAnalysis``, ``CoachingInsights``), the coaching metrics come from
the coaching service's ``compute_metrics`` over a demo transcript. The rows
carry the model name ``demo-seed``, never a Claude model's, so nothing takes
them for Claude's answers. Deterministic; a tenant's existing rows are kept.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from localrun.demo import DEMO_AGENTS
from services.coaching.analysis import CoachingInsights, Insight
from services.coaching.conversation import compute_metrics
from services.coaching.schemas import TranscriptMessage
from services.ml.vision.analysis import Defect, RoomType, Severity, VisionAnalysis, two_decimals

SEED_MODEL = "demo-seed"
SEED_PROMPT_VERSION = "demo"
#: (input tokens, output tokens, cost in micro-dollars) of one analysis, about
#: what Claude's photo analyses and coaching sessions cost.
DEMO_PHOTO_USAGE = (1_900, 350, 11_000)
DEMO_SESSION_USAGE = (2_400, 600, 16_000)


@dataclass(frozen=True)
class DemoPhoto:
    """One listing photo and what its analysis says."""

    property_id: str
    room: RoomType
    luxury: float
    condition: float
    defects: tuple[Defect, ...] = ()


PHOTOS: tuple[DemoPhoto, ...] = (
    DemoPhoto("prop-12-elm-st", RoomType.EXTERIOR, 0.62, 0.81),
    DemoPhoto("prop-12-elm-st", RoomType.KITCHEN, 0.74, 0.88),
    DemoPhoto(
        "prop-12-elm-st",
        RoomType.BATHROOM,
        0.55,
        0.47,
        (Defect(description="water stain on the ceiling", severity=Severity.MAJOR),),
    ),
    DemoPhoto("prop-48-harbor-view", RoomType.LIVING_ROOM, 0.91, 0.93),
    DemoPhoto(
        "prop-48-harbor-view",
        RoomType.OUTDOOR,
        0.88,
        0.90,
        (Defect(description="loose railing on the deck stairs", severity=Severity.MODERATE),),
    ),
    DemoPhoto(
        "prop-7-mill-rd",
        RoomType.BEDROOM,
        0.35,
        0.52,
        (
            Defect(description="cracked window pane", severity=Severity.MAJOR),
            Defect(description="worn carpet", severity=Severity.MINOR),
        ),
    ),
    DemoPhoto("prop-7-mill-rd", RoomType.GARAGE, 0.20, 0.41),
)
#: One demo conversation: (speaker, text); the lead raises a price objection.
CONVERSATION: tuple[tuple[Literal["agent", "lead"], str], ...] = (
    ("lead", "Hi, I saw the listing on Elm Street. Is it still available?"),
    ("agent", "It is! Are you looking to move soon, and would you like to see it this week?"),
    ("lead", "Maybe, but honestly the price is too high for us."),
    ("agent", "I understand. Comparable homes nearby sold for a little more; want the numbers?"),
    ("lead", "Sure, send them over."),
)
#: What the demo sessions say the agents should improve: (title, detail).
IMPROVEMENT_AREAS: tuple[tuple[str, str], ...] = (
    ("Handle price objections with evidence", "Lead with two recent comparable sales."),
    ("Ask about the financing early", "Ask whether the lead is pre-approved in the first call."),
    ("Listen more than you talk", "Let the lead finish before proposing the next step."),
)


def photo_analysis(photo: DemoPhoto) -> VisionAnalysis:
    """The photo's analysis as the vision service stores it (validated by its model)."""
    return VisionAnalysis(
        room_type=photo.room,
        luxury_score=photo.luxury,
        condition_score=photo.condition,
        features=["natural light", "hardwood floors"]
        if photo.luxury > 0.5
        else ["original fixtures"],
        defects=list(photo.defects),
        summary=f"A {photo.room.value.replace('_', ' ')} in "
        f"{'good' if photo.condition > 0.6 else 'fair'} condition (demo data, not Claude's).",
    )


def coaching_session(
    agent_id: str, started: datetime, area: tuple[str, str]
) -> tuple[dict[str, Any], CoachingInsights]:
    """The demo conversation's metrics and insights (``area``: the improvement area's
    title and detail), as the coaching service stores them."""
    title, detail = area
    messages = [
        TranscriptMessage(
            id=f"m{i}",
            speaker=speaker,
            text=text,
            timestamp=started + timedelta(minutes=2 * i),
        )
        for i, (speaker, text) in enumerate(CONVERSATION, 1)
    ]
    insights = CoachingInsights(
        strengths=[
            Insight(
                title="Offers a viewing early",
                message_ids=["m2"],
                detail="Asks about timing and proposes a showing in the first reply.",
            )
        ],
        improvement_areas=[Insight(title=title, detail=detail, message_ids=["m3", "m4"])],
        next_best_actions=[
            Insight(
                title="Send comparables today",
                message_ids=["m5"],
                detail="Follow up with three comparable sales and a showing time.",
            )
        ],
        summary=f"{agent_id} keeps the lead engaged; the price objection needs evidence "
        "(demo data, not Claude's).",
    )
    return compute_metrics(messages), insights


_PHOTO_SQL = (
    "INSERT INTO property_vision_analyses (property_id, image_url, image_sha256, model, "
    "prompt_version, status, source, analysis_results, luxury_score, condition_score, "
    "analysis_latency_seconds, created_at, input_tokens, output_tokens, cost_micro_usd) "
    "VALUES ($1, $2, $3, $4, $5, 'done', 'upload', $6, $7, $8, $9, $10, $11, $12, $13) "
    "ON CONFLICT (tenant_id, image_sha256, model, prompt_version) DO NOTHING "
    "RETURNING analysis_id"
)
_SESSION_SQL = (
    "INSERT INTO coaching_sessions (agent_id, conversation_id, analysis_data, "
    "coaching_insights, analysis_latency_seconds, improvement_areas, created_at, model, "
    "prompt_version, input_tokens, output_tokens, cost_micro_usd) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
)


async def seed_analyses(
    database_url: str, tenants: Sequence[str], *, now: datetime | None = None
) -> int:
    """Store the demo photos, and a week of coaching sessions, for each tenant.

    Returns the number of rows written: a photo already stored is skipped, and
    a tenant that has coaching sessions gets no new ones.
    """
    from services.common.database import Database

    now = now or datetime.now(UTC)
    rng = random.Random(20261205)  # noqa: S311 - reproducible demo data
    db = await Database.open(database_url, max_size=2)
    written = 0
    try:
        for tenant in tenants:
            async with db.tenant(tenant) as conn:
                written += await _store_photos(conn, tenant, rng=rng, now=now)
                if not await conn.fetchval("SELECT count(*) FROM coaching_sessions"):
                    written += await _store_sessions(conn, rng=rng, now=now)
    finally:
        await db.close()
    return written


async def _store_photos(conn: Any, tenant: str, *, rng: random.Random, now: datetime) -> int:
    """Each photo of ``PHOTOS``, analysed and linked to its property, newest first."""
    written = 0
    for n, photo in enumerate(PHOTOS):
        posted_at = now - timedelta(hours=n)
        analysis_id = await conn.fetchval(
            _PHOTO_SQL,
            photo.property_id,
            f"demo://{photo.property_id}/photo-{n}.jpg",
            hashlib.sha256(f"{tenant}/{photo.property_id}/{n}".encode()).hexdigest(),
            SEED_MODEL,
            SEED_PROMPT_VERSION,
            photo_analysis(photo).model_dump(mode="json"),
            two_decimals(photo.luxury),
            two_decimals(photo.condition),
            rng.uniform(0.8, 1.4),  # seconds, as a Claude vision call takes
            posted_at,
            *DEMO_PHOTO_USAGE,
        )
        if analysis_id is not None:
            await conn.execute(
                "INSERT INTO property_vision_links (property_id, analysis_id, posted_at) "
                "VALUES ($1, $2, $3)",
                photo.property_id,
                analysis_id,
                posted_at,
            )
            written += 2
    return written


async def _store_sessions(conn: Any, *, rng: random.Random, now: datetime) -> int:
    """One coaching session per demo agent and day, over the last week."""
    written = 0
    for day in range(7):
        for agent in DEMO_AGENTS:
            started = now - timedelta(days=day, hours=rng.randint(1, 8))
            metrics, insights = coaching_session(agent, started, rng.choice(IMPROVEMENT_AREAS))
            await conn.execute(
                _SESSION_SQL,
                agent,
                f"demo-{agent}-{day}",
                metrics,
                insights.model_dump(mode="json"),
                rng.uniform(1.1, 1.9),  # seconds, as a coaching analysis takes
                [area.title for area in insights.improvement_areas],
                started,
                SEED_MODEL,
                SEED_PROMPT_VERSION,
                *DEMO_SESSION_USAGE,
            )
            written += 1
    return written
