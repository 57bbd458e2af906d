"""Start-up validation of CommonSettings: clear messages, secrets never echoed."""

from __future__ import annotations

import ast
import importlib
import inspect
import textwrap
from typing import Any

import pytest
from pydantic import SecretStr, TypeAdapter, ValidationError

from services.churn.config import ChurnSettings, HourOfDay
from services.coaching.config import CoachingSettings
from services.common.settings import (
    AuthSettings,
    BodyLimit,
    CommonSettings,
    EnvSettings,
    LatencyWindowSize,
    NonNegativeSeconds,
    PositiveSeconds,
    SettingsError,
    check_secret_length,
)
from services.dashboards.config import DashboardSettings
from services.impact.config import ImpactSettings
from services.ml.config import MLSettings
from services.realtime.config import RealtimeSettings
from services.rollback.cli import NotifySettings
from services.rollback.config import RollbackSettings
from services.rollout.config import RolloutSettings

DB_PASSWORD = "s3cret-db-password"
VALID = {
    "DATABASE_URL": f"postgresql://app:{DB_PASSWORD}@db.internal:5432/enterprisehub",
    "REDIS_URL": "redis://cache.internal:6379/0",
    "JWT_SECRET_KEY": "k" * 40,
}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in CommonSettings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    for key, value in VALID.items():
        monkeypatch.setenv(key, value)
    return monkeypatch


def problems(env: pytest.MonkeyPatch) -> str:
    with pytest.raises(SettingsError) as caught:
        CommonSettings.from_env()
    return str(caught.value)


def test_valid_environment_uses_the_seed_defaults(env: pytest.MonkeyPatch) -> None:
    settings = CommonSettings.from_env()
    assert (settings.db_pool_size, settings.db_max_overflow, settings.redis_max_connections) == (
        20,
        40,
        50,
    )


def test_latency_targets_are_converted_to_seconds(env: pytest.MonkeyPatch) -> None:
    env.setenv("WEBSOCKET_TARGET_LATENCY_MS", "50")
    targets = CommonSettings.from_env().targets_seconds
    assert targets["realtime_intelligence"] == pytest.approx(0.05)
    assert targets["churn_prevention"] == 30


def test_missing_database_url_is_named(env: pytest.MonkeyPatch) -> None:
    env.delenv("DATABASE_URL")
    assert "DATABASE_URL: required but not set" in problems(env)


def test_zero_pool_size_names_variable_value_and_rule(env: pytest.MonkeyPatch) -> None:
    env.setenv("DB_POOL_SIZE", "0")
    message = problems(env)
    assert "DB_POOL_SIZE='0'" in message
    assert "greater than 0" in message


def test_negative_redis_timeout_is_rejected(env: pytest.MonkeyPatch) -> None:
    env.setenv("REDIS_SOCKET_TIMEOUT", "-1")
    assert "REDIS_SOCKET_TIMEOUT='-1'" in problems(env)


def test_non_postgres_dsn_is_rejected_without_echoing_the_password(
    env: pytest.MonkeyPatch,
) -> None:
    env.setenv("DATABASE_URL", f"mysql://app:{DB_PASSWORD}@db/enterprisehub")
    message = problems(env)
    assert "DATABASE_URL" in message
    assert "postgresql://" in message
    assert DB_PASSWORD not in message


def test_dsn_without_database_name_is_rejected(env: pytest.MonkeyPatch) -> None:
    env.setenv("DATABASE_URL", f"postgresql://app:{DB_PASSWORD}@db:5432/")
    assert "lacks a host, user or database name" in problems(env)


def test_short_jwt_key_is_rejected_and_hidden(env: pytest.MonkeyPatch) -> None:
    env.setenv("JWT_SECRET_KEY", "too-short-key")
    message = problems(env)
    assert "JWT_SECRET_KEY: must be at least 32 bytes" in message
    assert "too-short-key" not in message


def test_short_previous_key_is_rejected_by_kid_and_hidden(env: pytest.MonkeyPatch) -> None:
    env.setenv("JWT_PREVIOUS_KEYS", '{"k0": "old-short-key"}')
    message = problems(env)
    assert "JWT_PREVIOUS_KEYS: key 'k0' must be at least 32 bytes" in message
    assert "openssl rand -hex 32" in message
    assert "old-short-key" not in message


