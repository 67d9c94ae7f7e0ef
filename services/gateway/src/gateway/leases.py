"""The Redis entries of every open connection (presence, and the user's connection count)
expire unless refreshed; one task per gateway refreshes them all every third of their TTL,
in pipelines, instead of a task and two round trips per connection.

A gateway that dies stops refreshing: its connections expire on their own.
"""

import asyncio
import logging
import time
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.presence import presence_member
from shared import keys

log = logging.getLogger(__name__)
BATCH = 500
"""Connections refreshed per pipeline (one round trip)."""


@dataclass(frozen=True, slots=True)
class Lease:
    session_id: str
    user_id: str
    connection: str


class Leases:
    def __init__(self, redis: Redis, *, ttl_s: float) -> None:
        self._redis = redis
        self.ttl_s = ttl_s
        self._held: set[Lease] = set()

    def hold(self, lease: Lease) -> None:
        """Refresh `lease` from now on (its entries were made when the connection opened)."""
        self._held.add(lease)

    def release(self, lease: Lease) -> None:
        self._held.discard(lease)

    async def refresh(self) -> None:
        """Push every held lease's expiry a TTL ahead; raises RedisError if Redis fails."""
        held = list(self._held)
        expire_s = int(self.ttl_s * 2) + 1
        for start in range(0, len(held), BATCH):
            batch = held[start : start + BATCH]
            expiry = time.time() + self.ttl_s
            async with self._redis.pipeline(transaction=False) as pipe:
                for lease in batch:
                    sid, user, connection = lease.session_id, lease.user_id, lease.connection
                    key = keys.presence(sid)
                    pipe.zadd(key, {presence_member(user, connection): expiry})
                    pipe.expire(key, expire_s)
                    for per_user in (keys.presence_of(sid, user), keys.connections(user)):
                        pipe.zadd(per_user, {connection: expiry})
                        pipe.expire(per_user, expire_s)
                await pipe.execute()
            # A connection that closed meanwhile may have left before its refresh landed.
            if gone := [lease for lease in batch if lease not in self._held]:
                await self._forget(gone)

    async def _forget(self, leases: list[Lease]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for lease in leases:
                sid, user, connection = lease.session_id, lease.user_id, lease.connection
                pipe.zrem(keys.presence(sid), presence_member(user, connection))
                pipe.zrem(keys.presence_of(sid, user), connection)
                pipe.zrem(keys.connections(user), connection)
            await pipe.execute()

    async def refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.ttl_s / 3)
            try:
                await self.refresh()
            except RedisError as exc:
                log.warning("connection leases not refreshed: %s", exc)
