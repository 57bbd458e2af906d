"""HTTP API of ml-services: auth, validation, limits, timeouts, health and metrics.

The app runs with its real lifespan against the session's Postgres and Redis
(tests/conftest.py), although scoring itself touches neither.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
import pytest
import pytest_asyncio
from fastapi import FastAPI

from localrun.servers import free_port
from services.common.auth import issue_token
from services.common.metrics import new_registry
from services.common.scopes import FEED_READ, LEADS_SCORE
from services.common.scoring import LeadFeatures, LeadScorer
from services.common.settings import SettingsError
from services.ml.config import MAX_BATCH_LEADS, MLSettings
from services.ml.main import ModelLoadError, create_app

AppClient = Callable[[FastAPI], AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def ml_env(
    settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, artifact_path: Path
) -> dict[str, str]:
    """The test environment plus the ML_* variables, applied to os.environ."""
    ml = {
        "ML_MODEL_URI": str(artifact_path),
        "ML_MODEL_CACHE_SIZE": "5",
        "ML_BATCH_SIZE": "8",
        "ML_INFERENCE_TIMEOUT": "10",
    }
    for key, value in ml.items():
        monkeypatch.setenv(key, value)
    return {**settings_env, **ml}


@pytest.fixture
def ml_settings(ml_env: dict[str, str]) -> MLSettings:
    return MLSettings.from_env()


@pytest.fixture
def corrupt_artifact(artifact_copy: Path) -> Path:
    """An artifact whose model file no longer matches its metadata."""
    artifact_copy.write_bytes(b"not a model")
    return artifact_copy


def _app(settings: MLSettings) -> FastAPI:
    return create_app(settings, registry=new_registry())


@pytest_asyncio.fixture
async def client(
    ml_settings: MLSettings, app_client: AppClient
) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(_app(ml_settings)) as client:
        yield client


def _auth(settings: MLSettings, tenant: str = "tenant-a", **kwargs: Any) -> dict[str, str]:
    kwargs.setdefault("scopes", (LEADS_SCORE,))
    token = issue_token(settings, tenant_id=tenant, subject="agent-1", **kwargs)
    return {"Authorization": f"Bearer {token}"}


def _lead_json(lead: LeadFeatures, lead_id: str = "lead-1") -> dict[str, Any]:
    return {"lead_id": lead_id, "features": lead.model_dump()}


async def test_score_one_lead(
    client: httpx.AsyncClient, ml_settings: MLSettings, leads: list[LeadFeatures]
) -> None:
    response = await client.post(
        "/v1/leads/score", json=_lead_json(leads[0]), headers=_auth(ml_settings)
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["lead_id"] == "lead-1"
    assert 0.0 <= body["score"] <= 1.0
    assert body["model_version"].startswith("v1-")


async def test_batch_matches_single_and_keeps_order(
    client: httpx.AsyncClient, ml_settings: MLSettings, leads: list[LeadFeatures]
) -> None:
    headers = _auth(ml_settings)
    batch = [_lead_json(lead, f"lead-{i}") for i, lead in enumerate(leads[:20])]
    response = await client.post("/v1/leads/score/batch", json={"leads": batch}, headers=headers)
    assert response.status_code == 200, response.text
    scores = response.json()["scores"]
    assert [s["lead_id"] for s in scores] == [f"lead-{i}" for i in range(20)]
    for item, lead in zip(scores[:3], batch[:3], strict=True):
        single = (await client.post("/v1/leads/score", json=lead, headers=headers)).json()
        assert single["score"] == pytest.approx(item["score"], abs=1e-12)


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing_token"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "malformed_token"),
        ({"Authorization": "Bearer not-a-jwt"}, "malformed_token"),
    ],
)
@pytest.mark.parametrize("path", ["/v1/leads/score", "/v1/leads/score/batch"])
async def test_requests_without_a_valid_token_are_401(
    client: httpx.AsyncClient,
    leads: list[LeadFeatures],
    headers: dict[str, str],
    reason: str,
    path: str,
) -> None:
    body: dict[str, Any] = _lead_json(leads[0])
    if path.endswith("batch"):
        body = {"leads": [body]}
    response = await client.post(path, json=body, headers=headers)
    assert response.status_code == 401
    assert response.json()["reason"] == reason
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("path", ["/v1/leads/score", "/v1/leads/score/batch"])
async def test_expired_and_forged_tokens_are_401(
    client: httpx.AsyncClient, ml_settings: MLSettings, leads: list[LeadFeatures], path: str
) -> None:
    body: dict[str, Any] = _lead_json(leads[0])
    if path.endswith("batch"):
        body = {"leads": [body]}
    expired = _auth(ml_settings, now=time.time() - 7200)
    forged_token = jwt.encode(
        {"tid": "tenant-a", "sub": "agent-1", "exp": 4_102_444_800},
        "f" * 48,  # right kid, wrong key
        algorithm="HS256",
        headers={"kid": ml_settings.jwt_key_id},
    )
    unknown_kid = jwt.encode(
        {"tid": "tenant-a", "sub": "agent-1", "exp": 4_102_444_800},
        ml_settings.jwt_secret_key.get_secret_value(),
        algorithm="HS256",
        headers={"kid": "retired"},
    )
    cases = [
        (expired, "expired_token"),
        ({"Authorization": f"Bearer {forged_token}"}, "bad_signature"),
        ({"Authorization": f"Bearer {unknown_kid}"}, "unknown_kid"),
    ]
    for headers, reason in cases:
        response = await client.post(path, json=body, headers=headers)
        assert response.status_code == 401
        assert response.json()["reason"] == reason


async def test_concurrent_single_requests_are_coalesced_correctly(
    client: httpx.AsyncClient, ml_settings: MLSettings, leads: list[LeadFeatures]
) -> None:
    headers_a, headers_b = _auth(ml_settings, "tenant-a"), _auth(ml_settings, "tenant-b")
    requests = [
        client.post(
            "/v1/leads/score",
            json=_lead_json(lead, f"lead-{i}"),
            headers=headers_a if i % 2 else headers_b,
        )
        for i, lead in enumerate(leads[:40])
    ]
    responses = await asyncio.gather(*requests)
    assert [r.status_code for r in responses] == [200] * 40
    assert [r.json()["lead_id"] for r in responses] == [f"lead-{i}" for i in range(40)]
    expected = LeadScorer.load(ml_settings.ml_model_uri, cache_size=0).score_batch(leads[:40])
    scores = [r.json()["score"] for r in responses]
    assert scores == pytest.approx(expected, abs=1e-12)
    metrics = (await client.get("/metrics")).text
    # However the 40 were grouped into model calls, every lead was in exactly one.
    assert "ml_coalesced_batch_leads_sum 40.0" in metrics
    assert 'ml_predictions_total{kind="single"} 40.0' in metrics


async def test_another_tenants_token_never_reads_this_tenants_cache(
    client: httpx.AsyncClient, ml_settings: MLSettings, leads: list[LeadFeatures]
) -> None:
    lead = _lead_json(leads[0])
    tenant_a, tenant_b = _auth(ml_settings, "tenant-a"), _auth(ml_settings, "tenant-b")
    a_first = (await client.post("/v1/leads/score", json=lead, headers=tenant_a)).json()
    a_again = (await client.post("/v1/leads/score", json=lead, headers=tenant_a)).json()
    b_first = (await client.post("/v1/leads/score", json=lead, headers=tenant_b)).json()
    assert a_first["score"] == a_again["score"] == b_first["score"]
    cache = (await client.get("/health/ml")).json()["cache"]
    # a: miss then hit; b: its own miss although the features are identical.
    assert (cache["hits"], cache["misses"], cache["size"]) == (1, 2, 2)


@pytest.mark.parametrize(
    ("mutate", "field", "fragment"),
    [
        (lambda b: b["features"].update(email_opens="3"), "body.features.email_opens", "integer"),
        (
            lambda b: b["features"].update(budget_usd=-5),
            "body.features.budget_usd",
            "greater than or equal to 0",
        ),
        (lambda b: b["features"].update(source="fax"), "body.features.source", "Input should be"),
        (lambda b: b["features"].pop("timeline"), "body.features.timeline", "required"),
        (lambda b: b["features"].update(mood="keen"), "body.features.mood", "not permitted"),
        # A LeadId, as realtime and churn read it (it was any 1-255 characters).
        (lambda b: b.update(lead_id=""), "body.lead_id", "1-255 characters from"),
        (lambda b: b.update(lead_id="lead 1\n"), "body.lead_id", "1-255 characters from"),
        (lambda b: b.pop("features"), "body.features", "required"),
    ],
)
async def test_malformed_lead_is_422_naming_the_field(
    client: httpx.AsyncClient,
    ml_settings: MLSettings,
    leads: list[LeadFeatures],
    mutate: Any,
    field: str,
    fragment: str,
) -> None:
    body = _lead_json(leads[0])
    mutate(body)
    response = await client.post("/v1/leads/score", json=body, headers=_auth(ml_settings))
    assert response.status_code == 422
    payload = response.json()
    assert payload["reason"] == "validation_error"
    problems = {e["field"]: e["problem"] for e in payload["errors"]}
    assert field in problems, problems
    assert fragment in problems[field]


async def test_body_that_is_not_json_is_422(
    client: httpx.AsyncClient, ml_settings: MLSettings
) -> None:
    response = await client.post(
        "/v1/leads/score",
        content=b"{not json",
        headers={**_auth(ml_settings), "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["reason"] == "validation_error"


async def test_the_scope_comes_before_the_body_and_each_route_bounds_its_own(
    ml_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    app_client: Any,
    leads: list[LeadFeatures],
) -> None:
    # As deployed: ml-services' body cap is 20 MiB, for photo uploads. The
    # scoring bodies were FastAPI body parameters, parsed whole before the
    # scope: any valid token (an agent's feed token) could make a replica hold
    # about 0.5 GB and its event loop for seconds with 20 MiB of "{},".
    monkeypatch.setenv("MAX_REQUEST_BODY_BYTES", "20971520")
    settings = MLSettings.from_env()
    json_type = {"Content-Type": "application/json"}
    scorer = {**_auth(settings), **json_type}
    feed = {**_auth(settings, scopes=(FEED_READ,)), **json_type}
    padding = b" " * 3_000_000
    async with app_client(_app(settings)) as client:
        for path in ("/v1/leads/score", "/v1/leads/score/batch"):
            for body in (b"{not json", b'{"leads": [' + b"{}," * 1000 + b"{}]}"):
                refused = await client.post(path, content=body, headers=feed)
                assert (refused.status_code, refused.json()["reason"]) == (
                    403,
                    "insufficient_scope",
                ), path
            lead = orjson.dumps(_lead_json(leads[0]))
            body = lead if path.endswith("score") else b'{"leads": [' + lead + b"]}"
            padded = await client.post(path, content=body[:-1] + padding + b"}", headers=scorer)
            assert (padded.status_code, padded.json()["reason"]) == (413, "body_too_large")
            assert (await client.post(path, content=body, headers=scorer)).status_code == 200


async def test_malformed_lead_inside_a_batch_names_its_index(
    client: httpx.AsyncClient, ml_settings: MLSettings, leads: list[LeadFeatures]
) -> None:
    batch = [_lead_json(lead) for lead in leads[:3]]
    batch[2]["features"]["showings_attended"] = -1
    response = await client.post(
        "/v1/leads/score/batch", json={"leads": batch}, headers=_auth(ml_settings)
    )
    assert response.status_code == 422
    fields = [e["field"] for e in response.json()["errors"]]
    assert fields == ["body.leads.2.features.showings_attended"]


async def test_batch_over_the_limit_is_422_with_reason(
    client: httpx.AsyncClient, ml_settings: MLSettings, leads: list[LeadFeatures]
) -> None:
    lead = _lead_json(leads[0])
    response = await client.post(
        "/v1/leads/score/batch",
        json={"leads": [lead] * (MAX_BATCH_LEADS + 1)},
        headers=_auth(ml_settings),
    )
    assert response.status_code == 422
    payload = response.json()
    assert payload["errors"][0]["field"] == "body.leads"
    assert f"at most {MAX_BATCH_LEADS} items" in payload["errors"][0]["problem"]


async def test_empty_batch_is_422(client: httpx.AsyncClient, ml_settings: MLSettings) -> None:
    response = await client.post(
        "/v1/leads/score/batch", json={"leads": []}, headers=_auth(ml_settings)
    )
    assert response.status_code == 422
    assert "at least 1 item" in response.json()["errors"][0]["problem"]


async def test_batch_at_the_limit_is_scored(
    client: httpx.AsyncClient, ml_settings: MLSettings, leads: list[LeadFeatures]
) -> None:
    batch = [_lead_json(leads[i % len(leads)], f"l{i}") for i in range(MAX_BATCH_LEADS)]
    response = await client.post(
        "/v1/leads/score/batch", json={"leads": batch}, headers=_auth(ml_settings)
    )
    assert response.status_code == 200
    assert len(response.json()["scores"]) == MAX_BATCH_LEADS


async def test_inference_over_the_deadline_is_503(
    ml_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    app_client: AppClient,
    leads: list[LeadFeatures],
) -> None:
    # The model is held until the requests have given up, so the deadline is
    # missed by construction rather than by the scorer being slow.
    monkeypatch.setenv("ML_INFERENCE_TIMEOUT", "0.05")
    settings = MLSettings.from_env()
    release = threading.Event()
    app = _app(settings)
    batch = [_lead_json(leads[i % len(leads)]) for i in range(3)]
    async with app_client(app) as client:
        scorer = app.state.inference.scorer

        def held(method: Callable[..., Any]) -> Callable[..., Any]:
            def wait_then_score(*args: Any, **kwargs: Any) -> Any:
                release.wait(timeout=30)
                return method(*args, **kwargs)

            return wait_then_score

        monkeypatch.setattr(scorer, "score_batch", held(scorer.score_batch))
        monkeypatch.setattr(scorer, "score_pairs", held(scorer.score_pairs))
        headers = _auth(settings)
        try:
            responses = [
                await client.post("/v1/leads/score/batch", json={"leads": batch}, headers=headers),
                await client.post("/v1/leads/score", json=batch[0], headers=headers),
            ]
        finally:
            release.set()
        metrics = (await client.get("/metrics")).text
    for response in responses:
        assert response.status_code == 503
        assert response.json()["reason"] == "inference_timeout"
        assert "ML_INFERENCE_TIMEOUT" in response.json()["detail"]
        assert response.headers["Retry-After"] == "1"
    assert 'ml_inference_timeouts_total{kind="batch"} 1.0' in metrics
    assert 'ml_inference_timeouts_total{kind="single"} 1.0' in metrics
    # Each wait is timed too (at least the deadline), or a hung scorer would
    # leave the latency p95 (alerts, rollback trigger) looking healthy.
    for kind in ("batch", "single"):
        assert f'ml_inference_duration_seconds_count{{kind="{kind}"}} 1.0' in metrics
        assert f'ml_inference_duration_seconds_bucket{{kind="{kind}",le="0.025"}} 0.0' in metrics


async def test_scoring_never_touches_postgres_or_redis(
    ml_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, app_client: AppClient
) -> None:
    # Scoring reads neither store (Postgres and Redis are declared for property
    # vision and its flag): with both unreachable it starts and stays ready.
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    monkeypatch.setenv(
        "DATABASE_URL", f"postgresql://app:secret@127.0.0.1:{free_port()}/enterprisehub"
    )
    app = _app(MLSettings.from_env())
    async with app_client(app) as client:
        response = await client.get("/health/ml")
    body = response.json()
    assert response.status_code == 200
    assert body["dependencies"]["postgres"]["status"] == "down"
    assert body["dependencies"]["redis"]["status"] == "down"
    assert body["model_loaded"] is True


async def test_health_ml_reports_live_values(
    client: httpx.AsyncClient, ml_settings: MLSettings, leads: list[LeadFeatures]
) -> None:
    before = await client.get("/health/ml")
    assert before.status_code == 200
    idle = before.json()
    assert idle["model_loaded"] is True
    assert idle["model_version"].startswith("v1-")
    assert idle["target_p95_ms"] == 35
    assert (idle["window_calls"], idle["p50_latency_ms"], idle["p95_latency_ms"]) == (0, None, None)

    headers = _auth(ml_settings)
    for lead in leads[:4]:
        await client.post("/v1/leads/score", json=_lead_json(lead), headers=headers)
    await client.post(
        "/v1/leads/score/batch", json={"leads": [_lead_json(x) for x in leads]}, headers=headers
    )
    busy = (await client.get("/health/ml")).json()
    assert busy["window_calls"] == 4
    assert busy["batch_window_calls"] == 1
    assert busy["p50_latency_ms"] > 0
    assert busy["p95_latency_ms"] >= busy["p50_latency_ms"]
    assert busy["batch_p95_latency_ms"] > 0
    assert busy["cache"]["misses"] > idle["cache"]["misses"]


async def test_metrics_count_predictions_and_cache(
    client: httpx.AsyncClient, ml_settings: MLSettings, leads: list[LeadFeatures]
) -> None:
    headers = _auth(ml_settings)
    await client.post("/v1/leads/score", json=_lead_json(leads[0]), headers=headers)
    await client.post("/v1/leads/score", json=_lead_json(leads[0]), headers=headers)
    await client.post(
        "/v1/leads/score/batch",
        json={"leads": [_lead_json(x) for x in leads[:10]]},
        headers=headers,
    )
    text = (await client.get("/metrics")).text
    assert 'ml_inference_duration_seconds_count{kind="single"} 2.0' in text
    assert 'ml_inference_duration_seconds_count{kind="batch"} 1.0' in text
    assert 'ml_predictions_total{kind="single"} 2.0' in text
    assert 'ml_predictions_total{kind="batch"} 10.0' in text
    # leads[0] is cached from the single calls: 1 hit there, 1 in the batch.
    assert "ml_score_cache_hits_total 2.0" in text
    assert "ml_score_cache_misses_total 10.0" in text


async def test_missing_artifact_fails_start_up_with_a_clear_message(
    ml_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    app_client: AppClient,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("ML_MODEL_URI", str(tmp_path / "absent.joblib"))
    with pytest.raises(ModelLoadError) as caught:
        async with app_client(_app(MLSettings.from_env())):
            pass
    message = str(caught.value)
    assert "ml-services cannot start" in message
    assert "absent.joblib" in message
    assert "enterprisehub model train" in message


async def test_corrupt_artifact_fails_start_up(
    ml_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    app_client: AppClient,
    corrupt_artifact: Path,
) -> None:
    monkeypatch.setenv("ML_MODEL_URI", corrupt_artifact.as_uri())
    with pytest.raises(ModelLoadError, match="sha256"):
        async with app_client(_app(MLSettings.from_env())):
            pass


def test_bad_settings_are_reported_per_variable(
    ml_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ML_MODEL_URI", "gs://bucket/model.joblib")
    monkeypatch.setenv("ML_BATCH_SIZE", "0")
    with pytest.raises(SettingsError) as caught:
        MLSettings.from_env()
    problems = "\n".join(caught.value.problems)
    assert "ML_MODEL_URI='gs://bucket/model.joblib'" in problems
    assert "unsupported model URI scheme" in problems
    assert "ML_BATCH_SIZE='0'" in problems


async def test_detailed_health_includes_the_model(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/detailed")
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body["dependencies"]) == {"postgres", "redis"}  # for property vision
    assert body["feature"]["model_loaded"] is True
