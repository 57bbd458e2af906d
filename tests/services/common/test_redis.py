"""The Redis client: pooled, tenant-namespaced, and a defined failure when down."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI

from localrun.servers import free_port
from services.common.redis import (
    Redis,
    RedisUnavailable,
    close_redis,
    create_redis,
    ping_redis,
    redis_errors,
)

AppClient = Callable[[FastAPI], Any]


async def test_ping_returns_measured_seconds(redis_client: Redis) -> None:
    assert await ping_redis(redis_client) > 0


async def test_ping_against_a_closed_port_raises_redis_unavailable() -> None:
    client = create_redis(f"redis://127.0.0.1:{free_port()}/0", socket_timeout=1)
    try:
        with pytest.raises(RedisUnavailable, match="redis unavailable"):
            await ping_redis(client)
    finally:
        await close_redis(client)


async def test_commands_against_a_closed_port_raise_redis_unavailable() -> None:
    client = create_redis(f"redis://127.0.0.1:{free_port()}/0", socket_timeout=1)
    try:
        with pytest.raises(RedisUnavailable), redis_errors():
            await client.get("anything")
    finally:
        await close_redis(client)


async def test_route_writes_under_the_callers_tenant_namespace(
    build_app: Any, app_client: AppClient, make_token: Callable[..., str], redis_client: Redis
) -> None:
    headers = {"Authorization": f"Bearer {make_token('tenant-a')}"}
    async with app_client(build_app()) as client:
        await client.post("/v1/test-events/lead-7/seen", headers=headers)
    assert await redis_client.keys("*") == [b"tenant:tenant-a:seen:lead-7"]


async def test_pool_never_exceeds_max_connections(redis_url: str) -> None:
    import asyncio

    client = create_redis(redis_url, max_connections=2, socket_timeout=2)
    try:
        await asyncio.gather(*(client.incr("n") for _ in range(20)))
        info = await client.info("clients")
    finally:
        await close_redis(client)
    assert info["connected_clients"] <= 2 + 1  # + the session's cleanup client
