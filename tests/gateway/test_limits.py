"""A user's open connections, capped on a real Redis-compatible server (the limits on
messages: test_submissions.py)."""

import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from gateway.limits import Limits

pytestmark = pytest.mark.real


@pytest.fixture
async def limits(redis_url: str) -> AsyncIterator[Limits]:
    redis = Redis.from_url(redis_url)
    yield Limits(redis, connections_per_user=2, connection_ttl_s=30)
    await redis.aclose()


async def test_connections_per_user(limits: Limits) -> None:
    user = uuid.uuid4().hex
    assert await limits.open_connection(user, "c1") is None
    assert await limits.open_connection(user, "c2") is None
    assert await limits.open_connection(user, "c1") is None  # a refresh, not a third
    third = await limits.open_connection(user, "c3")
    assert third is not None
    assert third.retry_after_s
    await limits.close_connection(user, "c1")
    assert await limits.open_connection(user, "c3") is None
