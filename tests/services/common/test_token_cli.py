"""``enterprisehub token revoke`` and ``token revocations`` against the session's Postgres,
and the jti ``enterprisehub token`` shows so that a token can be revoked later."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from localrun.servers import free_port
from services.cli import main
from services.common.settings import CommonSettings
from tests.conftest import APP_PASSWORD
from tests.revocations import token_id

JTI = "0123456789ab4def8123456789abcdef"
#: Every revocation here is made in the shell's own environment, `make run`'s.
REVOKE = ["token", "revoke", "--environment", "local"]


def _mint(capsys: pytest.CaptureFixture[str], tenant: str = "tenant-a") -> tuple[str, str]:
    argv = ["token", "--tenant", tenant, "--subject", "agent-9", "--scope", "crm:ingest"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    return out.strip(), err


def test_minting_shows_the_jti_apart_from_the_token(
    settings: CommonSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    """`$(enterprisehub token ...)` must still capture the token alone: the jti goes to
    stderr, with the command that revokes it."""
    token, err = _mint(capsys)
    assert "\n" not in token
    assert err.count("\n") == 1
    assert f"jti {token_id(token)}" in err
    assert f"--tenant tenant-a --jti {token_id(token)}" in err
    assert "enterprisehub token revoke --environment " in err


def test_revoke_a_minted_token_twice_then_list_it(
    settings: CommonSettings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    token, _ = _mint(capsys)
    jti = token_id(token)
    # Revoking needs the database, never the signing key.
    monkeypatch.delenv("JWT_SECRET_KEY")
    revoke = [
        *REVOKE,
        "--tenant",
        "tenant-a",
        "--jti",
        jti,
        "--reason",
        "in a log",
    ]
    assert main([*revoke, "--actor", "alice"]) == 0
    first = capsys.readouterr().out
    assert main([*revoke, "--actor", "bob"]) == 0
    second = capsys.readouterr().out
    assert first.startswith(f"token {jti} of tenant tenant-a (local) revoked at ")
    assert "already revoked at" in second
    assert "by alice; nothing changed" in second

    assert main(["token", "revocations", "--tenant", "tenant-a"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 1
    assert f"jti {jti} by alice" in listed[0]
    assert listed[0].endswith(": in a log")

    assert main(["token", "revocations", "--tenant", "tenant-b"]) == 0
    assert capsys.readouterr().out == "no active revocations in tenant tenant-b (local)\n"


def test_revoke_every_token_of_a_subject(
    settings: CommonSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        *REVOKE,
        "--tenant",
        "tenant-a",
        "--subject",
        "agent-9",
    ]
    assert main([*argv, "--reason", "lost laptop"]) == 0
    assert "every token of agent-9 of tenant tenant-a" in capsys.readouterr().out
    assert main([*argv, "--reason", "lost laptop, again"]) == 0
    assert "an earlier revocation of it moved to now" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        (["--jti", "not-a-jti"], "is not a token id"),
        (["--jti", JTI.upper()], "is not a token id"),
        (["--jti", JTI[:-1]], "is not a token id"),
        (["--jti", JTI + "\n"], "is not a token id"),
        (["--jti", "01234567-89ab-4def-8123-456789abcdef"], "is not a token id"),
        (["--subject", "bob smith"], "is not an agent id"),
        (["--subject=-bob"], "is not an agent id"),
        (["--jti", JTI, "--subject", "agent-1"], "not allowed with argument"),
        ([], "one of the arguments --jti --subject is required"),
        (["--jti", JTI, "--tenant", "a:*"], "tenant id 'a:*' is invalid"),
        (["--jti", JTI, "--reason", "  "], "must say why"),
        (["--jti", JTI, "--reason", "two\nlines"], "must be one line"),
        (["--jti", JTI, "--actor", "x" * 300], "is not an actor"),
    ],
)
def test_bad_arguments_are_one_error_line_before_anything_is_written(
    settings: CommonSettings,
    capsys: pytest.CaptureFixture[str],
    arguments: list[str],
    complaint: str,
) -> None:
    argv = [
        *REVOKE,
        "--tenant",
        "tenant-a",
        "--reason",
        "why",
        *arguments,
    ]
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1
    assert errors[0].startswith("enterprisehub token revoke: error:")
    assert complaint in errors[0]
    assert main(["token", "revocations", "--tenant", "tenant-a"]) == 0
    assert capsys.readouterr().out.startswith("no active revocations")


def test_an_unreachable_database_is_one_line_without_the_password(
    settings: CommonSettings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = settings.database_url.get_secret_value()
    host_port = url.rsplit("@", 1)[1].split("/", 1)[0]
    monkeypatch.setenv("DATABASE_URL", url.replace(host_port, f"127.0.0.1:{free_port()}"))
    argv = [
        *REVOKE,
        "--tenant",
        "t",
        "--jti",
        JTI,
        "--reason",
        "leaked",
    ]
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("enterprisehub: environment local unreachable: postgres unavailable")
    assert APP_PASSWORD not in err


def test_minting_still_requires_its_arguments(
    settings: CommonSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    """They became optional for argparse (``token revoke`` has its own): the mint checks."""
    with pytest.raises(SystemExit) as exited:
        main(["token", "--scope", "feed:read"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "error: the following arguments are required: --tenant, --subject" in err


def test_a_revocation_outlives_any_token_the_services_may_accept(
    settings: CommonSettings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The keep period came from the revoking shell's JWT_MAX_TTL_*: revoked from a
    # shell with short caps, a row was pruned while the services, which allow up
    # to a year, still accepted the token; pruned, the revocation was undone.
    for name in CommonSettings.model_fields:
        if name.startswith("jwt_max_ttl_"):
            monkeypatch.setenv(name.upper(), "60")
    argv = [
        *REVOKE,
        "--tenant",
        "tenant-a",
        "--jti",
        JTI,
        "--reason",
        "leaked",
    ]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(["token", "revocations", "--tenant", "tenant-a"]) == 0
    kept = re.search(r"kept until (\S+)\)", capsys.readouterr().out)
    assert kept is not None
    assert datetime.fromisoformat(kept.group(1)) > datetime.now(UTC) + timedelta(days=365)


def test_revoke_refuses_another_environment_than_the_shells(
    settings: CommonSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    # Written to another environment's database, a revocation left the token
    # working where it leaked while the operator believed it revoked.
    argv = ["token", "revoke", "--environment", "production", "--tenant", "tenant-a"]
    assert main([*argv, "--jti", JTI, "--reason", "leaked"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--environment production but this shell's settings are for 'local'" in err
    assert main(["token", "revocations", "--tenant", "tenant-a"]) == 0
    assert "no active revocations" in capsys.readouterr().out
