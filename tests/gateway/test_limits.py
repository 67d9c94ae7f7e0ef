"""The abuse limits on a real Redis-compatible server."""

import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from gateway.limits import Limits
from shared import keys

pytestmark = pytest.mark.real


@pytest.fixture
async def limits(redis_url: str) -> AsyncIterator[Limits]:
    redis = Redis.from_url(redis_url)
    yield Limits(
        redis,
        messages_per_min=6,
        connections_per_user=2,
        replies_per_session=2,
        daily_token_budget=100,
        connection_ttl_s=30,
    )
    await redis.aclose()


async def test_a_burst_is_cut_at_the_bucket_size_with_a_retry_time(limits: Limits) -> None:
    user = uuid.uuid4().hex
    results = [await limits.message(user) for _ in range(10)]
    assert results[:6] == [None] * 6
    refusals = [r for r in results[6:] if r is not None]
    assert len(refusals) == 4
    assert all(r.code == "rate_limited" for r in refusals)
    assert all(r.retry_after_s is not None and 0 < r.retry_after_s <= 10 for r in refusals)


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


async def test_replies_in_flight_per_session(limits: Limits) -> None:
    sid = uuid.uuid4().hex
    assert await limits.reply(sid, "m1") is None
    assert await limits.reply(sid, "m2") is None
    refusal = await limits.reply(sid, "m3")
    assert refusal is not None
    assert refusal.code == "busy"


async def test_the_budget_refuses_once_spent(limits: Limits, redis_url: str) -> None:
    user = uuid.uuid4().hex
    assert await limits.budget(user) is None
    redis = Redis.from_url(redis_url)
    from datetime import UTC, datetime

    await redis.set(keys.budget(user, datetime.now(UTC).strftime("%Y%m%d")), 100)
    await redis.aclose()
    refusal = await limits.budget(user)
    assert refusal is not None
    assert refusal.code == "budget_exceeded"
    assert refusal.retry_after_s is not None
    assert 0 < refusal.retry_after_s <= 24 * 3600
