"""Budgets on a real Redis-compatible server (the reply-queue protocol itself:
tests/shared/test_reply_queue.py)."""

import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from llm_worker.coordination import Coordinator

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
