"""Who is connected to a session, across every gateway: Redis, with a TTL per connection.

Each connection has an entry in the sorted set `tw:presence:<sid>` (for listing) and in its
user's `tw:presence:<sid>:<user>` (for counting), both scored by its expiry; `Leases` refresh
them every third of the TTL, so a gateway that dies leaves entries that expire on their own.
A participant is present while any of their connections is. Joining and leaving cost the same
whatever the size of the session (the per-user set is what is counted).
"""

import time

from redis.asyncio import Redis

from shared import keys
from shared.redis import text

_SEP = "\n"

# Both scripts run atomically, so two gateways never both announce the same join or leave.
# KEYS: the session's set, the user's set. ARGV: now, expiry, session member, connection,
# key TTL.
_ENTER = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
local before = redis.call('ZCARD', KEYS[2])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('EXPIRE', KEYS[2], ARGV[5])
return before
"""
# ARGV: now, session member, connection. KEYS[3], when given: a set the connection also leaves
# (its user's open connections, `gateway.limits`), in the same round trip.
_LEAVE = """
if KEYS[3] then redis.call('ZREM', KEYS[3], ARGV[3]) end
redis.call('ZREM', KEYS[1], ARGV[2])
local removed = redis.call('ZREM', KEYS[2], ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
if removed == 1 and redis.call('ZCARD', KEYS[2]) == 0 then return 1 end
return 0
"""


class Presence:
    def __init__(self, redis: Redis, *, ttl_s: float) -> None:
        self._redis = redis
        self.ttl_s = ttl_s
        self._enter = redis.register_script(_ENTER)
        self._leave = redis.register_script(_LEAVE)

    async def enter(self, session_id: str, user: str, connection: str) -> bool:
        """Record the connection; True when it is the user's first in the session."""
        now = time.time()
        before = await self._enter(
            keys=[keys.presence(session_id), keys.presence_of(session_id, user)],
            args=[
                now,
                now + self.ttl_s,
                presence_member(user, connection),
                connection,
                int(self.ttl_s * 2) + 1,
            ],
        )
        return int(before) == 0

    async def leave(
        self, session_id: str, user: str, connection: str, *, also_from: str | None = None
    ) -> bool:
        """Forget the connection (and take it out of the sorted set `also_from` too); True when
        it was the user's last in the session."""
        sets = [keys.presence(session_id), keys.presence_of(session_id, user)]
        left = await self._leave(
            keys=[*sets, also_from] if also_from else sets,
            args=[time.time(), presence_member(user, connection), connection],
        )
        return int(left) == 1

    async def who(self, session_id: str) -> list[str]:
        """Participants with at least one live connection, sorted."""
        members = await self._redis.zrangebyscore(keys.presence(session_id), time.time(), "+inf")
        return sorted({text(m).split(_SEP, 1)[0] for m in members})


def presence_member(user: str, connection: str) -> str:
    return f"{user}{_SEP}{connection}"
