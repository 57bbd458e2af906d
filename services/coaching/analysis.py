"""One coaching analysis: budget check, slot, Claude's structured coaching, storage.

- Input budget: a transcript is estimated at one token per 3 bytes of prompt
  (English averages about 4, so this over-counts); only when that estimate
  exceeds COACHING_MAX_INPUT_TOKENS is ``count_tokens`` asked for the exact
  number. Over budget is a 422 before any billable call.
- Concurrency: at most COACHING_MAX_CONCURRENT_ANALYSES at once in this
  replica, and COACHING_MAX_CONCURRENT_ANALYSES_PER_TENANT of one tenant (one
  tenant's burst took every slot and every other tenant got 429); one more is
  answered 429 with ``Retry-After`` at once, never queued.
  A copy waiting for another copy's analysis of the same transcript calls
  nothing and takes no slot.
- COACHING_SESSION_TIMEOUT bounds the whole analysis (504 after it).
- Citations: every insight cites message ids; an id that is not in the
  transcript fails validation like a schema error (one repair, then 502).
- A transcript already analysed with the same model and prompt version is
  answered from ``coaching_sessions`` without a call.
- Exactly one call per transcript: copies of a request that arrive together
  (retries, replicas) race for a claim in ``coaching_claims`` (revision
  0014), in the statement that looks for a stored session; the winner calls
  Claude and deletes the claim in the transaction that stores the session,
  the others wait for that session. The claim is given back early only where
  no session can follow (the call failed or was cancelled, or the store
  failed): a billed answer still being stored after COACHING_SESSION_TIMEOUT
  keeps it.
  Sessions are keyed by the configured model (CLAUDE_MODEL), the one a repeat
  is looked up by, not by the snapshot id the API reports for an alias.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from pydantic import BaseModel, ConfigDict, Field

from services.coaching.conversation import compute_metrics
from services.coaching.prompt import PROMPT_VERSION, SYSTEM_PROMPT, request_params
from services.coaching.schemas import CoachingSessionCreate
from services.common.claude import ClaudeBusy, ClaudeClient, ClaudeTimeout, StructuredResult
from services.common.claude.ledger import insert_args as ledger_insert_args
from services.common.claude.ledger import insert_sql as ledger_insert_sql
from services.common.database import Database
from services.common.latency import LatencyWindow

FEATURE: Final = "ai_coaching"
BYTES_PER_TOKEN_ESTIMATE: Final = 3
BUSY_RETRY_AFTER_SECONDS: Final = 2
#: How often a copy waiting for another copy's analysis looks for its session.
CLAIM_POLL_SECONDS: Final = 0.1
#: A claim older than COACHING_SESSION_TIMEOUT plus this belongs to a copy that
#: died (a live owner gives up at the timeout and releases its claim).
CLAIM_STALE_MARGIN_SECONDS: Final = 30.0
SESSION_COLUMNS: Final = (
    "session_id, agent_id, conversation_id, analysis_data, coaching_insights, "
    "analysis_latency_seconds, improvement_areas, transcript_sha256, model, prompt_version, "
    "input_tokens, output_tokens, cache_write_tokens, cache_read_tokens, cost_micro_usd, "
    "created_at"
)

#: The newest session of a transcript (index ``idx_coaching_tenant_transcript``).
FIND_SESSION: Final = (
    f"SELECT {SESSION_COLUMNS} FROM coaching_sessions "  # noqa: S608 - constant parts only
    "WHERE transcript_sha256 = $1 AND model = $2 AND prompt_version = $3 "
    "ORDER BY created_at DESC LIMIT 1"
)

# One statement answers a repeat or, when nothing is stored, takes the claim:
# by inserting it, or by taking over a stale one. Nothing is written on a hit.
_FIND_OR_CLAIM: Final = (
    f"WITH stored AS ({FIND_SESSION}), "  # noqa: S608 - constant parts only
    "claimed AS (INSERT INTO coaching_claims (transcript_sha256, model, prompt_version) "
    "SELECT $1, $2, $3 WHERE NOT EXISTS (SELECT FROM stored) "
    "ON CONFLICT (tenant_id, transcript_sha256, model, prompt_version) "
    "DO UPDATE SET claimed_at = clock_timestamp() "
    "WHERE coaching_claims.claimed_at < clock_timestamp() - make_interval(secs => $4) "
    "RETURNING claimed_at) "
    "SELECT EXISTS (SELECT FROM claimed) AS won, stored.* "
    "FROM (VALUES (1)) AS one LEFT JOIN stored ON true"
)
_RELEASE: Final = (
    "DELETE FROM coaching_claims "
    "WHERE transcript_sha256 = $1 AND model = $2 AND prompt_version = $3"
)
# The ledger rows of the calls go in with the session, and the claim goes out
# with it: CTEs of the INSERT.
_INSERT_SESSION: Final = (
    f"WITH booked AS ({ledger_insert_sql(15)}), "  # noqa: S608 - constant parts only
    "released AS (DELETE FROM coaching_claims "
    "WHERE transcript_sha256 = $7 AND model = $8 AND prompt_version = $9) "
    "INSERT INTO coaching_sessions (agent_id, conversation_id, analysis_data, "
    "coaching_insights, analysis_latency_seconds, improvement_areas, "
    "transcript_sha256, model, prompt_version, input_tokens, output_tokens, "
    "cache_write_tokens, cache_read_tokens, cost_micro_usd) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) "
    f"RETURNING {SESSION_COLUMNS}"
)


class TranscriptTooLong(ValueError):  # noqa: N818 - reads as the condition
    """The transcript does not fit the input budget (422)."""

    reason = "transcript_too_long"


class Insight(BaseModel):
    """One strength, improvement area or action, with the messages it rests on."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=120)
    detail: str = Field(min_length=1, max_length=1_000)
    message_ids: list[str] = Field(min_length=1, max_length=20)


