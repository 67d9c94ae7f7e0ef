"""Admitting a message (`ReplyQueue.admit`, rendered by `gateway.submissions.refusal`) on a
real Redis-compatible server: the limits that cost model tokens."""

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis

from gateway.refusal import Refusal
from gateway.submissions import refusal
from shared import keys
from shared.reply_queue import ReplyQueue
from shared.reply_states import AdmissionLimits, Refused

pytestmark = pytest.mark.real
LIMITS = AdmissionLimits(messages_per_min=6, replies_per_session=2, daily_token_budget=100)


@pytest.fixture
async def queue(redis_url: str) -> AsyncIterator[ReplyQueue]:
    redis = Redis.from_url(redis_url)
    yield ReplyQueue(redis)
    await redis.aclose()


async def submit(
    queue: ReplyQueue, user: str, sid: str = "s", mid: str = "m", *, reply: bool = True
) -> Refusal | None:
    """None when admitted, else what the client is told."""
    result = await queue.admit(
        LIMITS, user_id=user, session_id=sid, message_id=mid, reply=reply, policy="parallel"
    )
    return refusal(result, LIMITS) if isinstance(result, Refused) else None


async def test_a_burst_is_cut_at_the_bucket_size_with_a_retry_time(queue: ReplyQueue) -> None:
    user = uuid.uuid4().hex
    results = [await submit(queue, user, reply=False) for _ in range(10)]
    assert results[:6] == [None] * 6
    refusals = [r for r in results[6:] if r is not None]
    assert len(refusals) == 4
    assert all(r.code == "rate_limited" for r in refusals)
    assert all(r.retry_after_s is not None and 0 < r.retry_after_s <= 10 for r in refusals)


async def test_replies_in_flight_per_session(queue: ReplyQueue) -> None:
    sid, user = uuid.uuid4().hex, uuid.uuid4().hex
    assert await submit(queue, user, sid, "m1") is None
    assert await submit(queue, user, sid, "m2") is None
    refusal = await submit(queue, user, sid, "m3")
    assert refusal is not None
    assert refusal.code == "busy"


async def test_the_budget_refuses_once_spent(queue: ReplyQueue, redis_url: str) -> None:
    user = uuid.uuid4().hex
    assert await submit(queue, user, mid="m1") is None
    redis = Redis.from_url(redis_url)
    await redis.set(keys.budget(user, datetime.now(UTC).strftime("%Y%m%d")), 100)
    await redis.aclose()
    refusal = await submit(queue, user, mid="m2")
    assert refusal is not None
    assert refusal.code == "budget_exceeded"
    assert refusal.retry_after_s is not None
    assert 0 < refusal.retry_after_s <= 24 * 3600


async def test_a_refused_message_takes_nothing(queue: ReplyQueue) -> None:
    sid, user = uuid.uuid4().hex, uuid.uuid4().hex
    for mid in ("m1", "m2"):
        assert await submit(queue, user, sid, mid) is None
    assert await submit(queue, user, sid, "m3") is not None
    assert await queue.redis.zrange(keys.inflight(sid), 0, -1) == [b"m1", b"m2"]


def test_every_verdict_is_told_with_when_to_retry() -> None:
    for verdict in ("rate_limited", "budget_exceeded", "replies_in_flight", "busy"):
        told = refusal(Refused(verdict, 1.0), LIMITS)
        assert told.code in ("rate_limited", "budget_exceeded", "busy")
        assert told.retry_after_s is not None
        assert told.detail


async def spend_today(redis_url: str, user: str, tokens: int) -> None:
    redis = Redis.from_url(redis_url)
    await redis.set(keys.budget(user, datetime.now(UTC).strftime("%Y%m%d")), tokens)
    await redis.aclose()


async def test_a_claim_replaces_the_default_and_an_override_replaces_both(
    queue: ReplyQueue, redis_url: str
) -> None:
    user = uuid.uuid4().hex
    await spend_today(redis_url, user, 150)  # over the default of 100

    async def admitted(claim: int | None) -> Refused | None:
        result = await queue.admit(
            LIMITS,
            user_id=user,
            session_id=uuid.uuid4().hex,
            message_id="m",
            reply=True,
            policy="parallel",
            daily_budget=claim,
        )
        return result if isinstance(result, Refused) else None

    refused = await admitted(None)
    assert refused is not None
    assert (refused.verdict, refused.limit) == ("budget_exceeded", 100)
    assert "daily budget of 100 tokens" in refusal(refused, LIMITS).detail
    assert await admitted(200) is None  # the token's claim: 200 a day
    await queue.redis.hset(keys.BUDGETS, user, 120)  # an administrator's override
    try:
        refused = await admitted(200)
        assert refused is not None
        assert refused.limit == 120
        await queue.redis.hset(keys.BUDGETS, user, 0)  # no limit for this user
        assert await admitted(None) is None
    finally:
        await queue.redis.hdel(keys.BUDGETS, user)


async def test_a_session_s_cap_refuses_every_member_once_spent(queue: ReplyQueue) -> None:
    sid = uuid.uuid4().hex
    capped = AdmissionLimits(6, 2, daily_token_budget=0, session_token_budget=300)
    await queue.redis.set(keys.session_spend(sid), 300)
    for user in (uuid.uuid4().hex, uuid.uuid4().hex):
        result = await queue.admit(
            capped, user_id=user, session_id=sid, message_id="m", reply=True, policy="parallel"
        )
        assert isinstance(result, Refused)
        told = refusal(result, capped)
        assert (told.code, told.retry_after_s) == ("budget_exceeded", None)  # waiting won't help
        assert "session's cap of 300 tokens" in told.detail
    quiet = await queue.admit(
        capped, user_id="u", session_id=sid, message_id="q", reply=False, policy="parallel"
    )
    assert not isinstance(quiet, Refused)  # a message that asks for no reply costs nothing
