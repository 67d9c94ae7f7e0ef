"""Fencing, the per-session queue, cancel marks and budgets on a real Redis-compatible server."""

import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from llm_worker.coordination import Coordinator
from shared import keys

pytestmark = pytest.mark.real


@pytest.fixture
async def coordinator(redis_url: str) -> AsyncIterator[Coordinator]:
    redis = Redis.from_url(redis_url)
    yield Coordinator(redis, fence_ttl_s=30)
    await redis.aclose()


async def test_a_newer_attempt_fences_off_an_older_one(coordinator: Coordinator) -> None:
    sid, mid = uuid.uuid4().hex, "m1"
    assert await coordinator.claim(sid, mid, 1) == "ours"
    assert await coordinator.holds(sid, mid, 1)
    assert await coordinator.claim(sid, mid, 2) == "ours"
    assert not await coordinator.holds(sid, mid, 1)
    assert await coordinator.claim(sid, mid, 1) == "newer"
    assert await coordinator.holds(sid, mid, 2)


async def test_an_answered_message_is_never_answered_again(coordinator: Coordinator) -> None:
    sid, mid = uuid.uuid4().hex, "m1"
    assert await coordinator.claim(sid, mid, 1) == "ours"
    await coordinator.answered(sid, mid)
    assert await coordinator.claim(sid, mid, 2) == "answered"
    assert not await coordinator.holds(sid, mid, 1)
    assert 0 < await coordinator.redis.ttl(keys.fence(sid, mid)) <= 30


async def test_a_session_answers_in_stream_order(coordinator: Coordinator) -> None:
    sid = uuid.uuid4().hex
    assert await coordinator.head_of_line(sid, 10) == 10
    assert await coordinator.head_of_line(sid, 12) != 12
    assert await coordinator.head_of_line(sid, 11) != 11
    await coordinator.done(sid, 10, "m10")
    assert await coordinator.head_of_line(sid, 11) == 11
    assert await coordinator.head_of_line(sid, 12) != 12


async def test_active_reply_and_cancel_marks(coordinator: Coordinator) -> None:
    sid = uuid.uuid4().hex
    await coordinator.set_active(sid, "m1")
    assert await coordinator.redis.get(keys.active_reply(sid)) == b"m1"
    await coordinator.done(sid, 1, "m1")
    assert await coordinator.redis.get(keys.active_reply(sid)) is None
    assert not await coordinator.cancel_marked(sid, "m2")
    await coordinator.redis.set(keys.cancel_mark(sid, "m2"), 1)
    assert await coordinator.cancel_marked(sid, "m2")


async def test_budget_spending_adds_up(coordinator: Coordinator) -> None:
    user = uuid.uuid4().hex
    assert await coordinator.spent_today(user) == 0
    assert await coordinator.spend(user, 40) == 40
    assert await coordinator.spend(user, 2) == 42
    assert await coordinator.spent_today(user) == 42
