"""Token revocation in every service built with ``create_app``: the list read from the
real Postgres by the lifespan, checked by the one verifier on every request.

A leaked token used to work until it expired (30 days for a CRM token by
default); the only remedy, rotating the signing key, signed out every user of
every tenant.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from services.common.auth import AuthError, TokenVerifier
from services.common.database import Database
from services.common.revocation_store import list_active, read_active, revoke
from services.common.settings import CommonSettings
from services.impact.retention import Cutoffs, prune
from services.migrations.runner import migrate
from tests.conftest import APP_PASSWORD
from tests.revocations import (
    FAST_REFRESH,
    PostgresProxy,
    eventually,
    gauge,
    revoke_now,
    token_id,
)
from tests.schema_history import downgrade_to

AppClient = Callable[[FastAPI], AbstractAsyncContextManager[httpx.AsyncClient]]
BuildApp = Callable[..., FastAPI]
EVENTS = "/v1/test-events"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _signed(settings: CommonSettings, **claims: object) -> str:
    """A token with exactly these claims (a jti of the test's choosing), signed with the
    active key, as only ``issue_token`` can sign them in production."""
    now = int(time.time())
    body = {"iat": now, "exp": now + 600, "scope": "feed:read crm:ingest", **claims}
    return jwt.encode(
        body,
        settings.jwt_secret_key.get_secret_value(),
        algorithm="HS256",
        headers={"kid": settings.jwt_key_id},
    )


async def _reason(client: httpx.AsyncClient, token: str) -> str:
    response = await client.get(EVENTS, headers=_bearer(token))
    if response.status_code == 200:
        return "ok"
    reason: str = response.json()["reason"]
    return reason


async def test_a_revoked_token_is_refused_after_it_was_remembered_as_verified(
    build_app: BuildApp, app_client: AppClient, make_token: Callable[..., str], db: Database
) -> None:
    """The verified-token cache answered byte-equal copies of a token without a second
    look at anything but its time claims: a revocation must still reach it."""
    token = make_token("tenant-a")
    other = make_token("tenant-a")
    app = build_app(auth_revocation_refresh_seconds=FAST_REFRESH)
    async with app_client(app) as client:
        assert await _reason(client, token) == "ok"  # verified, and now remembered
        await revoke_now(db, "tenant-a", jti=token_id(token))

        async def refused() -> bool:
            return await _reason(client, token) == "revoked_token"

        await eventually(refused)
        response = await client.get(EVENTS, headers=_bearer(token))
        # Bodies too: the edge guard refuses before reading one.
        posted = await client.post(
            EVENTS, headers=_bearer(token), json={"lead_id": "l", "event_type": "t"}
        )
        assert await _reason(client, other) == "ok"  # another token of the same agent
    assert response.status_code == 401
    assert response.json() == {
        "detail": "token has been revoked; ask for a new one",
        "reason": "revoked_token",
    }
    assert response.headers["www-authenticate"] == (
        'Bearer error="invalid_token", error_description="revoked_token"'
    )
    assert (posted.status_code, posted.json()["reason"]) == (401, "revoked_token")


async def test_a_token_revoked_before_the_start_is_refused_at_once(
    build_app: BuildApp, app_client: AppClient, make_token: Callable[..., str], db: Database
) -> None:
    """The lifespan reads the list before the app serves: no window after a restart."""
    token = make_token("tenant-a")
    await revoke_now(db, "tenant-a", jti=token_id(token))
    # A refresh interval far longer than the test: only the first read can refuse it.
    async with app_client(build_app(auth_revocation_refresh_seconds=300)) as client:
        assert await _reason(client, token) == "revoked_token"


async def test_a_subject_revocation_signs_out_its_tokens_issued_until_then_only(
    settings: CommonSettings,
    build_app: BuildApp,
    app_client: AppClient,
    make_token: Callable[..., str],
    db: Database,
) -> None:
    earlier = make_token("tenant-a", subject="agent-7")
    colleague = make_token("tenant-a", subject="agent-8")
    # Without a leeway, "issued until then" is exact to the second of iat.
    app = build_app(auth_revocation_refresh_seconds=FAST_REFRESH, jwt_leeway_seconds=0.0)
    async with app_client(app) as client:
        revoked = await revoke_now(db, "tenant-a", subject="agent-7")

        async def refused() -> bool:
            return await _reason(client, earlier) == "revoked_token"

        await eventually(refused)
        # iat is whole seconds: a token of the revocation's own second is issued "until then".
        while int(time.time()) <= revoked.revoked_at.timestamp():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        later = make_token("tenant-a", subject="agent-7")
        assert await _reason(client, later) == "ok"
        assert await _reason(client, colleague) == "ok"
        assert await _reason(client, earlier) == "revoked_token"


async def test_a_subject_revocation_covers_tokens_issued_within_the_leeway_after_it(
    settings: CommonSettings, make_token: Callable[..., str], db: Database
) -> None:
    """The minting host's clock may run ahead of Postgres's by up to the leeway: a token
    minted just before the revocation could carry an iat just after it."""
    revoked = await revoke_now(db, "tenant-a", subject="agent-7")
    skewed = revoked.revoked_at.timestamp() + settings.jwt_leeway_seconds - 1
    token = make_token("tenant-a", subject="agent-7", now=skewed)
    listed = await read_active(db)
    verifier = TokenVerifier.from_settings(settings)
    verifier.revocations.replace(listed)
    with pytest.raises(AuthError) as refused:
        verifier.verify(token)
    assert refused.value.reason == "revoked_token"


async def test_a_revocation_in_one_tenant_spares_the_same_jti_and_subject_in_another(
    settings: CommonSettings, build_app: BuildApp, app_client: AppClient, db: Database
) -> None:
    jti = uuid.uuid4().hex
    mine = _signed(settings, tid="tenant-a", sub="agent-1", jti=jti)
    theirs = _signed(settings, tid="tenant-b", sub="agent-1", jti=jti)
    theirs_other = _signed(settings, tid="tenant-b", sub="agent-1", jti=uuid.uuid4().hex)
    async with app_client(build_app(auth_revocation_refresh_seconds=FAST_REFRESH)) as client:
        await revoke_now(db, "tenant-a", jti=jti)
        await revoke_now(db, "tenant-a", subject="agent-1")

        async def refused() -> bool:
            return await _reason(client, mine) == "revoked_token"

        await eventually(refused)
        assert await _reason(client, theirs) == "ok"
        assert await _reason(client, theirs_other) == "ok"
    # Nor can tenant B's operator see (or list) tenant A's revocations.
    assert await list_active(db, "tenant-b") == []
    assert [r.jti for r in await list_active(db, "tenant-a")] == [jti, None]


async def test_revoking_the_same_token_twice_is_one_row_and_no_error(
    db: Database, owner_db: Database
) -> None:
    jti = uuid.uuid4().hex
    first, existed_before = await revoke(
        db, "tenant-a", jti=jti, actor="alice", reason="leaked", keep_seconds=60
    )
    again, existed = await revoke(
        db, "tenant-a", jti=jti, actor="bob", reason="leaked again", keep_seconds=600
    )
    assert (existed_before, existed) == (False, True)
    assert again == first  # the first revocation, unchanged
    subject, _ = await revoke(
        db, "tenant-a", subject="agent-1", actor="alice", reason="lost laptop", keep_seconds=60
    )
    moved, subject_existed = await revoke(
        db, "tenant-a", subject="agent-1", actor="bob", reason="again", keep_seconds=60
    )
    assert subject_existed
    # A later "sign out everywhere" moves the time forward, never back.
    assert moved.revoked_at >= subject.revoked_at
    assert (moved.actor, moved.reason) == ("bob", "again")
    async with owner_db.unscoped() as conn:
        rows = await conn.fetchval("SELECT count(*) FROM auth_token_revocations")
    assert rows == 2


async def test_the_services_read_no_actor_or_reason_and_no_tenant_rows_directly(
    db: Database,
) -> None:
    """The application role reads every tenant's revocations through one function that
    returns what a verifier compares; the table itself stays under row-level security."""
    await revoke_now(db, "tenant-a", jti=uuid.uuid4().hex)
    async with db.unscoped() as conn:
        direct = await conn.fetch("SELECT * FROM auth_token_revocations")
        through = await conn.fetch("SELECT * FROM token_revocations_active()")
    assert direct == []
    assert [list(row.keys()) for row in through] == [["tenant_id", "jti", "subject", "revoked_at"]]


async def test_the_retention_prune_deletes_revocations_past_their_keep_until(
    db: Database, owner_db: Database
) -> None:
    await revoke_now(db, "tenant-a", jti=uuid.uuid4().hex)
    kept = await revoke_now(db, "tenant-b", jti=uuid.uuid4().hex)
    async with owner_db.unscoped() as conn:
        # Only tenant A's is past: revoked two days ago, kept a day.
        await conn.execute(
            "UPDATE auth_token_revocations SET revoked_at = now() - interval '2 days', "
            "keep_until = now() - interval '1 day' WHERE tenant_id = 'tenant-a'"
        )
    now = datetime.now(UTC)
    totals = await prune(db, Cutoffs.of(now, event_days=30, metric_days=365), batch_size=10)
    pruned = {total.table: total for total in totals}["auth_token_revocations"]
    assert (pruned.rows, pruned.tenants, pruned.failed) == (1, 1, 0)
    assert await list_active(db, "tenant-a") == []
    assert [r.jti for r in await list_active(db, "tenant-b")] == [kept.jti]
    assert now - timedelta(seconds=1) < pruned.cutoff  # type: ignore[operator]


async def test_a_stale_list_keeps_refusing_what_it_revoked(
    settings: CommonSettings,
    build_app: BuildApp,
    app_client: AppClient,
    make_token: Callable[..., str],
    db: Database,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Postgres out of reach: the list last read stays in force, its age grows in
    auth_revocations_age_seconds, and the warning names no credential."""
    proxy = PostgresProxy(settings.database_url.get_secret_value())
    await proxy.start()
    token = make_token("tenant-a")
    app = build_app(auth_revocation_refresh_seconds=FAST_REFRESH, database_url=SecretStr(proxy.dsn))
    try:
        async with app_client(app) as client:
            await revoke_now(db, "tenant-a", jti=token_id(token))

            async def refused() -> bool:
                return await _reason(client, token) == "revoked_token"

            await eventually(refused)
            await proxy.stop()
            registry = app.state.registry

            async def stale() -> bool:
                return gauge(registry, "auth_revocations_age_seconds") > 5 * FAST_REFRESH

            with caplog.at_level(logging.WARNING, logger="services.common.revocation_store"):
                await eventually(stale)
                assert await _reason(client, token) == "revoked_token"
    finally:
        await proxy.stop()
    warnings = [r.getMessage() for r in caplog.records if "token revocations" in r.getMessage()]
    assert warnings
    assert "still refusing the list read" in warnings[-1]
    assert not any(APP_PASSWORD in line for line in warnings)


async def test_a_service_started_during_an_outage_serves_then_refuses_once_it_reads(
    settings: CommonSettings,
    build_app: BuildApp,
    app_client: AppClient,
    make_token: Callable[..., str],
    db: Database,
) -> None:
    """Before its first read a process refuses nothing as revoked (failing closed would
    refuse every tenant's every request while Postgres is down, scoring's included); it
    says so in the gauge, and refuses what was revoked as soon as it can read."""
    token = make_token("tenant-a")
    await revoke_now(db, "tenant-a", jti=token_id(token))
    proxy = PostgresProxy(settings.database_url.get_secret_value())  # not started: an outage
    app = build_app(auth_revocation_refresh_seconds=FAST_REFRESH, database_url=SecretStr(proxy.dsn))
    try:
        async with app_client(app) as client:
            # A route that needs only Redis serves the token: nothing says it is revoked yet.
            seen = await client.post("/v1/test-events/lead-1/seen", headers=_bearer(token))
            assert seen.status_code == 200
            assert not app.state.token_verifier.revocations.loaded
            assert gauge(app.state.registry, "auth_revocations_age_seconds") >= 0
            await proxy.start()

            async def refused() -> bool:
                answer = await client.post("/v1/test-events/lead-1/seen", headers=_bearer(token))
                return answer.status_code == 401 and answer.json()["reason"] == "revoked_token"

            await eventually(refused)
    finally:
        await proxy.stop()


async def test_the_revision_downgrades_and_upgrades_again(
    settings: CommonSettings, db: Database, owner_db: Database
) -> None:
    """Data-migration tests take the schema back through it: its downgrade must undo it
    all (the reader role stays, as revision 0005's does: roles span databases)."""
    await downgrade_to(settings, "0023_retention_indexes")
    try:
        async with owner_db.unscoped() as conn:
            assert await conn.fetchval("SELECT to_regclass('auth_token_revocations')") is None
            assert await conn.fetchval("SELECT to_regproc('token_revocations_active')") is None
    finally:
        await migrate(settings)
    await revoke_now(db, "tenant-a", subject="agent-1")
    assert len((await read_active(db)).subjects) == 1
