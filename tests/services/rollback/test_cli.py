"""``enterprisehub rollback feature ...`` against real Redis and Postgres."""

from __future__ import annotations

import asyncio
import shutil
import threading
from contextlib import nullcontext
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from services.cli import main
from services.common.database import Database
from services.common.flags import FEATURES, FlagState, get_flags, write_flag
from services.common.redis import Redis
from tests.services.rollback.conftest import SlackStandIn


async def _cli(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


async def _count(owner_db: Database, table: str) -> int:
    async with owner_db.unscoped() as conn:
        return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))  # noqa: S608


async def _roll_back_coaching(redis: Redis) -> int:
    """ai_coaching on at 50%, then the on-call's rollback of it."""
    await write_flag(redis, "ai_coaching", FlagState(enabled=True, rollout_percentage=50))
    return await _cli(
        "rollback", "feature", "ai_coaching", "--environment", "local",
        "--reason", "coaching p95 at 4 s", "--actor", "oncall", "--yes",
    )  # fmt: skip


async def test_rollback_turns_the_flag_off_verifies_audits_and_notifies(
    rollback_env: dict[str, str],
    redis_client: Redis,
    owner_db: Database,
    slack: SlackStandIn,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = await _roll_back_coaching(redis_client)
    assert code == 0
    out = capsys.readouterr().out
    assert "ai_coaching: on at 50% -> off" in out
    assert "1 flag(s) turned off (ai_coaching)" in out
    assert (await get_flags(redis_client))["ai_coaching"] == FlagState(
        enabled=False, rollout_percentage=50
    )
    assert await _count(owner_db, "flag_audit") == 1
    assert await _count(owner_db, "rollback_incidents") == 1
    assert len(slack.messages) == 1
    assert "oncall" in slack.messages[0]


async def test_rollback_all_and_health_urls(
    rollback_env: dict[str, str], redis_client: Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    for feature in FEATURES:
        await write_flag(redis_client, feature, FlagState(enabled=True, rollout_percentage=10))
    # Nothing listens there: the command must say the service is not healthy.
    code = await _cli(
        "rollback", "feature", "all", "--environment", "local", "--reason", "drill", "--yes",
        "--health-url", "http://127.0.0.1:9", "--wait-seconds", "1",
    )  # fmt: skip
    assert code == 1
    assert "not healthy within 1 s" in capsys.readouterr().err
    assert not any(s and s.enabled for s in (await get_flags(redis_client)).values())


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["vision", "--environment", "local", "--reason", "x", "--yes"], "unknown feature"),
        (["ai_coaching", "--environment", "moon", "--reason", "x", "--yes"], "unknown environment"),
        (["ai_coaching", "--environment", "production", "--reason", "x", "--yes"], "ENVIRONMENT"),
        (["ai_coaching", "--environment", "local", "--reason", " ", "--yes"], "argument --reason"),
        (["ai_coaching", "--environment", "local", "--reason", "x"], "pass --yes"),
    ],
    ids=["feature", "environment", "other-environment", "no-reason", "no-confirmation"],
)
async def test_clear_errors_and_nothing_changed(
    rollback_env: dict[str, str],
    redis_client: Redis,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    await write_flag(redis_client, "ai_coaching", FlagState(enabled=True, rollout_percentage=50))
    # argparse's own refusals exit; the command's return an exit code.
    refused_by_argparse = "unknown" in message or "argument" in message
    expected_exit = pytest.raises(SystemExit) if refused_by_argparse else nullcontext()
    with expected_exit:
        code = await _cli("rollback", "feature", *argv)
        assert code != 0
    assert message in capsys.readouterr().err
    assert (await get_flags(redis_client))["ai_coaching"].enabled  # type: ignore[union-attr]


@pytest.mark.parametrize("seconds", ["-1", "3601", "nan", "soon"])
def test_wait_seconds_outside_0_to_3600_is_a_usage_error(
    seconds: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(
            ["rollback", "feature", "ai_coaching", "--environment", "local", "--reason", "x",
             "--wait-seconds", seconds]
        )  # fmt: skip
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --wait-seconds: '{seconds}' is not a number of seconds in 0..3600" in err


async def test_stack_rollback_runs_the_deploy_command_after_the_flags(
    rollback_env: dict[str, str],
    redis_client: Redis,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """The flags go off first; the stack step runs `python -m infra.deploy rollback`
    (which takes no `--yes`), whose own refusal (no Pulumi CLI here, or a working
    tree with changes) is shown as it is."""
    git = shutil.which("git")
    assert git is not None
    (tmp_path / "git").symlink_to(git)
    monkeypatch.setenv("PATH", str(tmp_path))  # git, and no `pulumi`
    await write_flag(redis_client, "ai_coaching", FlagState(enabled=True, rollout_percentage=50))
    code = await _cli(
        "rollback", "feature", "ai_coaching", "--environment", "local", "--reason", "drill",
        "--yes", "--stack-rollback", "local",
    )  # fmt: skip
    assert code == 1
    err = capfd.readouterr().err
    assert "unrecognized arguments" not in err
    assert "error: " in err
    assert "Traceback" not in err
    assert "stack rollback of local failed (exit 2)" in err
    assert not (await get_flags(redis_client))["ai_coaching"].enabled  # type: ignore[union-attr]


async def test_rollback_waits_for_every_health_url(
    rollback_env: dict[str, str], redis_client: Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    class Healthy(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()

        def log_message(self, *_: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Healthy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        await write_flag(redis_client, "ai_coaching", FlagState(enabled=True, rollout_percentage=5))
        code = await _cli(
            "rollback", "feature", "ai_coaching", "--environment", "local", "--reason", "drill",
            "--yes", "--health-url", f"http://127.0.0.1:{server.server_port}",
        )  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert code == 0
    assert f"healthy: http://127.0.0.1:{server.server_port}/health" in capsys.readouterr().out


async def test_a_refused_notice_waits_in_the_outbox_and_the_operator_resends_it(
    rollback_env: dict[str, str],
    redis_client: Redis,
    owner_db: Database,
    slack: SlackStandIn,
    capsys: pytest.CaptureFixture[str],
) -> None:
    slack.status = 503
    code = await _roll_back_coaching(redis_client)
    # The rollback stands; its message waits for the handler or the operator.
    assert code == 0
    assert (slack.messages, len(slack.refused)) == ([], 1)
    capsys.readouterr()
    assert await _cli("rollback", "notices", "--environment", "local") == 0
    listed = capsys.readouterr().out
    assert "rollback  pending after 1 attempt(s) (HTTP 503)" in listed
    assert "rolled back ai_coaching" in listed
    slack.status = 200
    assert await _cli("rollback", "notices", "--environment", "local", "--resend") == 0
    assert "posted 1 of 1 from this shell" in capsys.readouterr().out
    assert await _cli("rollback", "notices", "--environment", "local", "--resend") == 0
    assert "every rollback notice was sent" in capsys.readouterr().out
    assert len(slack.messages) == 1
    assert "oncall" in slack.messages[0]
    assert await _count(owner_db, "rollback_notices") == 1
