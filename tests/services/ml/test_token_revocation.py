"""ml-services refuses a revoked scoring token (401 ``revoked_token``), as every service
does: the check is the common verifier's, fed by the common lifespan."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from services.common.database import Database
from services.common.metrics import new_registry
from services.common.scopes import LEADS_SCORE
from services.common.scoring import LeadFeatures
from services.ml.config import MLSettings
from services.ml.main import create_app
from tests.revocations import FAST_REFRESH, eventually, revoke_now, token_id

AppClient = Callable[[FastAPI], AbstractAsyncContextManager[httpx.AsyncClient]]


async def test_a_revoked_scoring_token_is_refused(
    settings_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    artifact_path: Path,
    app_client: AppClient,
    make_token: Callable[..., str],
    leads: list[LeadFeatures],
    db: Database,
) -> None:
    monkeypatch.setenv("ML_MODEL_URI", str(artifact_path))
    monkeypatch.setenv("AUTH_REVOCATION_REFRESH_SECONDS", str(FAST_REFRESH))
    app = create_app(MLSettings.from_env(), registry=new_registry())
    leaked = make_token("tenant-a", subject="scoring-client", scopes=(LEADS_SCORE,))
    body = {"lead_id": "lead-1", "features": leads[0].model_dump()}

    async def score(client: httpx.AsyncClient) -> httpx.Response:
        return await client.post(
            "/v1/leads/score", json=body, headers={"Authorization": f"Bearer {leaked}"}
        )

    async with app_client(app) as client:
        assert (await score(client)).status_code == 200
        await revoke_now(db, "tenant-a", jti=token_id(leaked))

        async def refused() -> bool:
            response = await score(client)
            return response.status_code == 401 and response.json()["reason"] == "revoked_token"

        await eventually(refused)
