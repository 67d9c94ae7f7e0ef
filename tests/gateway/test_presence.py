"""Presence on a real Redis-compatible server: a participant joins with their first connection
and leaves with their last, whatever else is connected to the session."""

import asyncio
import uuid

import pytest
from redis.asyncio import Redis

from gateway.presence import Presence
from shared.redis import text

pytestmark = pytest.mark.real


async def test_first_connection_joins_and_last_one_leaves(redis: Redis) -> None:
    presence, sid = Presence(redis, ttl_s=30), uuid.uuid4().hex
    for i in range(50):  # a crowd that must not change anyone's count
        await presence.enter(sid, f"crowd{i}", "c")
    assert await presence.enter(sid, "alice", "tab1")
    assert not await presence.enter(sid, "alice", "tab2")
    assert await presence.enter(sid, "bob", "tab1")
    assert not await presence.leave(sid, "alice", "tab1")
    assert "alice" in await presence.who(sid)
    assert await presence.leave(sid, "alice", "tab2")
    assert "alice" not in await presence.who(sid)
    assert not await presence.leave(sid, "alice", "tab2")  # twice: left once
    assert len(await presence.who(sid)) == 51


async def test_connections_that_expired_do_not_count(redis: Redis) -> None:
    presence, sid = Presence(redis, ttl_s=0.2), uuid.uuid4().hex
    assert await presence.enter(sid, "alice", "gone")  # its gateway died: never refreshed
    await asyncio.sleep(0.3)
    assert await presence.who(sid) == []
    assert await presence.enter(sid, "alice", "new")  # joins again
    assert await presence.leave(sid, "alice", "new")


async def test_leaving_also_gives_back_the_connection_slot(redis: Redis) -> None:
    """One round trip when a connection ends: its presence, and its place among its user's
    open connections (`gateway.limits`)."""
    presence, sid = Presence(redis, ttl_s=30), uuid.uuid4().hex
    slots = f"tw:conns:{uuid.uuid4().hex}"
    await redis.zadd(slots, {"tab1": 2e9, "tab2": 2e9})
    assert await presence.enter(sid, "alice", "tab1")
    assert await presence.leave(sid, "alice", "tab1", also_from=slots)
    assert [text(m) for m in await redis.zrange(slots, 0, -1)] == ["tab2"]
    assert await presence.who(sid) == []
