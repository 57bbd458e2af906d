"""``require_feature``: 401 before 403, then 403 with a reason outside the rollout."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Any

import pytest
from fastapi import APIRouter, FastAPI
from openfeature import api as openfeature_api
from openfeature.flag_evaluation import FlagEvaluationDetails, FlagValueType
from openfeature.hook import Hook, HookContext, HookHints

from services.common.app import create_app
from services.common.auth import Principal
from services.common.flags import FlagState, InvalidFlag, bucket, require_feature, write_flag
from services.common.metrics import new_registry
from services.common.redis import Redis
from services.common.settings import CommonSettings

router = APIRouter(prefix="/v1/vision")


@router.get("/ping", dependencies=[require_feature("property_vision")])
async def ping() -> dict[str, str]:
    return {"ok": "yes"}


@router.get("/who")
async def who(
    principal: Annotated[Principal, require_feature("property_vision")],
) -> dict[str, str]:
    return {"tenant": principal.tenant_id}


def _app(settings: CommonSettings) -> FastAPI:
    return create_app(
        settings=settings,
        title="flags",
        routers=[router],
        registry=new_registry(),
    )


async def test_route_answers_by_rollout(
    settings: CommonSettings,
    redis_client: Redis,
    app_client: Any,
    make_token: Callable[..., str],
) -> None:
    inside = next(f"t-{i}" for i in range(1000) if bucket("property_vision", f"t-{i}") < 1000)
    outside = next(f"t-{i}" for i in range(1000) if bucket("property_vision", f"t-{i}") >= 1000)
    await write_flag(
        redis_client, "property_vision", FlagState(enabled=True, rollout_percentage=10)
    )
    app = _app(settings)
    async with app_client(app) as client:
        assert (await client.get("/v1/vision/ping")).status_code == 401
        ok = await client.get(
            "/v1/vision/who", headers={"Authorization": f"Bearer {make_token(inside)}"}
        )
        assert ok.json() == {"tenant": inside}
        refused = await client.get(
            "/v1/vision/ping", headers={"Authorization": f"Bearer {make_token(outside)}"}
        )
        assert refused.status_code == 403
        assert refused.json()["reason"] == "feature_disabled"
        assert "property_vision" in refused.json()["detail"]
        # A change reaches the running app through pub/sub, without a restart.
        await write_flag(
            redis_client, "property_vision", FlagState(enabled=False, rollout_percentage=10)
        )
        async with asyncio.timeout(5):
            while app.state.flags.is_enabled("property_vision", inside):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        gone = await client.get(
            "/v1/vision/ping", headers={"Authorization": f"Bearer {make_token(inside)}"}
        )
        assert gone.status_code == 403
        metrics = (await client.get("/metrics")).text
        assert "feature_flags_stale 0.0" in metrics


def test_unknown_feature_fails_at_import_time() -> None:
    with pytest.raises(InvalidFlag):
        require_feature("property_visoin")


class _SeenContexts(Hook):
    """An API-level hook, as another team's (tracing, auditing) would register one."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None, str | None]] = []

    def after(
        self,
        hook_context: HookContext,
        details: FlagEvaluationDetails[FlagValueType],
        hints: HookHints,
    ) -> None:
        self.seen.append(
            (hook_context.flag_key, hook_context.evaluation_context.targeting_key, details.reason)
        )


async def test_routes_decide_through_openfeature_so_hooks_see_every_decision(
    settings: CommonSettings,
    redis_client: Redis,
    app_client: Any,
    make_token: Callable[..., str],
) -> None:
    inside = next(f"t-{i}" for i in range(1000) if bucket("property_vision", f"t-{i}") < 2500)
    outside = next(f"t-{i}" for i in range(1000) if bucket("property_vision", f"t-{i}") >= 2500)
    await write_flag(
        redis_client, "property_vision", FlagState(enabled=True, rollout_percentage=25)
    )
    hook = _SeenContexts()
    openfeature_api.add_hooks([hook])
    try:
        app = _app(settings)
        async with app_client(app) as client:
            for tenant, status in ((inside, 200), (outside, 403), (inside, 200)):
                response = await client.get(
                    "/v1/vision/ping", headers={"Authorization": f"Bearer {make_token(tenant)}"}
                )
                assert response.status_code == status
            metrics = app.state.registry
    finally:
        openfeature_api.clear_hooks()
    assert hook.seen == [
        ("property_vision", inside, "SPLIT"),
        ("property_vision", outside, "SPLIT"),
        ("property_vision", inside, "SPLIT"),
    ]
    # The provider's own hook counted them too.
    evaluations = metrics.get_sample_value(
        "feature_flag_evaluations_total", {"feature": "property_vision", "reason": "SPLIT"}
    )
    assert evaluations == 3
