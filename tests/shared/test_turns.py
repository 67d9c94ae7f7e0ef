"""Turn numbers: each message admitted into a session takes the next, once per message id (a
resend and a new version of its reply keep it); a refused message takes none."""

import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from shared.reply_queue import ReplyQueue
from shared.reply_states import AdmissionLimits, Admitted

pytestmark = pytest.mark.real
LIMITS = AdmissionLimits(messages_per_min=60, replies_per_session=5, daily_token_budget=0)


@pytest.fixture
async def queue(redis_url: str) -> AsyncIterator[ReplyQueue]:
    redis = Redis.from_url(redis_url)
    yield ReplyQueue(redis, fence_ttl_s=30)
    await redis.aclose()


async def turn(
    queue: ReplyQueue, sid: str, mid: str, *, reply: bool = True, limits: AdmissionLimits = LIMITS
) -> int | str:
    admitted = await queue.admit(
        limits, user_id=sid, session_id=sid, message_id=mid, reply=reply, policy="parallel"
    )
    return admitted.turn if isinstance(admitted, Admitted) else admitted.verdict


async def test_each_message_takes_the_next_turn_once(queue: ReplyQueue) -> None:
    sid = uuid.uuid4().hex
    assert await turn(queue, sid, "m1") == 1
    assert await turn(queue, sid, "aside", reply=False) == 2  # a message with no reply too
    assert await turn(queue, sid, "m1") == 1  # resent: the same
    assert await turn(queue, sid, "m1~v2") == 1  # a new version of its reply: its message's
    assert await turn(queue, sid, "m3") == 3
    assert await turn(queue, uuid.uuid4().hex, "m1") == 1  # numbered per session


async def test_a_refused_message_takes_no_turn(queue: ReplyQueue) -> None:
    sid = uuid.uuid4().hex
    two = AdmissionLimits(messages_per_min=60, replies_per_session=2, daily_token_budget=0)
    assert await turn(queue, sid, "m1", limits=two) == 1
    assert await turn(queue, sid, "m2", limits=two) == 2
    assert await turn(queue, sid, "m3", limits=two) == "replies_in_flight"  # a third in flight
    assert await turn(queue, sid, "aside", reply=False) == 3
