"""Fencing, the per-session queue, cancel marks and budgets on a real Redis-compatible server."""

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from llm_worker.coordination import Coordinator
from llm_worker.responder import patiently
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
    assert await coordinator.answered(sid, mid, 1)
    assert await coordinator.claim(sid, mid, 2) == "answered"
    assert not await coordinator.holds(sid, mid, 1)
    assert 0 < await coordinator.redis.ttl(keys.fence(sid, mid)) <= 30


async def test_a_stale_attempt_that_ends_late_does_not_answer_for_the_newer_one(
    coordinator: Coordinator,
) -> None:
    # Attempt 1 checked its claim, stalled, and stored its terminal event after attempt 2
    # claimed the reply: attempt 2 is streaming it again and must be able to finish.
    sid, mid = uuid.uuid4().hex, "m1"
    assert await coordinator.claim(sid, mid, 1) == "ours"
    assert await coordinator.claim(sid, mid, 2) == "ours"
    assert not await coordinator.answered(sid, mid, 1)
    assert await coordinator.holds(sid, mid, 2)
    assert await coordinator.answered(sid, mid, 2)
    assert await coordinator.claim(sid, mid, 3) == "answered"
    assert await coordinator.answered(sid, mid, 1)  # answered already: nothing to supersede


async def test_a_session_answers_in_stream_order(coordinator: Coordinator) -> None:
    sid = uuid.uuid4().hex
    assert (await coordinator.head_of_line(sid, 10)).head == 10
    assert (await coordinator.head_of_line(sid, 12)).head == 10
    assert (await coordinator.head_of_line(sid, 11)).head == 10
    await coordinator.done(sid, 10, "m10")
    assert (await coordinator.head_of_line(sid, 11)).head == 11
    assert (await coordinator.head_of_line(sid, 12)).head == 11


async def test_the_worker_answering_the_head_of_line_beats(coordinator: Coordinator) -> None:
    sid = uuid.uuid4().hex
    assert not (await coordinator.head_of_line(sid, 10)).beating
    await coordinator.beat(sid, 0.2)
    assert (await coordinator.head_of_line(sid, 11)).beating
    await asyncio.sleep(0.3)
    assert not (await coordinator.head_of_line(sid, 11)).beating


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


async def test_begin_claims_reads_the_cancel_mark_and_queues_in_one_step(
    coordinator: Coordinator,
) -> None:
    redis, sid = coordinator.redis, f"s-{uuid.uuid4()}"
    first = await coordinator.begin(sid, "m1", 1, queue_seq=10)
    assert (first.claim, first.cancel_marked, first.head) == ("ours", False, 10)
    assert await redis.get(keys.active_reply(sid)) == b"m1"
    await redis.set(keys.cancel_mark(sid, "m2"), 1)
    second = await coordinator.begin(sid, "m2", 1, queue_seq=11)
    assert (second.claim, second.cancel_marked, second.head) == ("ours", True, 10)
    assert await redis.get(keys.active_reply(sid)) == b"m1"  # m2 waits its turn
    assert (await coordinator.begin(sid, "m1", 1, queue_seq=10)).claim == "ours"
    assert await coordinator.answered(sid, "m1", 1)
    late = await coordinator.begin(sid, "m1", 2, queue_seq=10)
    assert late.claim == "answered"
    assert (await coordinator.begin(sid, "m2", 0)).claim == "newer"


async def test_begin_without_a_queue_leaves_the_line_alone(coordinator: Coordinator) -> None:
    sid = f"s-{uuid.uuid4()}"
    began = await coordinator.begin(sid, "m1", 1)
    assert (began.claim, began.head) == ("ours", 0)
    assert await coordinator.redis.zcard(keys.session_queue(sid)) == 0


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
