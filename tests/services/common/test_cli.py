"""The `enterprisehub` console script: clear messages instead of tracebacks."""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from localrun.servers import free_port
from services import cli
from services.cli import main
from services.common.auth import TokenVerifier
from services.common.serving import quiet_client_request_logs
from services.common.settings import CommonSettings


def test_serving_a_service_not_in_this_build_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Pretend coaching is still unbuilt, whatever the tree holds today.
    absent = cli.ServiceEntry("services.not_built_yet.main:create_app", 8003)
    monkeypatch.setitem(cli.SERVICES, "coaching", absent)
    assert main(["serve", "coaching"]) == 2
    assert "service 'coaching' is not part of this build yet" in capsys.readouterr().err


def test_unknown_service_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["serve", "teleport"])
    assert exited.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize("port", ["99999", "65536", "-1", "0", "http"])
def test_serve_refuses_a_port_outside_1_to_65535_before_starting(
    port: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # 99999 was bound as 34463 (the kernel keeps 16 bits) while the log said
    # 99999; -1 failed with "Servname not supported" after the whole start-up.
    with pytest.raises(SystemExit) as exited:
        main(["serve", "coaching", "--port", port])
    assert exited.value.code == 2
    assert f"argument --port: {port!r} is not a TCP port (1-65535)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("value", "exclusive", "accepted"),
    [
        ("0", False, 0.0),
        ("1", False, 1.0),
        ("0.5", True, 0.5),
        ("0", True, None),
        ("1", True, None),
        ("1.01", False, None),
        ("-0.01", False, None),
        ("nan", False, None),
        ("inf", False, None),
        ("half", False, None),
    ],
)
def test_number_argument_takes_the_range_and_refuses_the_rest_in_one_line(
    value: str, exclusive: bool, accepted: float | None
) -> None:
    parse = cli.number_argument(float, 0.0, 1.0, "is not a share", exclusive=exclusive)
    if accepted is not None:
        assert parse(value) == accepted
        return
    with pytest.raises(argparse.ArgumentTypeError) as refused:
        parse(value)
    assert str(refused.value) == f"{value!r} is not a share"


