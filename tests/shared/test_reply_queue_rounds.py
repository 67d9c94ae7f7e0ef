"""The reply-queue stages that carry other work in their round trip: `begin_and_read` (the
reads a reply needs before its model call) and `finish` with the turns it appends."""

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection

from shared import keys
from shared.redis import ListAppend
from shared.reply_queue import ReplyQueue

pytestmark = pytest.mark.real


@pytest.fixture
async def queue(redis_url: str) -> AsyncIterator[ReplyQueue]:
    redis = Redis.from_url(redis_url)
    yield ReplyQueue(redis, fence_ttl_s=30)
    await redis.aclose()


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every write of commands to Redis (a pipeline's commands go in one)."""
    sent: list[int] = []
    original = AbstractConnection.send_packed_command

    async def counted(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        sent.append(1)
        await original(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)
    return sent


async def test_begin_answers_the_reads_in_its_own_round_trip(
    queue: ReplyQueue, round_trips: list[int]
) -> None:
    sid = uuid.uuid4().hex
    await queue.redis.set(keys.session_prompt(sid), "be brief")
    await queue.begin(sid, "m0", 1)  # the script is loaded
    round_trips.clear()
    reads = [("GET", keys.session_prompt(sid)), ("EXISTS", keys.fresh_session(sid))]
    began, answers = await queue.begin_and_read(sid, "m1", 1, place=4, reads=reads)
    assert (began.claim, began.head, began.attempt) == ("ours", 4, 1)
    assert answers == [b"be brief", 0]
    assert len(round_trips) == 1


async def test_a_script_redis_lost_is_loaded_again(queue: ReplyQueue) -> None:
    sid = uuid.uuid4().hex
    await queue.begin(sid, "m0", 1)
    await queue.redis.script_flush()
    began, answers = await queue.begin_and_read(
        sid, "m1", 1, reads=[("GET", keys.session_prompt(sid))]
    )
    assert (began.claim, answers) == ("ours", [None])
    assert (await queue.begin(sid, "m1", 2)).claim == "ours"


async def test_finish_appends_once_when_it_marks_the_message_answered(
    queue: ReplyQueue,
) -> None:
    redis, sid = queue.redis, uuid.uuid4().hex
    context = f"tw:test-ctx:{sid}"
    await redis.rpush(context, "t0", "t1")
    await redis.set(keys.fresh_session(sid), 1)
    then = ListAppend(context, ["t2", "t3"], 3, 60, keys.fresh_session(sid))
    assert await queue.claim(sid, "m1", 1) == "ours"
    assert await queue.finish(sid, "m1", 1, place=0, answered=False, then=then)
    assert await redis.lrange(context, 0, -1) == [b"t0", b"t1"]  # failed: nothing added
    assert await queue.finish(sid, "m1", 1, place=0, answered=True, then=then)
    assert await queue.finish(sid, "m1", 1, place=0, answered=True, then=then)  # a retry
    assert await redis.lrange(context, 0, -1) == [b"t1", b"t2", b"t3"]
    assert not await redis.exists(keys.fresh_session(sid))
    assert 0 < await redis.ttl(context) <= 60


async def test_a_stale_attempt_appends_nothing(queue: ReplyQueue) -> None:
    redis, sid = queue.redis, uuid.uuid4().hex
    context = f"tw:test-ctx:{sid}"
    then = ListAppend(context, ["stale"], 10, 60, keys.fresh_session(sid))
    assert await queue.claim(sid, "m1", 1) == "ours"
    assert await queue.claim(sid, "m1", 2) == "ours"
    assert not await queue.finish(sid, "m1", 1, place=0, answered=True, then=then)
    assert await redis.lrange(context, 0, -1) == []
