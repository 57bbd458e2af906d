"""``enterprisehub flags ...`` and ``enterprisehub rollout ...`` against real Redis and Postgres."""

from __future__ import annotations

import asyncio
import io
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from localrun.servers import free_port
from services.cli import main
from services.common.database import Database
from services.common.flags import FEATURES, FlagState, bucket, get_flag, get_flags
from services.common.redis import Redis, close_redis, create_redis
from services.rollback.procedure import RollbackRequest, roll_back


async def _cli(*argv: str) -> int:
    # In a thread: the CLI runs its own event loop.
    return await asyncio.to_thread(main, list(argv))


async def _audit(owner_db: Database) -> list[dict[str, object]]:
    async with owner_db.unscoped() as conn:
        rows = await conn.fetch("SELECT * FROM flag_audit ORDER BY audit_id")
    return [dict(row) for row in rows]


async def test_flags_init_seeds_from_json_and_audits_creations(
    settings_env: dict[str, str],
    redis_client: Redis,
    owner_db: Database,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seed = '{"property_vision": {"enabled": true, "rolloutPercentage": 10}}'
    assert await _cli("flags", "init", "--seed", seed) == 0
    out = capsys.readouterr().out
    assert "property_vision: created (on at 10%)" in out
    assert "churn_prevention: created (off (0% kept))" in out
    assert await _cli("flags", "init", "--seed", seed) == 0
    assert "exists, unchanged" in capsys.readouterr().out
    rows = await _audit(owner_db)
    assert sorted(r["feature_name"] for r in rows) == sorted(FEATURES)
    assert {r["actor"] for r in rows} == {"flags-init"}


async def test_flags_init_rejects_a_bad_seed(
    settings_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert await _cli("flags", "init", "--seed", '{"vision": true}') == 2
    assert "unknown feature 'vision'" in capsys.readouterr().err


async def test_set_changes_the_flag_and_writes_one_audit_row_per_change(
    settings_env: dict[str, str],
    redis_client: Redis,
    owner_db: Database,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert await _cli("flags", "init") == 0
    code = await _cli(
        "rollout",
        "set",
        "--feature",
        "ai_coaching",
        "--percentage",
        "10",
        "--environment",
        "local",
        "--reason",
        "week 1",
        "--actor",
        "ops-alice",
        "--yes",
    )
    assert code == 0
    assert "ai_coaching: off (0% kept) -> on at 10%" in capsys.readouterr().out
    assert await get_flag(redis_client, "ai_coaching") == FlagState(
        enabled=True, rollout_percentage=10
    )
    code = await _cli(
        "rollout",
        "set",
        "--all-features",
        "--percentage",
        "25",
        "--environment",
        "local",
        "--reason",
        "week 2",
        "--actor",
        "ops-bob",
        "--yes",
    )
    assert code == 0
    states = await get_flags(redis_client)
    assert set(states.values()) == {FlagState(enabled=True, rollout_percentage=25)}
    changes = [r for r in await _audit(owner_db) if r["command"] != "flags init"]
    assert [(r["feature_name"], r["actor"], r["reason"]) for r in changes][:2] == [
        ("ai_coaching", "ops-alice", "week 1"),
        ("realtime_intelligence", "ops-bob", "week 2"),
    ]
    first = changes[0]
    assert (first["from_enabled"], float(first["from_percentage"])) == (False, 0)
    assert (first["to_enabled"], float(first["to_percentage"])) == (True, 10)
    assert first["environment"] == "local"
    assert len(changes) == 5
    # The same change again is a no-op: no new row.
    await _cli(
        "rollout",
        "set",
        "--feature",
        "ai_coaching",
        "--percentage",
        "25",
        "--environment",
        "local",
        "--reason",
        "again",
        "--yes",
    )
    assert len(await _audit(owner_db)) == 4 + 5
    assert await _cli("rollout", "status", "--environment", "local") == 0
    status = capsys.readouterr().out
    assert "ai_coaching" in status
    assert "on at 25%" in status
    assert "ops-bob" in status

    assert (
        await _cli("rollout", "enable-all", "--environment", "local", "--reason", "go", "--yes")
        == 0
    )
    states = await get_flags(redis_client)
    assert set(states.values()) == {FlagState(enabled=True, rollout_percentage=100)}


async def _set_percentage(feature: str, percentage: str) -> int:
    """``rollout set`` as an operator runs it (recorded in the audit)."""
    return await _cli(
        "rollout", "set", "--feature", feature, "--percentage", percentage,
        "--environment", "local", "--reason", "step", "--yes",
    )  # fmt: skip


async def test_a_rollback_while_the_operator_confirms_is_not_undone_by_the_change(
    settings_env: dict[str, str],
    app_database_url: str,
    redis_url: str,
    redis_client: Redis,
    owner_db: Database,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The operator reads "ai_coaching: on at 10% -> on at 25%" and, before
    # answering, the rollback handler turns the feature off (its alert fired).
    # Saying yes must not turn a failing feature back on at 25%.
    assert await _cli("flags", "init") == 0
    assert await _set_percentage("ai_coaching", "10") == 0

    async def rollback_fires_while_asked(prompt: str, assume_yes: bool) -> None:
        db = await Database.open(app_database_url, max_size=1, acquire_timeout=5)
        redis = create_redis(redis_url, max_connections=1, socket_timeout=2)
        try:
            await roll_back(
                db=db,
                redis=redis,
                request=RollbackRequest(
                    key="alertmanager:coaching-latency",
                    source="alertmanager",
                    alertname="CoachingLatencyRollback",
                    feature="ai_coaching",
                    features=("ai_coaching",),
                    environment="local",
                    actor="alertmanager",
                    reason="coaching p95 above target",
                    starts_at=datetime(2026, 12, 4, 7, 0, tzinfo=UTC),
                ),
            )
        finally:
            await close_redis(redis)
            await db.close()

    monkeypatch.setattr("services.rollout.cli.confirm", rollback_fires_while_asked)
    code = await _cli(
        "rollout", "set", "--feature", "ai_coaching", "--percentage", "25",
        "--environment", "local", "--reason", "week 2",
    )  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err
    assert "ai_coaching is now off (10% kept) (planned from on at 10%)" in err
    assert "nothing was changed" in err
    assert "Traceback" not in err
    assert await get_flag(redis_client, "ai_coaching") == FlagState(
        enabled=False, rollout_percentage=10
    )
    changes = [r for r in await _audit(owner_db) if r["reason"] != "step"]
    changes = [r for r in changes if r["command"] != "flags init"]
    assert [(r["actor"], r["to_enabled"]) for r in changes] == [("alertmanager", False)]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--feature", "vision", "--percentage", "10"], "unknown feature 'vision'"),
        (["--feature", "ai_coaching", "--percentage", "150"], "between 0 and 100"),
        (["--feature", "ai_coaching", "--percentage", "nan"], "between 0 and 100"),
        (["--feature", "ai_coaching", "--percentage", "-1"], "between 0 and 100"),
        # The audit must say why: a blank reason is no reason.
        (["--feature", "ai_coaching", "--percentage", "10", "--reason", "  "], "must say why"),
    ],
)
async def test_bad_arguments_are_clear_errors(
    settings_env: dict[str, str],
    argv: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        # argv last: its --reason, if any, is the one argparse keeps.
        await _cli("rollout", "set", "--environment", "local", "--reason", "x", "--yes", *argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


async def test_environment_must_match_the_settings(
    settings_env: dict[str, str], redis_client: Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await _cli(
        "rollout",
        "set",
        "--feature",
        "ai_coaching",
        "--percentage",
        "10",
        "--environment",
        "production",
        "--reason",
        "x",
        "--yes",
    )
    assert code == 2
    assert "settings are for 'local'" in capsys.readouterr().err
    assert await get_flag(redis_client, "ai_coaching") is None


@pytest.mark.parametrize("run_as", ["console-script", "python-m"])
@pytest.mark.parametrize("down", ["REDIS_URL", "DATABASE_URL"])
async def test_unreachable_environment_is_one_clear_line(
    down: str,
    run_as: str,
    settings_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As an operator runs it: in a process of its own, where the stores' warning
    # (meant for a service's log) printed a second line above the error.
    port = free_port()
    dead = {
        "REDIS_URL": f"redis://127.0.0.1:{port}/0",
        "DATABASE_URL": f"postgresql://app:app@127.0.0.1:{port}/enterprisehub",
    }
    monkeypatch.setenv(down, dead[down])
    monkeypatch.setenv("REDIS_SOCKET_TIMEOUT", "0.5")
    # `python -m services.cli` too: the command modules raise the CommandError of
    # the imported services.cli, which the copy run as __main__ did not catch.
    command = (
        [str(Path(sys.executable).parent / "enterprisehub")]
        if run_as == "console-script"
        else [sys.executable, "-m", "services.cli"]
    )
    process = await asyncio.create_subprocess_exec(
        *command, "rollout", "status", "--environment", "local",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, stderr = await process.communicate()
    assert process.returncode == 1
    lines = stderr.decode().splitlines()
    assert len(lines) == 1, lines
    [line] = lines
    assert line.startswith("enterprisehub: environment local unreachable: ")
    assert f"127.0.0.1', {port})" in line  # where it looked
    assert line.endswith("DATABASE_URL and REDIS_URL are this environment's")


async def test_without_a_terminal_a_change_needs_yes(
    settings_env: dict[str, str],
    redis_client: Redis,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await _cli("flags", "init")
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    code = await _cli(
        "rollout",
        "set",
        "--feature",
        "ai_coaching",
        "--percentage",
        "10",
        "--environment",
        "local",
        "--reason",
        "x",
    )
    assert code == 2
    assert "pass --yes" in capsys.readouterr().err
    assert await get_flag(redis_client, "ai_coaching") == FlagState()


async def test_assign_prints_the_tenants_the_rule_reaches(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tenants = [f"tenant-{i}" for i in range(400)]
    path = tmp_path / "tenants.txt"
    path.write_text("# pilot customers\n\n" + "\n".join(tenants) + "\n")
    assert (
        await _cli(
            "flags",
            "assign",
            "--feature",
            "churn_prevention",
            "--percentage",
            "25",
            "--tenant-file",
            str(path),
        )
        == 0
    )
    printed = capsys.readouterr().out.split()
    assert printed == [t for t in tenants if bucket("churn_prevention", t) < 2500]
    assert 60 < len(printed) < 140
    path.write_text("good-tenant\nbad tenant!\n")
    assert (
        await _cli(
            "flags",
            "assign",
            "--feature",
            "churn_prevention",
            "--percentage",
            "25",
            "--tenant-file",
            str(path),
        )
        == 2
    )
    assert "tenants.txt:2" in capsys.readouterr().err


@pytest.mark.parametrize("actor", ["a" * 256, "   ", "ops\nalice", "ops\talice"])
@pytest.mark.parametrize(
    "command",
    [
        ("rollout", "set", "--feature", "ai_coaching", "--percentage", "10", "--reason", "r"),
        ("rollback", "feature", "ai_coaching", "--reason", "r", "--wait-seconds", "0"),
    ],
)
async def test_an_actor_the_audit_cannot_keep_is_refused_before_any_flag_moves(
    settings_env: dict[str, str],
    redis_client: Redis,
    capsys: pytest.CaptureFixture[str],
    actor: str,
    command: tuple[str, ...],
) -> None:
    # 256 characters failed the audit's varchar(255) after the command started
    # (a traceback; `rollback feature` then left the feature on); a line break
    # split `rollout status`'s one line per flag.
    assert await _cli("flags", "init") == 0
    with pytest.raises(SystemExit) as exited:
        await _cli(*command, "--environment", "local", "--actor", actor, "--yes")
    assert exited.value.code == 2
    assert "is not an actor: 1-255 printable characters" in capsys.readouterr().err
    assert await get_flag(redis_client, "ai_coaching") == FlagState(
        enabled=False, rollout_percentage=0
    )


@pytest.mark.parametrize("reason", ["r" * 1001, "fix\nrolled back", "nul\x00"])
async def test_a_reason_off_one_printable_line_is_refused_before_any_flag_moves(
    settings_env: dict[str, str],
    redis_client: Redis,
    capsys: pytest.CaptureFixture[str],
    reason: str,
) -> None:
    # A line break split `rollout status`'s one line per flag; Postgres refused a
    # NUL after the command had started.
    assert await _cli("flags", "init") == 0
    argv = ["rollout", "set", "--feature", "ai_coaching", "--percentage", "10"]
    with pytest.raises(SystemExit) as exited:
        await _cli(*argv, "--reason", reason, "--environment", "local", "--yes")
    assert exited.value.code == 2
    assert "one line of at most 1000 printable characters" in capsys.readouterr().err
    assert await get_flag(redis_client, "ai_coaching") == FlagState(
        enabled=False, rollout_percentage=0
    )


async def test_an_actor_of_255_characters_is_kept_whole(
    settings_env: dict[str, str], owner_db: Database
) -> None:
    assert await _cli("flags", "init") == 0
    argv = ["rollout", "set", "--feature", "ai_coaching", "--percentage", "10", "--reason", "r"]
    assert await _cli(*argv, "--environment", "local", "--actor", "a" * 255, "--yes") == 0
    assert [r["actor"] for r in await _audit(owner_db)][-1] == "a" * 255


@pytest.mark.parametrize("command", ["rollout set", "flags assign"])
def test_a_percentage_that_rounds_to_zero_is_refused_not_read_as_off(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 0.001 was rounded to 0, and `rollout set` turned the feature off.
    tenants = tmp_path / "tenants.txt"
    tenants.write_text("tenant-a\n")
    argv = [*command.split(), "--feature", "ai_coaching", "--percentage", "0.001"]
    if command == "rollout set":
        argv += ["--reason", "r", "--environment", "local", "--yes"]
    else:
        argv += ["--tenant-file", str(tenants)]
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert "'0.001' rounds to 0 at the buckets' resolution of 0.01%" in capsys.readouterr().err
