"""Which reply `/retry` regenerates, against a real Valkey: the newest recorded one's, or a
newer message's whose reply a worker already took but persistence has not recorded yet."""

import uuid
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis

from gateway.regenerate import last_asked
from shared import keys, rpc

pytestmark = pytest.mark.real


def said(mid: str, role: str = "user", in_reply_to: str | None = None) -> rpc.HistoryMessage:
    return rpc.HistoryMessage.model_validate(
        {
            "message_id": mid,
            "role": role,
            "participant": "alice",
            "content": "x",
            "status": "complete",
            "in_reply_to": in_reply_to,
            "attempt": None,
            "model": None,
            "usage": None,
            "seq": None,
            "created_at": datetime.now(UTC),
        }
    )


async def test_the_newest_reply_even_before_it_is_recorded(redis: Redis) -> None:
    sid = uuid.uuid4().hex
    recorded = [said("m1/reply", "assistant", "m1"), said("m1")]  # newest first
    assert await last_asked(redis, sid, []) is None
    assert await last_asked(redis, sid, recorded) == "m1"
    later = [said("aside"), said("m2"), *recorded]  # m2 asked; `aside` wanted no reply
    assert await last_asked(redis, sid, later) == "m1"  # no worker took m2 yet
    await redis.set(keys.fence(sid, "m2"), "1|d1", ex=60)
    assert await last_asked(redis, sid, later) == "m2"  # its reply streams or just ended
    assert await last_asked(redis, sid, [said("m2")]) == "m2"  # the session's first reply
