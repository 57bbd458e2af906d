"""A change of several flags lands whole or not at all, with its audit rows (real Redis, Postgres).

Redis failing between two flag writes (sweep finding N7) is reproduced without
timing: a redis-server of this test's own, whose ACL user may read every flag
but write only the first one, so the second write fails as a lost connection
would, after the first was accepted.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from redis.exceptions import ResponseError

from localrun.servers import start_redis
from services.common.database import Database
from services.common.flags import FEATURES, FlagState, get_flags, write_flags
from services.common.redis import close_redis, create_redis
from services.rollback.procedure import RollbackRequest, roll_back

ON = FlagState(enabled=True, rollout_percentage=25)


async def test_a_rollback_of_all_failing_midway_changes_no_flag_and_loses_no_row(
    settings_env: dict[str, str], db: Database, owner_db: Database, tmp_path: Path
) -> None:
    server = start_redis(tmp_path)
    admin = create_redis(server.url, max_connections=1)
    try:
        await write_flags(admin, dict.fromkeys(FEATURES, ON))
        await admin.execute_command(
            "ACL", "SETUSER", "flags-writer", "on", ">writer-password-0123456789",
            "%R~feature_flag:*", f"%RW~feature_flag:{FEATURES[0]}", "&*", "+@all",
        )  # fmt: skip
        url = server.url.replace("redis://", "redis://flags-writer:writer-password-0123456789@")
        writer = create_redis(url, max_connections=1)
        try:
            with pytest.raises(ResponseError, match="permission"):
                await roll_back(
                    db=db,
                    redis=writer,
                    request=RollbackRequest(
                        key="alertmanager:platform-errors",
                        source="alertmanager",
                        alertname="PlatformErrorRateRollback",
                        feature="all",
                        features=FEATURES,
                        environment="local",
                        actor="alertmanager",
                        reason="error rate above 5%",
                        starts_at=datetime(2026, 12, 4, 7, 0, tzinfo=UTC),
                    ),
                )
        finally:
            await close_redis(writer)
        # Nothing changed, nothing recorded, and the incident can be retried.
        assert set((await get_flags(admin)).values()) == {ON}
        async with owner_db.unscoped() as conn:
            assert await conn.fetchval("SELECT count(*) FROM flag_audit") == 0
            assert await conn.fetchval("SELECT count(*) FROM rollback_incidents") == 0
    finally:
        await close_redis(admin)
        server.stop()