def test_check_secret_length_accepts_32_bytes_and_refuses_31() -> None:
    assert check_secret_length(SecretStr("k" * 32)).get_secret_value() == "k" * 32
    # Bytes, not characters: 11 three-byte characters are 33 bytes.
    assert check_secret_length(SecretStr("€" * 11))
    with pytest.raises(ValueError, match="at least 32 bytes"):
        check_secret_length(SecretStr("k" * 31))


def test_previous_keys_must_be_a_json_object(env: pytest.MonkeyPatch) -> None:
    env.setenv("JWT_PREVIOUS_KEYS", "old=secret")
    assert "JWT_PREVIOUS_KEYS" in problems(env)


def test_active_kid_cannot_also_be_a_previous_key(env: pytest.MonkeyPatch) -> None:
    env.setenv("JWT_KEY_ID", "k1")
    env.setenv("JWT_PREVIOUS_KEYS", '{"k1": "' + "p" * 40 + '"}')
    assert "also appears in JWT_PREVIOUS_KEYS" in problems(env)


def test_cors_origins_are_split_on_commas(env: pytest.MonkeyPatch) -> None:
    env.setenv("CORS_ORIGINS", "https://enterprisehub.ai, https://*.enterprisehub.ai")
    settings = CommonSettings.from_env()
    assert settings.cors_exact_origins == ["https://enterprisehub.ai"]


def test_cors_wildcard_matches_subdomains_only(env: pytest.MonkeyPatch) -> None:
    import re

    env.setenv("CORS_ORIGINS", "https://*.enterprisehub.ai")
    pattern = CommonSettings.from_env().cors_origin_regex
    assert pattern is not None
    assert re.match(pattern, "https://coaching.enterprisehub.ai")
    assert not re.match(pattern, "https://enterprisehub.ai.evil.example")


def test_bare_wildcard_origin_is_rejected(env: pytest.MonkeyPatch) -> None:
    env.setenv("CORS_ORIGINS", "*")
    assert "never a bare '*'" in problems(env)


def test_empty_optional_secret_means_unset(env: pytest.MonkeyPatch) -> None:
    env.setenv("SLACK_WEBHOOK_URL", "")
    assert CommonSettings.from_env().slack_webhook_url is None


@pytest.mark.parametrize(
    ("settings_class", "variable"),
    [
        (ChurnSettings, "GHL_API_KEY"),
        (RolloutSettings, "PROMETHEUS_URL"),
        (NotifySettings, "SLACK_WEBHOOK_URL"),
    ],
)
def test_every_service_reads_an_empty_optional_variable_as_unset(
    env: pytest.MonkeyPatch, settings_class: type[EnvSettings], variable: str
) -> None:
    # Kubernetes Secrets and ConfigMaps carry optional keys as "".
    env.setenv(variable, "")
    assert getattr(settings_class.from_env(), variable.lower()) is None
    env.setenv(variable, "https://set.example")
    assert getattr(settings_class.from_env(), variable.lower()) is not None


def test_unknown_environment_lists_allowed_values(env: pytest.MonkeyPatch) -> None:
    env.setenv("ENVIRONMENT", "prod")
    message = problems(env)
    assert "ENVIRONMENT='prod'" in message
    assert "production" in message


@pytest.mark.parametrize(
    ("settings_class", "variable"),
    [
        ("services.ml.config:MLSettings", "ML_MODEL_URI"),
        ("services.realtime.config:RealtimeSettings", "ML_MODEL_URI"),
        ("services.churn.config:ChurnSettings", "CHURN_MODEL_URI"),
    ],
)
def test_an_unparseable_model_uri_is_refused_at_start_up(
    env: pytest.MonkeyPatch, settings_class: str, variable: str
) -> None:
    module, name = settings_class.split(":")
    settings = getattr(importlib.import_module(module), name)
    env.setenv(variable, "file://models/m.joblib")
    with pytest.raises(SettingsError) as caught:
        settings.from_env()
    assert variable in str(caught.value)
    assert "use file:///absolute/path" in str(caught.value)
    env.setenv(variable, "file:///models/m.joblib")
    assert settings.from_env()