def test_token_mints_a_verifiable_token(
    settings: CommonSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["token", "--tenant", "tenant-a", "--subject", "agent-9", "--ttl", "60"]
    assert main([*argv, "--scope", "feed:read"]) == 0
    principal = TokenVerifier.from_settings(settings).verify(capsys.readouterr().out.strip())
    assert (principal.tenant_id, principal.subject) == ("tenant-a", "agent-9")
    assert principal.scopes == {"feed:read"}


def test_token_refuses_an_invalid_tenant(
    settings: CommonSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["token", "--tenant", "a:*", "--subject", "s", "--scope", "feed:read"]) == 2
    assert "tenant id 'a:*' is invalid" in capsys.readouterr().err


@pytest.mark.parametrize("subject", ["bob smith", "bob\n", "-bob", "bob/1", "x" * 256])
def test_token_refuses_a_subject_no_event_could_target(
    subject: str, settings: CommonSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    """The feed delivers an event to the sockets whose subject equals its agent_id,
    which ingest reads as an AgentId: a token for "bob smith" was minted, and no
    event could ever reach it."""
    # "--subject=-bob": argparse reads a separate "-bob" as an option.
    argv = ["token", "--tenant", "tenant-a", f"--subject={subject}", "--scope", "feed:read"]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert "is not an agent id (1-255 characters from A-Z a-z 0-9 _ . : @ -" in err


def test_feed_refuses_to_mint_for_a_subject_no_event_could_target(
    settings: CommonSettings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def connect(*args: object, **kwargs: object) -> NoReturn:
        # The client retries a failed connection for ever: fail instead.
        raise AssertionError("the feed connected with a token no event could target")

    monkeypatch.setattr("services.realtime.feed_client.connect", connect)
    argv = ["feed", "--tenant", "tenant-a", "--subject", "bob smith", "--url", "ws://192.0.2.1/"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "subject 'bob smith' is not an agent id" in err


def test_feed_that_was_never_reached_is_one_line_not_a_retry_loop(
    settings_env: dict[str, str],
) -> None:
    # A wrong --url (or `make run` not started) printed "reconnecting in 5 s"
    # every five seconds, for ever.
    url = f"ws://127.0.0.1:{free_port()}/v1/feed"
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "feed", "--tenant", "tenant-a", "--url", url],
        capture_output=True,
        text=True,
        env={**os.environ, **settings_env},
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert f"cannot connect to {url}" in done.stderr
    assert "reconnecting" not in done.stderr


def test_bad_settings_are_listed_by_variable(
    settings: CommonSettings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("JWT_SECRET_KEY", "short")
    assert main(["token", "--tenant", "t", "--subject", "s", "--scope", "operator"]) == 2
    err = capsys.readouterr().err
    assert "JWT_SECRET_KEY: must be at least 32 bytes" in err
    assert "short" not in err.replace("JWT_SECRET_KEY: must", "")


@pytest.mark.parametrize(
    ("scopes", "expected"),
    [
        (["feed:read"], {"feed:read"}),
        (["crm:ingest"], {"crm:ingest"}),
        (["operator"], {"operator"}),
        (["leads:score", "crm:ingest"], {"leads:score", "crm:ingest"}),
    ],
)
def test_token_mints_each_kind_of_scope(
    settings: CommonSettings,
    capsys: pytest.CaptureFixture[str],
    scopes: list[str],
    expected: set[str],
) -> None:
    argv = ["token", "--tenant", "tenant-a", "--subject", "s", "--ttl", "30m"]
    for scope in scopes:
        argv += ["--scope", scope]
    assert main(argv) == 0
    principal = TokenVerifier.from_settings(settings).verify(capsys.readouterr().out.strip())
    assert principal.scopes == expected


def test_token_without_a_scope_is_a_usage_error(
    settings: CommonSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["token", "--tenant", "t", "--subject", "s"])
    assert exited.value.code == 2
    assert "--scope" in capsys.readouterr().err


@pytest.mark.parametrize("ttl", ["inf", "-inf", "nan", "-5", "0", "1e400", "soon", "12x"])
def test_token_ttl_that_is_not_a_positive_finite_duration_is_one_line(
    settings: CommonSettings, capsys: pytest.CaptureFixture[str], ttl: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["token", "--tenant", "t", "--subject", "s", "--scope", "feed:read", "--ttl", ttl])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "--ttl" in err


@pytest.mark.parametrize(
    ("scope", "ttl"), [("feed:read", "13h"), ("operator", "2h"), ("crm:ingest", "1e300")]
)
def test_token_ttl_beyond_its_scopes_cap_is_refused(
    settings: CommonSettings, capsys: pytest.CaptureFixture[str], scope: str, ttl: str
) -> None:
    argv = ["token", "--tenant", "t", "--subject", "s", "--scope", scope, "--ttl", ttl]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "exceeds the" in err
    assert "JWT_MAX_TTL_" in err
    assert len(err.strip().splitlines()) == 1


def test_ttl_units() -> None:
    assert [cli.parse_ttl(v) for v in ("90", "30m", "12h", "2d", "1.5h")] == [
        90.0,
        1800.0,
        43200.0,
        172800.0,
        5400.0,
    ]


@pytest.mark.parametrize(
    ("log_level", "quiet"), [("INFO", True), ("WARNING", True), ("DEBUG", False)]
)
def test_served_processes_keep_http_clients_request_lines_out_below_debug(
    log_level: str, quiet: bool
) -> None:
    # httpx (the CRM client) and httpx2 (the anthropic SDK) log a line per
    # request at INFO, ids in the URL; `serve` quiets them unless debugging.
    loggers = [logging.getLogger(name) for name in ("httpx", "httpx2")]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.NOTSET)
        quiet_client_request_logs(log_level)
        expected = logging.WARNING if quiet else logging.NOTSET
        assert [logger.level for logger in loggers] == [expected, expected]
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from _parsers(child)


def test_every_command_prints_its_help() -> None:
    # argparse %-formats every help string: a bare "100%" made `enterprisehub
    # rollout --help` a traceback instead of the list of its commands.
    parsers = list(_parsers(cli.build_parser()))
    assert len(parsers) > 20
    for parser in parsers:
        assert parser.format_help().startswith(f"usage: {parser.prog}")


@pytest.mark.parametrize(("target", "names"), list(cli.COMMAND_GROUPS.items()))
def test_each_command_group_registers_the_commands_it_is_loaded_for(
    target: str, names: tuple[str, ...]
) -> None:
    # A command line loads only the group that declares its first word: a
    # command a group adds without declaring it would be "invalid choice".
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers()
    cli._load(target)(commands)
    assert tuple(commands.choices) == names


@pytest.mark.parametrize(
    ("argv", "loaded"),
    [
        (["rollout", "status", "--help"], False),
        (["rollback", "--help"], False),
        (["token", "--help"], False),
        (["vision", "--help"], False),
        (["model", "--help"], True),
    ],
)
def test_a_command_imports_only_its_own_group(argv: list[str], loaded: bool) -> None:
    # Every command imported every group, scikit-learn and SciPy with them:
    # about 2 s of CPU at the start of `rollout status` (7-10 s on a busy host).
    probe = (
        "import sys\n"
        "from services.cli import build_parser\n"
        f"build_parser({argv!r})\n"
        "print(sorted(m for m in ('sklearn', 'scipy') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert (done.stdout.strip() != "[]") is loaded, done.stdout


def test_a_command_no_group_declares_still_lists_every_choice(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["rolout", "status"])
    err = capsys.readouterr().err
    assert "invalid choice: 'rolout'" in err
    for names in cli.COMMAND_GROUPS.values():
        for name in names:
            assert f"'{name}'" in err


def _undocumented(parser: argparse.ArgumentParser, path: str) -> Iterator[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, command in action.choices.items():
                if not helps.get(name):
                    yield f"{path} {name}"
                yield from _undocumented(command, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction) and not action.help:
            yield f"{path} {'/'.join(action.option_strings) or action.dest}"


def test_every_command_and_option_says_what_it_is_in_its_help() -> None:
    """`enterprisehub rollout status --help` listed `--environment ENVIRONMENT` and
    nothing else: which one, and that it must match the shell's settings, was not said."""
    assert list(_undocumented(cli.build_parser(), "enterprisehub")) == []


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib import metadata

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"enterprisehub {metadata.version('enterprisehub-phase3')}\n"


ADVANCE = ["rollout", "advance", "--feature", "realtime_intelligence", "--environment", "local"]
ROLL_BACK = ["rollback", "feature", "all", "--environment", "local", "--reason", "r"]


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["feed", "--tenant", "t", "--count", "0"], "'0' is not a number of events (1 or more)"),
        (["feed", "--tenant", "t", "--count", "-1"], "'-1' is not a number of events"),
        (["feed", "--tenant", "t", "--url", "ws://[::1"], "(Invalid IPv6 URL)"),
        (["feed", "--tenant", "t", "--url", "ws://h:99999/v1/feed"], "(Port out of range"),
        (["feed", "--tenant", "t", "--url", "ws://h:0/v1/feed"], "with a host (ws:// or wss://)"),
        (["feed", "--tenant", "t", "--url", "ws:///v1/feed"], "with a host (ws:// or wss://)"),
        (["feed", "--tenant", "t", "--url", "ws://a b/"], "spaces or control characters"),
        (["feed", "--tenant", "t", "--url", "http://h/v1/feed"], "(ws:// or wss://)"),
        (
            [*ADVANCE, "--prometheus-url", "http://[::1"],
            "argument --prometheus-url: 'http://[::1' is not a URL with a host",
        ),
        (
            [*ROLL_BACK, "--health-url", "notaurl"],
            "argument --health-url: 'notaurl' is not a URL with a host (http:// or https://)",
        ),
        (["vision", "backfill", "--tenant", "t", "--poll-seconds", "nan"], "from 1 to 3600"),
        (["vision", "backfill", "--tenant", "t", "--poll-seconds", "0"], "from 1 to 3600"),
        (["vision", "backfill", "--tenant", "t", "--poll-seconds", "inf"], "from 1 to 3600"),
        (["model", "train", "--seed", "-1"], "'-1' is not a seed (0-4294967295)"),
        (["churn", "train", "--seed", "4294967296"], "is not a seed (0-4294967295)"),
    ],
)
def test_a_hostile_option_is_one_usage_line_before_anything_runs(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Each of these used to run: a traceback from httpx, websockets or numpy
    # (`rollback feature` after turning the flag off), a Batches API polled in
    # a tight loop, a feed that printed nothing and exited 0.
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert said in err
    assert "Traceback" not in err


def test_a_file_the_system_refuses_is_one_line_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `model publish --from DIR` raised IsADirectoryError through `main`; the
    # same for every --out/--plot/--from the system refuses.
    assert main(["model", "publish", "--from", str(tmp_path), "--to", str(tmp_path / "p")]) == 1
    err = capsys.readouterr().err
    assert err == f"enterprisehub model: [Errno 21] Is a directory: '{tmp_path}'\n"


def test_churn_train_with_a_plot_path_the_system_refuses_writes_no_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The model used to be written (replacing the one in --out) before the
    # plot failed, so the command said "failed" and had changed the model.
    out = tmp_path / "churn.joblib"
    argv = ["churn", "train", "--out", str(out), "--rows", "2000", "--plot", str(tmp_path)]
    assert main(argv) == 1
    assert "Is a directory" in capsys.readouterr().err
    assert not out.exists()
    assert not out.with_suffix(".joblib.json").exists()


def test_a_reader_that_goes_away_is_exit_1_without_a_traceback(
    settings_env: dict[str, str],
) -> None:
    # `enterprisehub token ... | head -c 10` printed a BrokenPipeError traceback.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        argv = ["token", "--tenant", "t", "--subject", "s", "--scope", "feed:read"]
        done = subprocess.run(
            [sys.executable, "-m", "services.cli", *argv],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **settings_env},
            check=False,
        )
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (1, "")


@pytest.mark.parametrize("given", ["option", "environment"])
def test_feed_refuses_a_token_of_another_tenant_than_tenant(
    given: str,
    settings: CommonSettings,
    make_token: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The feed serves the token's tenant: `--tenant tenant-a` with tenant-b's token
    # (or an ENTERPRISEHUB_TOKEN left from another tenant) watched tenant-b's leads.
    def connect(*args: object, **kwargs: object) -> NoReturn:
        raise AssertionError("the feed connected with another tenant's token")

    monkeypatch.setattr("services.realtime.feed_client.connect", connect)
    token = make_token("tenant-b", scopes=("feed:read",))
    argv = ["feed", "--tenant", "tenant-a", "--url", "ws://192.0.2.1/"]
    if given == "option":
        argv += ["--token", token]
    else:
        monkeypatch.setenv("ENTERPRISEHUB_TOKEN", token)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--tenant tenant-a but the token is for tenant tenant-b: pass --tenant tenant-b" in err
