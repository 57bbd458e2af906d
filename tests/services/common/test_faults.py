"""Test-only fault injection: switched at run time, measured, never in production."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI

from services.common.app import create_app
from services.common.settings import CommonSettings, SettingsError

router = APIRouter()


@router.get("/v1/things")
async def things() -> dict[str, str]:
    return {"ok": "yes"}


def _app(
    settings_env: dict[str, str], fault_file: Path, monkeypatch: pytest.MonkeyPatch
) -> FastAPI:
    monkeypatch.setenv("FAULT_INJECTION_FILE", str(fault_file))
    return create_app(settings=CommonSettings.from_env(), title="t", routers=[router])


def _write(path: Path, fault: dict[str, Any] | None) -> None:
    path.write_text(json.dumps(fault) if fault else "")
    # Make the change visible even within the file system's timestamp granularity.
    stamp = time.time() + (1 if path.exists() else 0)
    os.utime(path, (stamp, stamp))


async def test_errors_start_and_stop_without_a_restart_and_are_counted(
    settings_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, app_client: Any
) -> None:
    fault_file = tmp_path / "fault.json"
    app = _app(settings_env, fault_file, monkeypatch)
    async with app_client(app) as client:
        assert (await client.get("/v1/things")).status_code == 200
        _write(fault_file, {"route_prefix": "/v1/things", "error_rate": 1.0})
        broken = await client.get("/v1/things")
        assert (broken.status_code, broken.json()["reason"]) == (500, "injected_fault")
        assert (await client.get("/health")).status_code == 200  # other routes untouched
        _write(fault_file, None)
        assert (await client.get("/v1/things")).status_code == 200
        metrics = (await client.get("/metrics")).text
    assert 'status="500"' in metrics


async def test_latency_is_added_to_the_measured_duration(
    settings_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, app_client: Any
) -> None:
    fault_file = tmp_path / "fault.json"
    _write(fault_file, {"route_prefix": "/v1/", "latency_seconds": 0.2})
    app = _app(settings_env, fault_file, monkeypatch)
    async with app_client(app) as client:
        assert (await client.get("/v1/things")).status_code == 200
        metrics = (await client.get("/metrics")).text
    slow = [
        line
        for line in metrics.splitlines()
        if line.startswith("http_request_duration_seconds_bucket")
        and 'route="/v1/things"' in line
        and 'le="0.1"' in line
    ]
    assert slow
    assert slow[0].endswith(" 0.0"), "a 200 ms fault must not land under 100 ms"


def test_refused_in_production(
    settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("FAULT_INJECTION_FILE", "/tmp/fault.json")
    with pytest.raises(SettingsError, match="never set in production"):
        CommonSettings.from_env()


def test_a_bad_fault_is_refused() -> None:
    from services.common.faults import Fault

    with pytest.raises(ValueError, match="error_rate"):
        Fault.parse('{"error_rate": 3}')
    assert Fault.parse("  ") is None