@pytest.mark.parametrize(
    ("shared_type", "accepted", "refused", "rule"),
    [
        (PositiveSeconds, 0.001, 0, "greater than 0"),
        (NonNegativeSeconds, 0, -0.001, "greater than or equal to 0"),
        (BodyLimit, 1024, 1023, "greater than or equal to 1024"),
        (LatencyWindowSize, 10, 9, "greater than or equal to 10"),
        (LatencyWindowSize, 100_000, 100_001, "less than or equal to 100000"),
        (HourOfDay, 0, -1, "greater than or equal to 0"),
        (HourOfDay, 23, 24, "less than or equal to 23"),
    ],
)
def test_a_shared_setting_type_keeps_its_bound(
    shared_type: Any, accepted: float, refused: float, rule: str
) -> None:
    adapter: TypeAdapter[float] = TypeAdapter(shared_type)
    assert adapter.validate_python(accepted) == accepted
    with pytest.raises(ValidationError, match=rule):
        adapter.validate_python(refused)


@pytest.mark.parametrize(
    ("variable", "value", "rule"),
    [
        ("DB_POOL_TIMEOUT", "0", "greater than 0"),
        ("DB_POOL_TIMEOUT", "601", "less than or equal to 600"),
        ("MAX_REQUEST_BODY_BYTES", "1023", "greater than or equal to 1024"),
        ("MAX_REQUEST_BODY_BYTES", "100000001", "less than or equal to 100000000"),
    ],
)
def test_a_typed_setting_has_its_types_floor_and_its_own_ceiling(
    env: pytest.MonkeyPatch, variable: str, value: str, rule: str
) -> None:
    env.setenv(variable, value)
    message = problems(env)
    assert f"{variable}={value!r}: Input should be {rule}" in message


def test_a_quiet_hour_is_an_hour_of_the_day(env: pytest.MonkeyPatch) -> None:
    env.setenv("CHURN_QUIET_HOURS_END", "24")
    with pytest.raises(SettingsError, match="CHURN_QUIET_HOURS_END='24': Input should be less"):
        ChurnSettings.from_env()
    env.setenv("CHURN_QUIET_HOURS_END", "0")
    assert ChurnSettings.from_env().churn_quiet_hours_end == 0


@pytest.mark.parametrize(
    ("settings_class", "variable"),
    [(MLSettings, "ML_LATENCY_WINDOW"), (CoachingSettings, "COACHING_LATENCY_WINDOW")],
)
def test_both_latency_windows_have_the_same_bounds(
    env: pytest.MonkeyPatch, settings_class: type[EnvSettings], variable: str
) -> None:
    assert getattr(settings_class.from_env(), variable.lower()) == 1000
    for refused in ("9", "100001"):
        env.setenv(variable, refused)
        with pytest.raises(SettingsError, match=f"{variable}='{refused}'"):
            settings_class.from_env()


@pytest.mark.parametrize(
    ("settings_class", "variable", "value", "expected"),
    [
        (
            CommonSettings,
            "CORS_ORIGINS",
            " https://a.example, ,https://b.example ",
            ["https://a.example", "https://b.example"],
        ),
        (
            MLSettings,
            "VISION_URL_ALLOWED_HOSTS",
            "localhost,, *.photos.test ",
            ["localhost", "*.photos.test"],
        ),
        (MLSettings, "VISION_URL_ALLOWED_HOSTS", "", []),
    ],
)
def test_a_comma_separated_variable_is_a_trimmed_list(
    env: pytest.MonkeyPatch,
    settings_class: type[EnvSettings],
    variable: str,
    value: str,
    expected: list[str],
) -> None:
    env.setenv(variable, value)
    assert getattr(settings_class.from_env(), variable.lower()) == expected


@pytest.mark.parametrize(
    ("settings_class", "variable"),
    [
        (CommonSettings, "DATABASE_URL"),
        (CommonSettings, "MIGRATION_DATABASE_URL"),
        (RolloutSettings, "DATABASE_URL"),
        (ImpactSettings, "DATABASE_URL"),
    ],
)
def test_every_dsn_is_checked_under_its_own_name_and_never_echoed(
    env: pytest.MonkeyPatch, settings_class: type[EnvSettings], variable: str
) -> None:
    env.setenv(variable, f"mysql://app:{DB_PASSWORD}@db/enterprisehub")
    with pytest.raises(SettingsError) as caught:
        settings_class.from_env()
    message = str(caught.value)
    assert f"{variable}: {variable} has an unsupported scheme" in message
    assert DB_PASSWORD not in message


