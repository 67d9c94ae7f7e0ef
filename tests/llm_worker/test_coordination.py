"""Budgets, and waiting out Redis, on a real Redis-compatible server (the reply-queue
protocol itself: tests/shared/test_reply_queue.py)."""

import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from llm_worker.coordination import Coordinator
from llm_worker.responder import patiently

pytestmark = pytest.mark.real


@pytest.fixture
async def coordinator(redis_url: str) -> AsyncIterator[Coordinator]:
    redis = Redis.from_url(redis_url)
    yield Coordinator(redis, fence_ttl_s=30)
    await redis.aclose()


async def test_budget_spending_adds_up(coordinator: Coordinator) -> None:
    user = uuid.uuid4().hex
    assert await coordinator.spent_today(user) == 0
    assert await coordinator.spend(user, 40) == 40
    assert await coordinator.spend(user, 2) == 42
    assert await coordinator.spent_today(user) == 42


async def test_patiently_waits_out_a_redis_outage_instead_of_failing() -> None:
    calls = 0

    async def step() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise RedisConnectionError("Connection refused")
        return "claimed"

    assert await patiently(step) == "claimed"
    assert calls == 3
