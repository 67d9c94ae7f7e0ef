"""Connection leases (presence and the user's connection count) on a real Redis-compatible
server: refreshed together, and never revived for a connection that left."""

import time
import uuid

import pytest
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from gateway import leases as leases_module
from gateway.leases import Lease, Leases
from gateway.presence import Presence, presence_member
from shared import keys

pytestmark = pytest.mark.real


def lease() -> Lease:
    return Lease(uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex[:8])


async def expiry(redis: Redis, held: Lease) -> tuple[float | None, float | None]:
    """The lease's presence expiry (None unless both presence entries agree) and its
    connection-count expiry."""
    sid, user, connection = held.session_id, held.user_id, held.connection
    listed = await redis.zscore(keys.presence(sid), presence_member(user, connection))
    counted = await redis.zscore(keys.presence_of(sid, user), connection)
    counts = await redis.zscore(keys.connections(user), connection)
    return (listed if listed == counted else None), counts


async def test_one_refresh_pushes_every_held_lease_a_ttl_ahead(
    redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(leases_module, "BATCH", 3)  # several pipelines
    leases = Leases(redis, ttl_s=30)
    held = [lease() for _ in range(7)]
    for each in held:
        leases.hold(each)
    before = time.time()
    await leases.refresh()
    for each in held:
        presence, connection = await expiry(redis, each)
        assert presence is not None
        assert connection is not None
        assert before + 29 < presence <= time.time() + 30
        assert before + 29 < connection <= time.time() + 30
        assert 0 < await redis.ttl(keys.presence(each.session_id)) <= 61


async def test_a_released_lease_is_not_refreshed(redis: Redis) -> None:
    leases = Leases(redis, ttl_s=30)
    gone, kept = lease(), lease()
    leases.hold(gone)
    leases.hold(kept)
    leases.release(gone)
    await leases.refresh()
    assert await expiry(redis, gone) == (None, None)
    assert None not in await expiry(redis, kept)


async def test_a_connection_that_leaves_during_a_refresh_stays_gone(
    redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    leases = Leases(redis, ttl_s=30)
    presence = Presence(redis, ttl_s=30)
    leaving = lease()
    await presence.enter(leaving.session_id, leaving.user_id, leaving.connection)
    leases.hold(leaving)
    original = redis.pipeline

    def leave_while_refreshing(transaction: bool = True) -> Pipeline:
        # The connection closes between the refresh's snapshot and its pipeline landing.
        leases.release(leaving)
        return original(transaction)

    monkeypatch.setattr(redis, "pipeline", leave_while_refreshing)
    await leases.refresh()
    assert await expiry(redis, leaving) == (None, None)
    assert await presence.who(leaving.session_id) == []
