"""Property vision end to end: ml-services with the real ``anthropic`` client
pointed at the Messages API stand-in, S3 through moto's server, the session's
Postgres. The stand-in counts billable calls, so exactly-once is asserted.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import io
import ipaddress
import socket
import threading
import uuid
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import asyncpg
import boto3
import httpx
import numpy as np
import orjson
import pytest
import pytest_asyncio
from fastapi import FastAPI
from PIL import Image

from localrun.servers import free_port
from localrun.standins.anthropic import AnthropicStandIn, Case
from services.cli import main as cli_main
from services.common import storage
from services.common.claude.ledger import totals
from services.common.database import Database
from services.common.flags import FlagState, write_flag
from services.common.metrics import new_registry
from services.common.redis import Redis
from services.common.scopes import CRM_INGEST, FEED_READ, LEADS_SCORE, VISION_ANALYZE
from services.common.settings import StorageSettings
from services.common.storage import StorageUnavailable
from services.ml.config import MLSettings
from services.ml.main import create_app
from services.ml.vision import store
from services.ml.vision.fetch import PhotoFetcher, public_address, system_resolver
from services.ml.vision.images import (
    TARGET_LONG_EDGE_PX,
    TARGET_MAX_PIXELS,
    ImageRejected,
    prepare_image,
)
from services.ml.vision.media import MediaStore
from tests.flags import tenants_around
from tests.services.openapi_fuzz import fuzz_operations
from tests.services.request_work import count_request_work

AppClient = Callable[[FastAPI], AbstractAsyncContextManager[httpx.AsyncClient]]
BUCKET = "media-test"
ANALYSIS = {
    "room_type": "kitchen",
    "luxury_score": 0.834,
    "condition_score": 0.9,
    "features": ["quartz countertops", "island"],
    "defects": [{"description": "scuffed cabinet door", "severity": "minor"}],
    "summary": "A bright modern kitchen.",
}


def _jpeg(width: int = 3000, height: int = 2000, *, gps: bool = True) -> bytes:
    image = Image.new("RGB", (width, height), (200, 120, 40))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    if gps:
        exif[0x8825] = {1: "N", 2: (48.0, 51.0, 29.0)}
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif)
    return out.getvalue()


@pytest.fixture
def vision_settings(
    settings_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    artifact_path: Path,
    anthropic_api: AnthropicStandIn,
    s3_endpoint: str,
) -> MLSettings:
    env = {
        "ML_MODEL_URI": str(artifact_path),
        "ANTHROPIC_API_KEY": "sk-test",
        "ANTHROPIC_BASE_URL": anthropic_api.url,
        "CLAUDE_BACKOFF_BASE_SECONDS": "0.01",
        "ANTHROPIC_TIMEOUT_SECONDS": "2",
        "MEDIA_BUCKET": BUCKET,
        "S3_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
        "VISION_URL_ALLOWED_HOSTS": "localhost,*.photos.test",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    if BUCKET not in [b["Name"] for b in s3.list_buckets().get("Buckets", [])]:
        s3.create_bucket(Bucket=BUCKET)
    anthropic_api.responder = lambda _body: orjson.dumps(ANALYSIS).decode()
    return MLSettings.from_env()


@pytest_asyncio.fixture
async def client(
    vision_settings: MLSettings, app_client: AppClient
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(vision_settings, registry=new_registry())
    async with app_client(app) as http:
        yield http


def _auth(make_token: Callable[..., str], tenant: str = "tenant-a") -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(tenant)}"}


async def _upload(
    http: httpx.AsyncClient, token: dict[str, str], data: bytes, prop: str = "prop-1"
) -> httpx.Response:
    return await http.post(
        f"/v1/ml/vision/analyses/upload?property_id={prop}",
        content=data,
        headers={**token, "Content-Type": "image/jpeg"},
    )


async def test_upload_is_analysed_once_and_stored(
    client: httpx.AsyncClient, anthropic_api: AnthropicStandIn, make_token: Callable[..., str]
) -> None:
    token = _auth(make_token)
    photo = _jpeg()
    first, second = await asyncio.gather(
        _upload(client, token, photo), _upload(client, token, photo)
    )
    assert first.status_code == second.status_code == 200, first.text
    assert anthropic_api.billable == 1
    body = first.json()
    assert body["luxury_score"] == 0.83
    assert body["room_type"] == "kitchen"
    assert body["cost_micro_usd"] > 0
    again = await _upload(client, token, photo, prop="prop-2")
    assert again.json()["cached"] is True
    assert again.json()["property_id"] == "prop-2"
    assert anthropic_api.billable == 1
    # Another tenant's identical photo is its own analysis.
    other = await _upload(client, _auth(make_token, "tenant-b"), photo)
    assert other.status_code == 200
    assert anthropic_api.billable == 2
    listed = await client.get("/v1/ml/vision/analyses?property_id=prop-1", headers=token)
    assert [a["image_sha256"] for a in listed.json()["analyses"]] == [body["image_sha256"]]
    none = await client.get(
        "/v1/ml/vision/analyses?property_id=prop-1", headers=_auth(make_token, "tenant-c")
    )
    assert none.json()["analyses"] == []


async def _listed(http: httpx.AsyncClient, token: dict[str, str], prop: str) -> list[Any]:
    response = await http.get(f"/v1/ml/vision/analyses?property_id={prop}", headers=token)
    assert response.status_code == 200, response.text
    analyses: list[Any] = response.json()["analyses"]
    return analyses


async def test_a_photo_posted_for_a_second_property_is_answered_and_listed_for_it(
    client: httpx.AsyncClient, anthropic_api: AnthropicStandIn, make_token: Callable[..., str]
) -> None:
    token = _auth(make_token)
    photo = _jpeg(64, 64)
    first = await _upload(client, token, photo, prop="p1")
    assert first.status_code == 200, first.text
    second = await _upload(client, token, photo, prop="p2")
    assert second.status_code == 200, second.text
    assert (second.json()["property_id"], second.json()["cached"]) == ("p2", True)
    assert second.json()["analysis_id"] == first.json()["analysis_id"]
    # A stored photo named by its object key, for a third property.
    key = f"tenants/tenant-a/photos/{first.json()['image_sha256']}.img"
    third = await client.post(
        "/v1/ml/vision/analyses", json={"property_id": "p3", "object_key": key}, headers=token
    )
    assert (third.json()["property_id"], third.json()["cached"]) == ("p3", True)
    assert anthropic_api.billable == 1
    for prop in ("p1", "p2", "p3"):
        [listed] = await _listed(client, token, prop)
        assert listed["analysis_id"] == first.json()["analysis_id"]
        assert listed["property_id"] == prop
    # Posting it again for p2 links nothing twice.
    assert (await _upload(client, token, photo, prop="p2")).json()["cached"] is True
    assert len(await _listed(client, token, "p2")) == 1


async def test_concurrent_posts_for_two_properties_make_one_call_and_both_list_it(
    vision_settings: MLSettings,
    app_client: AppClient,
    anthropic_api: AnthropicStandIn,
    make_token: Callable[..., str],
) -> None:
    token = _auth(make_token)
    # The answer is held back so that the other posts arrive while it is in flight:
    # in the same process (they share its task) and in another replica (it polls the claim).
    anthropic_api.script(Case.slow(0.5), Case.slow(0.5))
    same_photo, other_photo = _jpeg(64, 64), _jpeg(72, 72)
    replica_a = create_app(vision_settings, registry=new_registry())
    replica_b = create_app(vision_settings, registry=new_registry())
    async with app_client(replica_a) as a, app_client(replica_b) as b:
        responses = await asyncio.gather(
            _upload(a, token, same_photo, prop="p1"),
            _upload(a, token, same_photo, prop="p2"),
            _upload(a, token, other_photo, prop="q1"),
            _upload(b, token, other_photo, prop="q2"),
        )
        assert [r.status_code for r in responses] == [200] * 4, [r.text for r in responses]
        assert [r.json()["property_id"] for r in responses] == ["p1", "p2", "q1", "q2"]
        assert anthropic_api.billable == 2
        for photo_response, props in ((responses[0], ("p1", "p2")), (responses[2], ("q1", "q2"))):
            for prop in props:
                [listed] = await _listed(a, token, prop)
                assert listed["analysis_id"] == photo_response.json()["analysis_id"]
                assert listed["property_id"] == prop


async def test_a_timed_out_owner_leaves_the_claim_another_replica_took_over(
    vision_settings: MLSettings,
    app_client: AppClient,
    anthropic_api: AnthropicStandIn,
    make_token: Callable[..., str],
    db: Database,
) -> None:
    # Replica a's call outlives the stale limit, so replica b takes its claim
    # over and calls; a's call then times out and gives its claim back. That
    # must not delete b's claim: b's billed answer is stored, booked once.
    settings = vision_settings.model_copy(update={"vision_claim_stale_seconds": 0.3})
    anthropic_api.script(Case.slow(3.0), Case.slow(1.8))
    token = _auth(make_token)
    photo = _jpeg(64, 64)
    replica_a = create_app(settings, registry=new_registry())
    replica_b = create_app(settings, registry=new_registry())
    async with app_client(replica_a) as a, app_client(replica_b) as b:

        async def later() -> httpx.Response:
            await asyncio.sleep(0.6)
            return await _upload(b, token, photo)

        first, second = await asyncio.gather(_upload(a, token, photo), later())
        assert first.status_code == 504, first.text
        assert second.status_code == 200, second.text
        assert anthropic_api.billable == 2
        # a's call timed out: its usage is unknown, so it is booked once at its
        # upper bound (under the model it asked for); b's is booked once, as billed.
        timed_out, answered = sorted(
            await totals(db, "tenant-a"), key=lambda row: -row["unanswered_calls"]
        )
        assert (timed_out["calls"], timed_out["unanswered_calls"]) == (1, 1)
        assert timed_out["estimated_cost_micro_usd"] == timed_out["cost_micro_usd"] > 0
        assert (answered["calls"], answered["unanswered_calls"]) == (1, 0)
        assert answered["cost_micro_usd"] == second.json()["cost_micro_usd"]
        again = await _upload(a, token, photo)
        assert again.json()["cached"] is True
        assert again.json()["analysis_id"] == second.json()["analysis_id"]
        assert anthropic_api.billable == 2


async def test_an_owner_gives_up_and_its_claim_back_before_the_claim_goes_stale(
    vision_settings: MLSettings,
    app_client: AppClient,
    anthropic_api: AnthropicStandIn,
    make_token: Callable[..., str],
) -> None:
    # A live owner's call had no bound (retries and the repair: about 420 s at
    # the defaults) while its claim went stale at 180 s: another replica took
    # it over and the photo was paid for twice. The owner now stops first.
    settings = vision_settings.model_copy(update={"vision_analysis_timeout_seconds": 0.3})
    anthropic_api.script(Case.slow(1.0))
    token = _auth(make_token)
    photo = _jpeg(64, 64)
    async with app_client(create_app(settings, registry=new_registry())) as http:
        slow = await _upload(http, token, photo)
        assert slow.status_code == 504, slow.text
        assert slow.json()["reason"] == "vision_timeout"
        # Its claim was given back: the next copy analyses at once.
        retried = await _upload(http, token, photo)
    assert retried.status_code == 200, retried.text
    assert retried.json()["cached"] is False


def test_the_owner_timeout_must_be_below_the_stale_limit(
    settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VISION_CLAIM_STALE_SECONDS", "100")
    with pytest.raises(ValueError, match="VISION_ANALYSIS_TIMEOUT_SECONDS must be below"):
        MLSettings.from_env()
    monkeypatch.setenv("VISION_ANALYSIS_TIMEOUT_SECONDS", "90")
    assert MLSettings.from_env().vision_analysis_timeout_seconds == 90


async def test_property_links_stay_within_the_tenant(
    client: httpx.AsyncClient,
    anthropic_api: AnthropicStandIn,
    make_token: Callable[..., str],
    db: Database,
) -> None:
    photo = _jpeg(64, 64)
    ours = await _upload(client, _auth(make_token, "tenant-a"), photo, prop="p1")
    theirs = await _upload(client, _auth(make_token, "tenant-b"), photo, prop="p2")
    # The same photo in another tenant is that tenant's own analysis and call.
    assert theirs.json()["cached"] is False
    assert theirs.json()["analysis_id"] != ours.json()["analysis_id"]
    assert anthropic_api.billable == 2
    assert await _listed(client, _auth(make_token, "tenant-a"), "p2") == []
    [listed] = await _listed(client, _auth(make_token, "tenant-b"), "p2")
    assert listed["analysis_id"] == theirs.json()["analysis_id"]
    assert await _listed(client, _auth(make_token, "tenant-b"), "p1") == []
    async with db.tenant("tenant-b") as conn:
        assert await conn.fetchval("SELECT count(*) FROM property_vision_links") == 1
    # A link names an analysis of its own tenant: the foreign key carries the tenant.
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await store.link(
            db,
            "tenant-b",
            analysis_id=uuid.UUID(ours.json()["analysis_id"]),
            property_ids=["p9"],
        )
    # Row-level security: tenant-a's links cannot be written in its name from tenant-b.
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with db.tenant("tenant-b") as conn:
            await conn.execute(
                "INSERT INTO property_vision_links (tenant_id, property_id, analysis_id) "
                "VALUES ('tenant-a', 'p9', $1)",
                uuid.UUID(ours.json()["analysis_id"]),
            )
    assert len(await _listed(client, _auth(make_token, "tenant-a"), "p9")) == 0


async def test_sent_image_is_oriented_stripped_and_resized(
    client: httpx.AsyncClient, anthropic_api: AnthropicStandIn, make_token: Callable[..., str]
) -> None:
    response = await _upload(client, _auth(make_token), _jpeg(4000, 3000))
    assert response.status_code == 200
    [request] = anthropic_api.requests
    source = request["messages"][0]["content"][0]["source"]
    sent = Image.open(io.BytesIO(base64.b64decode(source["data"])))
    assert max(sent.size) <= TARGET_LONG_EDGE_PX
    assert sent.width * sent.height <= TARGET_MAX_PIXELS
    assert sent.height > sent.width  # EXIF orientation 6 applied before stripping
    assert not sent.getexif()
    assert "exif" not in sent.info


async def test_a_miss_stores_its_cost_with_the_result_and_a_hit_is_one_read(
    client: httpx.AsyncClient,
    anthropic_api: AnthropicStandIn,
    make_token: Callable[..., str],
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    work = count_request_work(monkeypatch)
    token = _auth(make_token)
    photo = _jpeg(64, 64)
    miss = await _upload(client, token, photo)
    assert miss.status_code == 200, miss.text
    # The hit check, the claim, the result with its ledger row, then the photo
    # recorded as stored (an upload's analysis starts missing it).
    assert work.transactions == ["find", "claim", "complete", "set_photo_missing"]
    [cost] = await totals(db, "tenant-a")
    assert (cost["calls"], cost["cost_micro_usd"]) == (1, miss.json()["cost_micro_usd"])
    work.clear()
    hit = await _upload(client, token, photo)
    assert hit.json()["cached"] is True
    # One indexed read after hashing the bytes: no decode, nothing in a thread.
    assert work.transactions == ["find"]
    assert work.thread_calls == []
    assert anthropic_api.billable == 1


async def test_an_analysis_holding_a_nul_is_stored_once_not_refused_as_the_clients_input(
    client: httpx.AsyncClient, anthropic_api: AnthropicStandIn, make_token: Callable[..., str]
) -> None:
    # Postgres jsonb refuses \u0000: the billed answer was refused at the
    # insert as the caller's 422 unstorable_input, and each retry paid again.
    answer = {**ANALYSIS, "summary": "A bright\x00 kitchen.", "features": ["is\x00land"]}
    anthropic_api.responder = lambda _body: orjson.dumps(answer).decode()
    photo = _jpeg(64, 64)
    first = await _upload(client, _auth(make_token), photo)
    again = await _upload(client, _auth(make_token), photo)
    assert first.status_code == again.status_code == 200, first.text
    assert first.json()["summary"] == "A bright\ufffd kitchen."
    assert first.json()["features"] == ["is\ufffdland"]
    assert again.json()["cached"] is True
    assert anthropic_api.billable == 1


async def test_a_result_postgres_refuses_gives_its_claim_back(
    vision_settings: MLSettings,
    app_client: AppClient,
    anthropic_api: AnthropicStandIn,
    make_token: Callable[..., str],
    owner_db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The claim was kept when storing the result failed: every copy of the
    # photo waited VISION_CLAIM_WAIT_SECONDS, then 503 analysis_in_progress,
    # until the claim went stale (VISION_CLAIM_STALE_SECONDS, 180 s).
    monkeypatch.setenv("VISION_CLAIM_WAIT_SECONDS", "2")
    anthropic_api.responder = lambda _body: orjson.dumps({**ANALYSIS, "summary": "no"}).decode()
    photo = _jpeg(64, 64)
    async with owner_db.unscoped() as conn:
        await conn.execute(
            "ALTER TABLE property_vision_analyses ADD CONSTRAINT test_refuses_no "
            "CHECK (analysis_results->>'summary' IS DISTINCT FROM 'no')"
        )
    try:
        async with app_client(create_app(MLSettings.from_env(), registry=new_registry())) as http:
            # A 500 (the in-process client raises what the app re-raises after it).
            with pytest.raises(asyncpg.CheckViolationError):
                await _upload(http, _auth(make_token), photo)
            async with owner_db.unscoped() as conn:
                await conn.execute(
                    "ALTER TABLE property_vision_analyses DROP CONSTRAINT test_refuses_no"
                )
            retried = await _upload(http, _auth(make_token), photo)
    finally:
        async with owner_db.unscoped() as conn:
            await conn.execute(
                "ALTER TABLE property_vision_analyses DROP CONSTRAINT IF EXISTS test_refuses_no"
            )
    assert retried.status_code == 200, retried.text
    # Both calls billed: the first one's result could not be kept.
    assert anthropic_api.billable == 2


async def test_a_big_photo_is_hashed_off_the_event_loop(
    client: httpx.AsyncClient, make_token: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.ml.routes.vision import HASH_IN_THREAD_BYTES

    noise = np.random.default_rng(3).integers(0, 256, (1000, 1400, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(noise).save(out, format="JPEG", quality=95)
    photo = out.getvalue()
    assert len(photo) > HASH_IN_THREAD_BYTES
    token = _auth(make_token)
    assert (await _upload(client, token, photo)).status_code == 200
    work = count_request_work(monkeypatch)
    hit = await _upload(client, token, photo)
    assert hit.json()["cached"] is True
    assert work.thread_calls == ["_hexdigest"]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"definitely not an image", "not_an_image"),
        (_jpeg(8001, 16, gps=False), "image_too_large"),
        (_jpeg(64, 64)[:200], "not_an_image"),
    ],
)
async def test_bad_uploads_are_422_without_a_call(
    client: httpx.AsyncClient,
    anthropic_api: AnthropicStandIn,
    make_token: Callable[..., str],
    data: bytes,
    reason: str,
) -> None:
    response = await _upload(client, _auth(make_token), data)
    assert response.status_code == 422
    assert response.json()["reason"] == reason
    assert anthropic_api.requests == []


async def test_oversized_upload_is_413(
    client: httpx.AsyncClient, vision_settings: MLSettings, make_token: Callable[..., str]
) -> None:
    big = b"\xff" * (vision_settings.vision_max_image_bytes + 1)
    response = await _upload(client, _auth(make_token), big)
    assert response.status_code == 413


@pytest.mark.parametrize("chunked", [False, True])
async def test_a_photo_over_vision_max_image_bytes_is_the_contracts_413(
    vision_settings: MLSettings,
    app_client: AppClient,
    make_token: Callable[..., str],
    anthropic_api: AnthropicStandIn,
    chunked: bool,
) -> None:
    settings = vision_settings.model_copy(update={"vision_max_image_bytes": 1024})
    photo = b"\xff" * 4096

    async def streamed() -> AsyncIterator[bytes]:
        for start in range(0, len(photo), 512):
            yield photo[start : start + 512]

    async with app_client(create_app(settings, registry=new_registry())) as http:
        response = await http.post(
            "/v1/ml/vision/analyses/upload?property_id=p",
            content=streamed() if chunked else photo,
            headers={**_auth(make_token), "Content-Type": "image/jpeg"},
        )
    # Every service's 413 (docs/contracts.md), naming the setting to change.
    assert response.status_code == 413
    assert response.json()["reason"] == "body_too_large"
    assert "VISION_MAX_IMAGE_BYTES" in response.json()["detail"]
    assert anthropic_api.requests == []


async def test_unauthenticated_upload_is_401(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/ml/vision/analyses/upload?property_id=p", content=_jpeg(64, 64)
    )
    assert response.status_code == 401


async def test_another_tenants_object_key_is_refused(
    client: httpx.AsyncClient, anthropic_api: AnthropicStandIn, make_token: Callable[..., str]
) -> None:
    uploaded = await _upload(client, _auth(make_token, "tenant-b"), _jpeg(64, 64))
    key = f"tenants/tenant-b/photos/{uploaded.json()['image_sha256']}.img"
    for bad_key, reason in [
        (key, "object_key_forbidden"),
        ("tenants/tenant-a/photos/../../tenant-b/photos/x.img", "invalid_object_key"),
        (key + "\n", "invalid_object_key"),
    ]:
        response = await client.post(
            "/v1/ml/vision/analyses",
            json={"property_id": "p1", "object_key": bad_key},
            headers=_auth(make_token, "tenant-a"),
        )
        assert response.status_code == 422, bad_key
        assert response.json()["reason"] == reason
    own = await client.post(
        "/v1/ml/vision/analyses",
        json={"property_id": "p1", "object_key": key},
        headers=_auth(make_token, "tenant-b"),
    )
    assert own.status_code == 200
    assert own.json()["cached"] is True
    assert anthropic_api.billable == 1


async def test_a_tenant_with_a_dot_in_its_id_analyses_its_own_object_keys(
    client: httpx.AsyncClient, anthropic_api: AnthropicStandIn, make_token: Callable[..., str]
) -> None:
    # Tenant ids may hold dots (services.common.tenancy); the upload stores the
    # photo under the tenant's own prefix, so its key must be accepted back.
    uploaded = await _upload(client, _auth(make_token, "acme.realty"), _jpeg(64, 64))
    assert uploaded.status_code == 200, uploaded.text
    key = f"tenants/acme.realty/photos/{uploaded.json()['image_sha256']}.img"
    own = await client.post(
        "/v1/ml/vision/analyses",
        json={"property_id": "p1", "object_key": key},
        headers=_auth(make_token, "acme.realty"),
    )
    assert own.status_code == 200, own.text
    assert own.json()["cached"] is True
    other = await client.post(
        "/v1/ml/vision/analyses",
        json={"property_id": "p1", "object_key": key},
        headers=_auth(make_token, "acme"),
    )
    assert other.status_code == 422
    assert other.json()["reason"] == "object_key_forbidden"
    assert anthropic_api.billable == 1


async def test_url_resolving_to_loopback_is_refused(
    client: httpx.AsyncClient, anthropic_api: AnthropicStandIn, make_token: Callable[..., str]
) -> None:
    for url, reason in [
        ("https://localhost/photo.jpg", "url_forbidden_address"),
        ("https://evil.example/photo.jpg", "url_host_not_allowed"),
        ("http://localhost/photo.jpg", "url_invalid"),
        ("https://user:pw@x.photos.test/p.jpg", "url_invalid"),
    ]:
        response = await client.post(
            "/v1/ml/vision/analyses",
            json={"property_id": "p1", "image_url": url},
            headers=_auth(make_token),
        )
        assert response.status_code == 422, url
        assert response.json()["reason"] == reason, url
    assert anthropic_api.requests == []


async def test_timeout_releases_the_claim_and_is_not_retried(
    client: httpx.AsyncClient, anthropic_api: AnthropicStandIn, make_token: Callable[..., str]
) -> None:
    anthropic_api.script(Case.slow(3.0))
    photo = _jpeg(64, 64)
    response = await _upload(client, _auth(make_token), photo)
    assert response.status_code == 504
    assert response.json()["reason"] == "claude_timeout"
    assert anthropic_api.billable == 1
    assert len(anthropic_api.requests) == 1
    # The result never arrived: a later request may call again, and stores it.
    retry = await _upload(client, _auth(make_token), photo)
    assert retry.status_code == 200
    assert anthropic_api.billable == 2


async def test_unusable_output_twice_is_502_and_nothing_is_stored(
    client: httpx.AsyncClient,
    anthropic_api: AnthropicStandIn,
    make_token: Callable[..., str],
    db: Database,
) -> None:
    anthropic_api.script(Case.refusal(), Case.valid('{"room_type": "castle"}'))
    response = await _upload(client, _auth(make_token), _jpeg(64, 64))
    assert response.status_code == 502
    assert response.json()["reason"] == "claude_schema"
    listed = await client.get(
        "/v1/ml/vision/analyses?property_id=prop-1", headers=_auth(make_token)
    )
    assert listed.json()["analyses"] == []
    # No result, but both calls were billed: both are in the ledger.
    [cost] = await totals(db, "tenant-a")
    assert cost["calls"] == 2


async def test_without_a_key_vision_answers_503_and_health_says_so(
    vision_settings: MLSettings, app_client: AppClient, make_token: Callable[..., str]
) -> None:
    settings = vision_settings.model_copy(update={"anthropic_api_key": None})
    async with app_client(create_app(settings, registry=new_registry())) as http:
        response = await _upload(http, _auth(make_token), _jpeg(64, 64))
        assert response.status_code == 503
        assert response.json()["reason"] == "claude_not_configured"
        assert "ANTHROPIC_API_KEY" in response.json()["detail"]
        health = (await http.get("/health/ml")).json()
        assert health["vision"]["configured"] is False


async def test_tenant_outside_the_rollout_is_403_before_any_call(
    vision_settings: MLSettings,
    app_client: AppClient,
    make_token: Callable[..., str],
    redis_client: Redis,
    anthropic_api: AnthropicStandIn,
) -> None:
    inside, outside = tenants_around("property_vision", 50)
    await write_flag(
        redis_client, "property_vision", FlagState(enabled=True, rollout_percentage=50)
    )
    async with app_client(create_app(vision_settings, registry=new_registry())) as http:
        assert (await _upload(http, {}, _jpeg(64, 64))).status_code == 401
        refused = await _upload(http, _auth(make_token, outside), _jpeg(64, 64))
        listed = await http.get(
            "/v1/ml/vision/analyses?property_id=prop-1", headers=_auth(make_token, outside)
        )
        allowed = await _upload(http, _auth(make_token, inside), _jpeg(64, 64))
    assert refused.status_code == listed.status_code == 403
    assert refused.json()["reason"] == "feature_disabled"
    assert "property_vision" in refused.json()["detail"]
    assert allowed.status_code == 200, allowed.text
    assert anthropic_api.billable == 1


async def test_the_scope_and_the_rollout_are_checked_before_an_analysis_body_is_read(
    vision_settings: MLSettings,
    app_client: AppClient,
    make_token: Callable[..., str],
    redis_client: Redis,
) -> None:
    # The JSON body was a FastAPI body parameter, read and validated before any
    # dependency: a tenant outside the rollout, or a token without the scope,
    # got the 422 of a malformed body instead of the 403.
    inside, outside = tenants_around("property_vision", 50)
    await write_flag(
        redis_client, "property_vision", FlagState(enabled=True, rollout_percentage=50)
    )
    refusals = [
        (_auth(make_token, outside), "feature_disabled"),
        (
            {"Authorization": f"Bearer {make_token(inside, scopes=(FEED_READ,))}"},
            "insufficient_scope",
        ),
    ]
    async with app_client(create_app(vision_settings, registry=new_registry())) as http:
        for headers, reason in refusals:
            for body in (b"{not json", b'{"property_id": 1}', b"[" * 100_000):
                response = await http.post(
                    "/v1/ml/vision/analyses",
                    content=body,
                    headers={**headers, "Content-Type": "application/json"},
                )
                assert (response.status_code, response.json()["reason"]) == (403, reason)


async def test_only_a_vision_token_analyses_or_reads_and_the_scope_comes_first(
    vision_settings: MLSettings,
    app_client: AppClient,
    make_token: Callable[..., str],
    redis_client: Redis,
    anthropic_api: AnthropicStandIn,
) -> None:
    # Each analysis is a billed Claude call: an agent's feed token, the CRM
    # integration's or a scoring client's neither creates nor reads analyses,
    # and without the scope a token learns nothing about the rollout.
    inside, outside = tenants_around("property_vision", 50)
    await write_flag(
        redis_client, "property_vision", FlagState(enabled=True, rollout_percentage=50)
    )

    def bearer(tenant: str, *scopes: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {make_token(tenant, scopes=scopes)}"}

    others = bearer(inside, FEED_READ, CRM_INGEST, LEADS_SCORE)
    async with app_client(create_app(vision_settings, registry=new_registry())) as http:
        refused = [
            await _upload(http, others, _jpeg(64, 64)),
            await http.post(
                "/v1/ml/vision/analyses",
                json={"property_id": "prop-1", "object_key": "x.jpg"},
                headers=others,
            ),
            await http.get("/v1/ml/vision/analyses?property_id=prop-1", headers=others),
            # Outside the rollout and without the scope: the scope is refused first.
            await _upload(http, bearer(outside, FEED_READ), _jpeg(64, 64)),
        ]
        allowed = await _upload(http, bearer(inside, VISION_ANALYZE), _jpeg(64, 64))
        listed = await http.get(
            "/v1/ml/vision/analyses?property_id=prop-1", headers=bearer(inside, VISION_ANALYZE)
        )
    assert [(r.status_code, r.json()["reason"]) for r in refused] == [
        (403, "insufficient_scope")
    ] * 4
    assert allowed.status_code == 200, allowed.text
    assert len(listed.json()["analyses"]) == 1
    assert anthropic_api.billable == 1


# -- the fetcher against a real HTTP server ----------------------------------


class _Handler(BaseHTTPRequestHandler):
    #: The Accept-Encoding of the last request (what the fetcher asked for).
    accept_encoding: str | None = None

    def do_GET(self) -> None:
        _Handler.accept_encoding = self.headers.get("Accept-Encoding")
        if self.path.startswith("/encoded/"):
            # A photo sent compressed whatever was asked, as a hostile host
            # would send a bomb: "/encoded/gzip,gzip" is gzip twice.
            encodings = self.path.removeprefix("/encoded/").split(",")
            body = _jpeg(32, 32)
            for encoding in encodings:
                body = gzip.compress(body) if encoding == "gzip" else zlib.compress(body)
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Encoding", ", ".join(encodings))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path == "/photo.jpg":
            body = _jpeg(32, 32)
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path.startswith("/to-"):
            self.send_response(302)
            self.send_header("Location", f"http://{self.path[4:]}/photo.jpg")
            self.end_headers()
        else:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<html></html>")

    def log_message(self, *_: Any) -> None:
        return


@pytest.fixture(scope="module")
def photo_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


DNS = {
    "cdn.photos.test": "127.0.0.1",
    "private.photos.test": "10.1.2.3",
    "meta.photos.test": "169.254.169.254",
}


async def _resolve(host: str, _port: int) -> list[str]:
    return [DNS[host]] if host in DNS else []


def _fetcher(**overrides: Any) -> PhotoFetcher:
    # The test server listens on loopback: only 127.0.0.1 is let through, as if public.
    options: dict[str, Any] = {
        "allowed_hosts": ["*.photos.test"],
        "max_bytes": 100_000,
        "timeout_seconds": 2.0,
        "resolver": _resolve,
        "address_allowed": lambda a: a == ipaddress.ip_address("127.0.0.1") or public_address(a),
        "schemes": ("http",),
        **overrides,
    }
    return PhotoFetcher(**options)


async def test_fetcher_follows_rules_on_every_hop(photo_server: int) -> None:
    fetcher = _fetcher()
    base = f"http://cdn.photos.test:{photo_server}"
    try:
        assert prepare_image(await fetcher.fetch(f"{base}/photo.jpg")).width == 32
        cases = [
            (f"http://private.photos.test:{photo_server}/photo.jpg", "url_forbidden_address"),
            (f"{base}/to-meta.photos.test:{photo_server}", "url_forbidden_address"),
            (f"{base}/to-private.photos.test:{photo_server}", "url_forbidden_address"),
            (f"{base}/to-elsewhere.test:{photo_server}", "url_host_not_allowed"),
            (f"{base}/page.html", "unsupported_image_type"),
            (f"http://nowhere.photos.test:{photo_server}/p.jpg", "url_unresolvable"),
        ]
        for url, reason in cases:
            with pytest.raises(ImageRejected) as caught:
                await fetcher.fetch(url)
            assert caught.value.reason == reason, url
    finally:
        await fetcher.close()
    small = _fetcher(max_bytes=100)
    try:
        with pytest.raises(ImageRejected) as caught:
            await small.fetch(f"{base}/photo.jpg")
        assert caught.value.reason == "image_too_big"
    finally:
        await small.close()


async def test_fetcher_never_decompresses(photo_server: int) -> None:
    # A decoder inflates each network chunk whole before the size check sees
    # it (64 KiB of gzip is 64 MiB; "gzip, gzip" multiplies): the fetcher asks
    # for the bytes as they are and refuses an encoded answer unread.
    fetcher = _fetcher()
    base = f"http://cdn.photos.test:{photo_server}"
    try:
        assert prepare_image(await fetcher.fetch(f"{base}/photo.jpg")).width == 32
        assert _Handler.accept_encoding == "identity"
        for encodings in ["gzip", "deflate", "gzip,gzip"]:
            with pytest.raises(ImageRejected) as caught:
                await fetcher.fetch(f"{base}/encoded/{encodings}")
            assert caught.value.reason == "url_content_encoded", encodings
    finally:
        await fetcher.close()


async def test_fetcher_refuses_urls_it_cannot_parse_or_encode_with_a_reason(
    photo_server: int,
) -> None:
    # Each was a 500: urlsplit raises ValueError on an unclosed IPv6 bracket,
    # and the IDNA encoding of a host (by getaddrinfo, or by httpx for the Host
    # header) UnicodeError. (A hostile host's Location is parsed by httpx,
    # which answers an unparsable one with an HTTPError: url_fetch_failed.)
    seen: list[str] = []

    async def photos_on_loopback(host: str, _port: int) -> list[str]:
        seen.append(host)
        return ["127.0.0.1"] if host.endswith(".photos.test") else []

    fetcher = _fetcher(resolver=photos_on_loopback)
    real_dns = _fetcher(resolver=system_resolver)
    try:
        cases = [
            (fetcher, "http://[::1/photo.jpg", "url_invalid"),
            (real_dns, f"http://{'a' * 64}.photos.test:{photo_server}/photo.jpg", "url_invalid"),
            (fetcher, f"http://a..photos.test:{photo_server}/photo.jpg", "url_invalid"),
        ]
        for client, url, reason in cases:
            with pytest.raises(ImageRejected) as caught:
                await client.fetch(url)
            assert caught.value.reason == reason, url
        # A host name outside ASCII is fetched by its IDNA form, as a browser would.
        photo = await fetcher.fetch(f"http://b\u00fccher.photos.test:{photo_server}/photo.jpg")
        assert prepare_image(photo).width == 32
        assert seen[-1] == "xn--bcher-kva.photos.test"
    finally:
        await fetcher.close()
        await real_dns.close()


async def test_a_photo_url_that_cannot_be_parsed_is_422_not_500(
    client: httpx.AsyncClient, make_token: Callable[..., str]
) -> None:
    for url in ["https://[::1/a.jpg", f"https://{'a' * 64}.photos.test/a.jpg"]:
        response = await client.post(
            "/v1/ml/vision/analyses",
            json={"property_id": "prop-1", "image_url": url},
            headers=_auth(make_token),
        )
        assert response.status_code == 422, (url, response.text)
        assert response.json()["reason"] == "url_invalid"


def test_public_address_refuses_internal_ranges() -> None:
    for address in [
        "127.0.0.1",
        "10.0.0.1",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "::1",
        "fe80::1",
        "fd00:ec2::254",
        "::ffff:127.0.0.1",
        "0.0.0.0",
        # IPv4 inside IPv6: NAT64 (the metadata service, a VPC address, loopback),
        # IPv4-compatible, IPv4-translated, 6to4; local-use NAT64 and site-local.
        "64:ff9b::a9fe:a9fe",
        "64:ff9b::a00:1",
        "64:ff9b::7f00:1",
        "::7f00:1",
        "::ffff:0:a9fe:a9fe",
        "2002:a9fe:a9fe::1",
        "2002:c0a8:101::1",
        "64:ff9b:1::a00:1",
        "fec0::1",
    ]:
        assert not public_address(ipaddress.ip_address(address)), address
    # Public hosts stay reachable, also through NAT64 (DNS64 on an IPv6-only network).
    for address in ["93.184.216.34", "64:ff9b::5db8:d822", "::ffff:93.184.216.34", "2606:4700::1"]:
        assert public_address(ipaddress.ip_address(address)), address


# -- the Message Batches backfill ---------------------------------------------


async def test_backfill_batches_unanalysed_photos_and_resumes(
    vision_settings: MLSettings,
    client: httpx.AsyncClient,
    anthropic_api: AnthropicStandIn,
    make_token: Callable[..., str],
    db: Any,
    s3_endpoint: str,
) -> None:
    from services.common.claude import create_claude
    from services.ml.vision.backfill import Backfill
    from services.ml.vision.media import MediaStore

    tenant = "tenant-bf"
    uploaded = _jpeg(40, 40)
    analysed = await _upload(client, _auth(make_token, tenant), uploaded)
    assert analysed.status_code == 200
    assert anthropic_api.billable == 1
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    front, kitchen = _jpeg(50, 50), _jpeg(60, 60)
    # house-3 shares house-1's photo: one request, listed for both properties.
    for name, body in [
        ("house-1/front.jpg", front),
        ("house-2/kitchen.jpg", kitchen),
        ("house-3/street.jpg", front),
        # The uploaded photo, also filed under house-4: no call, linked to house-4.
        ("house-4/upload.jpg", uploaded),
    ]:
        s3.put_object(Bucket=BUCKET, Key=f"tenants/{tenant}/photos/{name}", Body=body)
    s3.put_object(Bucket=BUCKET, Key="tenants/tenant-other/photos/x.jpg", Body=_jpeg(70, 70))
    anthropic_api.batch_invisible_polls = 1  # the new batch is not readable at once

    claude = create_claude(vision_settings, registry=new_registry(), db=db)
    assert claude is not None
    media = MediaStore(BUCKET, s3)
    options = {
        "db": db,
        "claude": claude,
        "media": media,
        "tenant_id": tenant,
        "max_image_bytes": 10**7,
        "claim_stale_seconds": 180.0,
        "poll_seconds": 0.01,
    }
    try:
        # A first run "crashes" right after submitting its batch.
        crashed = Backfill(**options)
        images = await crashed._plan()
        batch_id = await crashed._submit(images)
        assert crashed.report.submitted == 2
        assert crashed.report.already_done == 2
        # The next run collects that batch and submits nothing new.
        report = await Backfill(**options).run()
    finally:
        await claude.close()
    assert report.batches == []
    assert report.stored == 3
    assert report.failed == 0
    assert anthropic_api.batch_billable == 2
    assert anthropic_api.billable == 1
    [house_1] = await _listed(client, _auth(make_token, tenant), "house-1")
    [house_3] = await _listed(client, _auth(make_token, tenant), "house-3")
    assert house_1["analysis_id"] == house_3["analysis_id"]
    assert house_3["property_id"] == "house-3"
    [house_4] = await _listed(client, _auth(make_token, tenant), "house-4")
    assert house_4["analysis_id"] == analysed.json()["analysis_id"]
    # The upload's own key (photos/<sha256>.img) names no property to link.
    sha = analysed.json()["image_sha256"]
    assert await _listed(client, _auth(make_token, tenant), sha) == []
    rows = {r["model"]: r for r in await totals(db, tenant)}
    # The ledger records the snapshot the API reported for the configured alias.
    assert rows["claude-sonnet-4-5-20250929"]["calls"] == 3
    again = await Backfill(
        **options | {"claude": create_claude(vision_settings, registry=new_registry(), db=db)}
    ).run()
    assert again.planned == 0
    assert again.submitted == 0
    assert batch_id


async def test_backfill_stores_an_answer_holding_a_nul(
    vision_settings: MLSettings,
    client: httpx.AsyncClient,
    anthropic_api: AnthropicStandIn,
    make_token: Callable[..., str],
    db: Any,
    s3_endpoint: str,
) -> None:
    from services.common.claude import create_claude
    from services.ml.vision.backfill import Backfill
    from services.ml.vision.media import MediaStore

    # As the live route: Postgres jsonb refuses \u0000 in a billed answer.
    tenant = "tenant-nul"
    answer = {**ANALYSIS, "summary": "A bright\x00 kitchen."}
    anthropic_api.responder = lambda _body: orjson.dumps(answer).decode()
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    s3.put_object(Bucket=BUCKET, Key=f"tenants/{tenant}/photos/h/k.jpg", Body=_jpeg(44, 44))
    claude = create_claude(vision_settings, registry=new_registry(), db=db)
    assert claude is not None
    try:
        report = await Backfill(
            db=db,
            claude=claude,
            media=MediaStore(BUCKET, s3),
            tenant_id=tenant,
            max_image_bytes=10**7,
            claim_stale_seconds=180.0,
            poll_seconds=0.01,
        ).run()
    finally:
        await claude.close()
    assert (report.stored, report.failed) == (1, 0)
    [listed] = await _listed(client, _auth(make_token, tenant), "h")
    assert listed["summary"] == "A bright\ufffd kitchen."


@pytest.mark.parametrize("down", ["DATABASE_URL", "S3_ENDPOINT_URL"])
def test_backfill_with_postgres_or_the_bucket_down_is_one_line(
    down: str,
    vision_settings: MLSettings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Both ended in a traceback (DatabaseUnavailable, StorageUnavailable).
    dead = f"127.0.0.1:{free_port()}"
    if down == "DATABASE_URL":
        monkeypatch.setenv(down, f"postgresql://app:app@{dead}/enterprisehub")
    else:
        monkeypatch.setenv(down, f"http://{dead}")
    assert cli_main(["vision", "backfill", "--tenant", "tenant-down"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    [line] = [line for line in err.splitlines() if line.startswith("enterprisehub")]
    assert line.startswith("enterprisehub: vision backfill: "), line
    assert "unavailable (" in line, line
    assert line.endswith("; run it again once it answers (it resumes)"), line


def test_backfill_without_claude_says_what_to_set(
    vision_settings: MLSettings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # "error: ANTHROPIC_API_KEY is not set; nothing can be analysed": no way forward.
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    assert cli_main(["vision", "backfill", "--tenant", "tenant-down"]) == 1
    assert capsys.readouterr().err == (
        "enterprisehub: vision backfill: ANTHROPIC_API_KEY is not set, so nothing can be "
        "analysed: set it (and ANTHROPIC_BASE_URL for a stand-in) as the services have it\n"
    )


async def test_an_upload_while_storage_fails_is_503_and_its_retry_stores_the_photo(
    vision_settings: MLSettings,
    app_client: AppClient,
    anthropic_api: AnthropicStandIn,
    make_token: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
    s3_bucket: Callable[[str], Any],
    owner_db: Database,
) -> None:
    """The photo is stored while Claude analyses it. When S3 refuses it, the
    answer is a 503 to retry (it was a 500), and the retry, answered from the
    stored analysis without a second call, stores the photo it lacked (it
    never did: the analysis pointed at an object nobody wrote)."""
    bucket = f"media-down-{uuid.uuid4().hex[:8]}"  # not created yet: S3 refuses
    monkeypatch.setenv("MEDIA_BUCKET", bucket)
    app = create_app(MLSettings.from_env(), registry=new_registry())
    token = _auth(make_token)
    photo = _jpeg()
    async with app_client(app) as http:
        first = await _upload(http, token, photo)
        assert first.status_code == 503, first.text
        assert first.json()["reason"] == "dependency_unavailable"
        assert "NoSuchBucket" in first.json()["detail"]
        assert anthropic_api.billable == 1  # analysed and stored: no second call
        # The listing says the photo is missing (it did not say so).
        [listed] = await _listed(http, token, "prop-1")
        assert listed["photo_missing"] is True
        s3 = s3_bucket(bucket)  # S3 is back
        again = await _upload(http, token, photo)
        [listed] = await _listed(http, token, "prop-1")
        assert listed["photo_missing"] is False
    assert again.status_code == 200, again.text
    assert (again.json()["cached"], again.json()["photo_missing"]) == (True, False)
    assert anthropic_api.billable == 1
    key = f"tenants/tenant-a/photos/{again.json()['image_sha256']}.img"
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == photo
    async with owner_db.unscoped() as conn:
        assert await conn.fetchval("SELECT photo_missing FROM property_vision_analyses") is False


async def test_an_upload_cut_short_during_its_put_leaves_its_photo_to_the_retry(
    vision_settings: MLSettings,
    app_client: AppClient,
    anthropic_api: AnthropicStandIn,
    make_token: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
    s3_bucket: Callable[[str], Any],
) -> None:
    """The upload ended while its photo was being stored (the pod stopped during
    the put's retries), after the analysis was: nothing recorded the photo as
    missing, so the retry was answered from the analysis and the photo was
    never written. An upload's analysis now starts missing its photo and only a
    stored photo clears that."""
    bucket = f"media-cut-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("MEDIA_BUCKET", bucket)
    s3 = s3_bucket(bucket)
    put = MediaStore.put
    calls = 0

    async def ended_during_the_first(self: MediaStore, *args: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("the upload ended here")
        await put(self, *args)

    monkeypatch.setattr(MediaStore, "put", ended_during_the_first)
    app = create_app(MLSettings.from_env(), registry=new_registry())
    token = _auth(make_token)
    photo = _jpeg()
    async with app_client(app) as http:
        with pytest.raises(RuntimeError, match="the upload ended here"):
            await _upload(http, token, photo)
        again = await _upload(http, token, photo)
        assert again.status_code == 200, again.text
        third = await _upload(http, token, photo)
    assert anthropic_api.billable == 1
    key = f"tenants/tenant-a/photos/{again.json()['image_sha256']}.img"
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == photo
    assert (third.status_code, calls) == (200, 2)  # stored once: the third needs no put


async def test_an_upload_of_a_photo_analysed_from_a_url_stores_the_photo(
    vision_settings: MLSettings,
    app_client: AppClient,
    anthropic_api: AnthropicStandIn,
    make_token: Callable[..., str],
    photo_server: int,
    monkeypatch: pytest.MonkeyPatch,
    s3_bucket: Callable[[str], Any],
) -> None:
    """A photo analysed from its URL, then uploaded: the upload is answered from
    the stored analysis, and its photo is stored under the tenant's prefix as
    every upload's is (it was not: the analysis pointed at the URL)."""
    bucket = f"media-url-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("MEDIA_BUCKET", bucket)
    s3 = s3_bucket(bucket)
    app = create_app(MLSettings.from_env(), registry=new_registry())
    token = _auth(make_token)
    photo = _jpeg(32, 32)  # what the photo server serves
    async with app_client(app) as http:
        # The server listens on loopback over HTTP: a fetcher that lets it through.
        fetcher = app.state.photo_fetcher
        app.state.photo_fetcher = _fetcher()
        try:
            by_url = await http.post(
                "/v1/ml/vision/analyses",
                json={
                    "property_id": "p1",
                    "image_url": f"http://cdn.photos.test:{photo_server}/photo.jpg",
                },
                headers=token,
            )
        finally:
            await app.state.photo_fetcher.close()
            app.state.photo_fetcher = fetcher
        assert by_url.status_code == 200, by_url.text
        uploaded = await _upload(http, token, photo, prop="p2")
    assert uploaded.status_code == 200, uploaded.text
    assert uploaded.json()["analysis_id"] == by_url.json()["analysis_id"]
    assert (uploaded.json()["cached"], anthropic_api.billable) == (True, 1)
    key = f"tenants/tenant-a/photos/{uploaded.json()['image_sha256']}.img"
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == photo


async def test_unreachable_storage_is_503_not_500(
    vision_settings: MLSettings,
    app_client: AppClient,
    make_token: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("S3_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    app = create_app(MLSettings.from_env(), registry=new_registry())
    token = _auth(make_token)
    async with app_client(app) as http:
        by_key = await http.post(
            "/v1/ml/vision/analyses",
            json={"property_id": "prop-1", "object_key": "tenants/tenant-a/photos/a.jpg"},
            headers=token,
        )
    assert by_key.status_code == 503, by_key.text
    assert by_key.json()["reason"] == "dependency_unavailable"
    assert "object storage unavailable" in by_key.json()["detail"]
    assert str(port) not in by_key.json()["detail"]  # no endpoint in an answer


@pytest.fixture
def stalled_s3() -> Iterator[str]:
    """An endpoint that accepts connections and never answers (storage hung after
    the connect); the connections close with the test."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        listener.close()
        for connection in accepted:
            connection.close()


async def test_storage_that_stops_answering_is_503_within_its_read_timeout(
    stalled_s3: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """botocore waits 60 s for a reply by default, and tried three times: an upload
    to a hung S3 waited three minutes, holding one of the few threads of the
    default executor (hashing and decoding photos) all along."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setattr(storage, "READ_TIMEOUT_SECONDS", 0.2)
    settings = StorageSettings.from_env(s3_endpoint_url=stalled_s3, aws_region="us-east-1")
    media = MediaStore("media", storage.s3_client(settings))
    with pytest.raises(StorageUnavailable, match="ReadTimeoutError"):
        # Three attempts, each up to 1 s for S3's "100 Continue" and 0.2 s for
        # the reply, and standard mode's backoff (at most 1 s, then 2 s): about
        # 9 s on a busy machine, where botocore's defaults take over 180 s.
        await asyncio.wait_for(media.put("tenants/tenant-a/photos/a.img", b"x", "image/jpeg"), 30)


async def test_no_request_the_document_describes_gets_a_server_error(
    client: httpx.AsyncClient, make_token: Callable[..., str]
) -> None:
    """Valid and invalid requests generated from ml-services' document (scoring and
    vision): each answered below 500, every refusal in the ``{detail, reason}`` shape."""
    openapi = (await client.get("/openapi.json")).json()
    report = await fuzz_operations(client, openapi, token=make_token("tenant-a"))
    assert report.findings == []
    for operation in ("POST /v1/leads/score", "GET /v1/ml/vision/analyses"):
        assert report.answered(operation, 2) > 0, report.statuses  # handlers reached
