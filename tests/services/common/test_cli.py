"""The `enterprisehub` console script: clear messages instead of tracebacks."""

from __future__ import annotations

import pytest

from services import cli
from services.cli import main
from services.common.auth import TokenVerifier
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


def test_token_mints_a_verifiable_token(
    settings: CommonSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["token", "--tenant", "tenant-a", "--subject", "agent-9", "--ttl", "60"]) == 0
    principal = TokenVerifier.from_settings(settings).verify(capsys.readouterr().out.strip())
    assert (principal.tenant_id, principal.subject) == ("tenant-a", "agent-9")


def test_token_refuses_an_invalid_tenant(
    settings: CommonSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["token", "--tenant", "a:*", "--subject", "s"]) == 2
    assert "tenant id 'a:*' is invalid" in capsys.readouterr().err


def test_bad_settings_are_listed_by_variable(
    settings: CommonSettings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("JWT_SECRET_KEY", "short")
    assert main(["token", "--tenant", "t", "--subject", "s"]) == 2
    err = capsys.readouterr().err
    assert "JWT_SECRET_KEY: must be at least 32 bytes" in err
    assert "short" not in err.replace("JWT_SECRET_KEY: must", "")