@pytest.mark.parametrize("settings_class", [ImpactSettings, DashboardSettings])
def test_impact_assumptions_are_read_and_checked_by_every_program_that_prices(
    env: pytest.MonkeyPatch, settings_class: type[ImpactSettings | DashboardSettings]
) -> None:
    """The ROI page priced with the built-in assumptions while the impact commands
    applied IMPACT_ASSUMPTIONS: both read it, and both refuse a bad one at start."""
    env.setenv("IMPACT_ASSUMPTIONS", '{"property_vision": {"value_per_unit": 90}}')
    assert settings_class.from_env().assumptions["property_vision"].value_per_unit == 90
    env.setenv("IMPACT_ASSUMPTIONS", '{"property_vision": {"value_per_unit": -1}}')
    with pytest.raises(SettingsError, match="IMPACT_ASSUMPTIONS"):
        settings_class.from_env()


def test_an_empty_migration_dsn_means_unset(env: pytest.MonkeyPatch) -> None:
    env.setenv("MIGRATION_DATABASE_URL", "")
    assert CommonSettings.from_env().migration_database_url is None


def _attribute_docstrings(cls: type) -> dict[str, str]:
    """The string literal written on the line after each annotated attribute of ``cls``."""
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0]
    assert isinstance(body, ast.ClassDef)
    return {
        attribute.target.id: inspect.cleandoc(literal.value.value)
        for attribute, literal in zip(body.body, body.body[1:], strict=False)
        if isinstance(attribute, ast.AnnAssign)
        and isinstance(attribute.target, ast.Name)
        and isinstance(literal, ast.Expr)
        and isinstance(literal.value, ast.Constant)
        and isinstance(literal.value.value, str)
    }


@pytest.mark.parametrize(
    ("settings_class", "declared_in", "field"),
    [
        (CommonSettings, CommonSettings, "max_request_body_bytes"),
        (CommonSettings, CommonSettings, "fault_injection_file"),  # a docstring of two lines
        (CommonSettings, AuthSettings, "jwt_secret_key"),  # required, from a base class
        (RealtimeSettings, RealtimeSettings, "ws_send_queue_size"),
        (RealtimeSettings, CommonSettings, "max_request_body_bytes"),
        (RollbackSettings, RollbackSettings, "alertmanager_webhook_token"),
    ],
)
def test_a_settings_description_is_the_docstring_under_its_field(
    settings_class: type[EnvSettings], declared_in: type[EnvSettings], field: str
) -> None:
    # EnvSettings turns on use_attribute_docstrings, which every settings class inherits.
    docstring = _attribute_docstrings(declared_in)[field]
    assert settings_class.model_fields[field].description == docstring


@pytest.mark.parametrize(
    "url",
    [
        f"redis://:{DB_PASSWORD}@cache.internal:99999/0",
        f"redis://:{DB_PASSWORD}@cache.internal:port/0",
        f"redis://:{DB_PASSWORD}@cache.internal:0/0",
        f"redis://:{DB_PASSWORD}@cache.internal:6379/zero",
    ],
)
def test_a_redis_url_redis_py_cannot_open_is_refused_at_start_up_unechoed(
    env: pytest.MonkeyPatch, url: str
) -> None:
    # The port and database were not checked: redis-py raised on them at the
    # first command, as a traceback (`rollout status`, every service).
    env.setenv("REDIS_URL", url)
    message = problems(env)
    assert "REDIS_URL: expected redis://[:PASSWORD@]HOST:PORT/DB" in message
    assert DB_PASSWORD not in message


@pytest.mark.parametrize(
    ("settings", "variable"),
    [
        (RolloutSettings, "PROMETHEUS_URL"),
        (ChurnSettings, "GHL_BASE_URL"),
        (MLSettings, "ANTHROPIC_BASE_URL"),
    ],
)
@pytest.mark.parametrize("url", ["http://h:99999", "http://h:port/", "prometheus:9090", "http://"])
def test_an_http_url_setting_needs_a_scheme_a_host_and_a_readable_port(
    env: pytest.MonkeyPatch, settings: type[EnvSettings], variable: str, url: str
) -> None:
    # PROMETHEUS_URL was not checked at all and GHL_BASE_URL by its prefix only:
    # httpx raised InvalidURL (not an HTTPError) from inside the command.
    env.setenv(variable, url)
    with pytest.raises(SettingsError) as caught:
        settings.from_env()
    assert f"{variable}={url!r}: expected " in str(caught.value)