class CoachingInsights(BaseModel):
    """Claude's structured coaching."""

    model_config = ConfigDict(extra="forbid")

    strengths: list[Insight] = Field(min_length=1, max_length=5)
    improvement_areas: list[Insight] = Field(min_length=1, max_length=5)
    next_best_actions: list[Insight] = Field(min_length=1, max_length=5)
    summary: str = Field(min_length=1, max_length=1_000)


def citation_check(known: set[str]) -> Any:
    """A validator refusing insights that cite ids outside ``known``."""

    def check(insights: CoachingInsights) -> None:
        cited = {
            message_id
            for group in (
                insights.strengths,
                insights.improvement_areas,
                insights.next_best_actions,
            )
            for insight in group
            for message_id in insight.message_ids
        }
        unknown = sorted(cited - known)
        if unknown:
            raise ValueError(f"cites message ids that are not in the transcript: {unknown[:10]}")

    return check


def transcript_sha256(body: CoachingSessionCreate) -> str:
    """The transcript's identity (agent, conversation and messages, canonical JSON)."""
    payload = body.model_dump(mode="json")
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(slots=True, eq=False, kw_only=True)
class CoachingEngine:
    """Runs analyses under the limits of the module docstring."""

    db: Database
    max_concurrent: int
    session_timeout: float
    max_input_tokens: int
    max_output_tokens: int
    latency: LatencyWindow = field(default_factory=lambda: LatencyWindow(max_samples=1000))
    #: Default: no share below the replica's (engines built without one, in tests).
    max_concurrent_per_tenant: int | None = None
    _active: int = field(default=0, init=False)
    _active_by_tenant: dict[str, int] = field(default_factory=dict, init=False)

    @property
    def active(self) -> int:
        """Analyses running now in this replica."""
        return self._active

    async def _fits_budget(self, claude: ClaudeClient, params: dict[str, Any]) -> None:
        prompt_bytes = len(SYSTEM_PROMPT.encode()) + len(params["messages"][0]["content"].encode())
        if prompt_bytes / BYTES_PER_TOKEN_ESTIMATE <= self.max_input_tokens:
            return
        tokens = await claude.count_tokens(system=params["system"], messages=params["messages"])
        if tokens > self.max_input_tokens:
            raise TranscriptTooLong(
                f"the transcript needs {tokens} input tokens; the limit is {self.max_input_tokens}"
            )

    async def analyse(
        self, *, claude: ClaudeClient, tenant_id: str, body: CoachingSessionCreate
    ) -> tuple[dict[str, Any], bool]:
        """The stored session and whether it was already there (no call made)."""
        digest = transcript_sha256(body)
        won, existing = await self._find_or_claim(tenant_id, digest, claude.model)
        if existing is not None:
            return existing, True
        if won:
            # Refused at once, before the timeout's clock starts.
            await self._take_slot(tenant_id, digest, claude.model)
        try:
            async with asyncio.timeout(self.session_timeout):
                return await self._claimed(claude, tenant_id, body, digest, won=won)
        except TimeoutError:
            raise ClaudeTimeout(
                "coaching_timeout",
                "the analysis took longer than COACHING_SESSION_TIMEOUT "
                f"({self.session_timeout:g} s)",
            ) from None

    async def _take_slot(self, tenant_id: str, digest: str, model: str) -> None:
        """One of COACHING_MAX_CONCURRENT_ANALYSES for the claim this copy holds, or
        ``ClaudeBusy`` with the claim given back (shielded: a timeout must not skip it).

        Only a copy that calls Claude takes a slot: one waiting for another
        copy's session calls nothing, and holding a slot while it waited let one
        client's retries of a transcript (one call billed) refuse every other.
        """
        tenant_active = self._active_by_tenant.get(tenant_id, 0)
        share = self.max_concurrent_per_tenant
        if self._active >= self.max_concurrent or (share is not None and tenant_active >= share):
            await asyncio.shield(self._release(tenant_id, digest, model))
            running = (
                f"{self.max_concurrent} analyses are running"
                if self._active >= self.max_concurrent
                else f"{share} analyses of this tenant are running"
            )
            raise ClaudeBusy(
                "too_many_analyses",
                f"{running}; retry shortly",
                retry_after=BUSY_RETRY_AFTER_SECONDS,
            )
        self._active += 1
        self._active_by_tenant[tenant_id] = tenant_active + 1

    def _give_slot_back(self, tenant_id: str) -> None:
        self._active -= 1
        left = self._active_by_tenant[tenant_id] - 1
        if left:
            self._active_by_tenant[tenant_id] = left
        else:
            del self._active_by_tenant[tenant_id]

    async def _claimed(
        self,
        claude: ClaudeClient,
        tenant_id: str,
        body: CoachingSessionCreate,
        digest: str,
        *,
        won: bool,
    ) -> tuple[dict[str, Any], bool]:
        """Run the analysis if this copy holds the claim (and its slot), else wait for the
        holder's session, taking the claim and a slot if the holder gives it back."""
        if not won:
            while not won:
                await asyncio.sleep(CLAIM_POLL_SECONDS)
                won, existing = await self._poll(tenant_id, digest, claude.model)
                if existing is not None:
                    return existing, True
            await self._take_slot(tenant_id, digest, claude.model)
        try:
            return await self._run(claude, tenant_id, body, digest), False
        finally:
            self._give_slot_back(tenant_id)

    async def _poll(
        self, tenant_id: str, digest: str, model: str
    ) -> tuple[bool, dict[str, Any] | None]:
        """`_find_or_claim` for a copy that waits, under COACHING_SESSION_TIMEOUT.

        The timeout may fire while the statement is taking the claim: the copy
        would then give up holding a claim nobody runs, and every copy of the
        transcript would wait for it to go stale. So the statement finishes
        (shielded), and a claim it took is given back.
        """
        attempt = asyncio.ensure_future(self._find_or_claim(tenant_id, digest, model))
        try:
            return await asyncio.shield(attempt)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                won, _ = await attempt
                if won:
                    await self._release(tenant_id, digest, model)
            raise

    async def _find_or_claim(
        self, tenant_id: str, digest: str, model: str
    ) -> tuple[bool, dict[str, Any] | None]:
        """The stored session if there is one, else whether this copy holds the claim now.

        The previous holder deletes its claim in the transaction that stores its
        session; one that committed after this statement's snapshot was taken
        lets the claim be won with its session unseen, so a won claim looks
        again (a new snapshot) before it is kept.
        """
        async with self.db.tenant(tenant_id) as conn:
            row = dict(
                await conn.fetchrow(
                    _FIND_OR_CLAIM,
                    digest,
                    model,
                    PROMPT_VERSION,
                    self.session_timeout + CLAIM_STALE_MARGIN_SECONDS,
                )
            )
            won = row.pop("won")
            if row["session_id"] is not None:
                return False, row
            if not won:
                return False, None
            stored = await conn.fetchrow(FIND_SESSION, digest, model, PROMPT_VERSION)
            if stored is not None:
                await conn.execute(_RELEASE, digest, model, PROMPT_VERSION)
                return False, dict(stored)
        return True, None

    async def _release(self, tenant_id: str, digest: str, model: str) -> None:
        async with self.db.tenant(tenant_id) as conn:
            await conn.execute(_RELEASE, digest, model, PROMPT_VERSION)

    async def _run(
        self, claude: ClaudeClient, tenant_id: str, body: CoachingSessionCreate, digest: str
    ) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            metrics = compute_metrics(body.messages)
            params = request_params(body.messages, metrics, max_tokens=self.max_output_tokens)
            await self._fits_budget(claude, params)
            # The ledger rows are stored with the session (one transaction); on
            # an exception the client has booked the calls it made.
            result = await claude.structured(
                tenant_id=tenant_id,
                feature=FEATURE,
                output_format=CoachingInsights,
                validate=citation_check({m.id for m in body.messages}),
                defer_ledger=True,
                **params,
            )
        except BaseException:
            # No session will be stored: give the claim back so that a later
            # copy tries again (shielded: a timeout must not skip it).
            await asyncio.shield(self._release(tenant_id, digest, claude.model))
            raise
        latency = time.perf_counter() - started
        self.latency.record(latency)
        # Shielded from COACHING_SESSION_TIMEOUT: a billed answer is stored
        # (and its cost booked) even when the caller has stopped waiting, and
        # the claim stays held until the session is in: released here, a copy
        # arriving while the store commits would win it and call Claude again.
        return await asyncio.shield(
            self._store(claude, tenant_id, body, digest, metrics, result, latency)
        )

    async def _store(
        self,
        claude: ClaudeClient,
        tenant_id: str,
        body: CoachingSessionCreate,
        digest: str,
        metrics: dict[str, Any],
        result: StructuredResult[CoachingInsights],
        latency: float,
    ) -> dict[str, Any]:
        insights = result.output
        try:
            async with self.db.tenant(tenant_id) as conn:
                row = await conn.fetchrow(
                    _INSERT_SESSION,
                    body.agent_id,
                    body.conversation_id,
                    metrics,
                    insights.model_dump(mode="json"),
                    latency,
                    [area.title for area in insights.improvement_areas],
                    digest,
                    claude.model,
                    PROMPT_VERSION,
                    result.usage.input_tokens,
                    result.usage.output_tokens,
                    result.usage.cache_write_tokens,
                    result.usage.cache_read_tokens,
                    result.cost_micro_usd,
                    *ledger_insert_args(result.ledger),
                )
        except Exception:
            # The calls were billed whatever happened to the session's row;
            # without a session, the claim goes back for a later copy.
            await claude.book(result.ledger)
            # Unreleased (the database may be what failed), the claim goes
            # stale after COACHING_SESSION_TIMEOUT + CLAIM_STALE_MARGIN_SECONDS.
            with contextlib.suppress(Exception):
                await self._release(tenant_id, digest, claude.model)
            raise
        return dict(row)

    async def get(self, tenant_id: str, session_id: Any) -> dict[str, Any] | None:
        """One session of the tenant, or None."""
        async with self.db.tenant(tenant_id) as conn:
            row = await conn.fetchrow(
                f"SELECT {SESSION_COLUMNS} FROM coaching_sessions WHERE session_id = $1",  # noqa: S608
                session_id,
            )
        return dict(row) if row is not None else None

    async def list(self, tenant_id: str, agent_id: str, *, limit: int = 50) -> list[dict[str, Any]]:
        """An agent's sessions, newest first."""
        async with self.db.tenant(tenant_id) as conn:
            rows = await conn.fetch(
                f"SELECT {SESSION_COLUMNS} FROM coaching_sessions "  # noqa: S608 - constant
                "WHERE agent_id = $1 ORDER BY created_at DESC LIMIT $2",
                agent_id,
                limit,
            )
        return [dict(row) for row in rows]
