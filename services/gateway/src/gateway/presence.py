"""Who is connected to a session, across every gateway: Redis, with a TTL per connection.

Each connection has an entry in the sorted set `tw:presence:<sid>`, scored by its expiry; a
live connection refreshes it every third of the TTL, so a gateway that dies leaves entries
that expire on their own. A participant is present while any of their connections is.
"""

import time

from redis.asyncio import Redis

_SEP = "\n"

# Both scripts run atomically, so two gateways never both announce the same join or leave.
_ENTER = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local before = 0
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if string.sub(m, 1, #ARGV[2]) == ARGV[2] then before = before + 1 end
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return before
"""
_LEAVE = """
local removed = redis.call('ZREM', KEYS[1], ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local after = 0
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if string.sub(m, 1, #ARGV[2]) == ARGV[2] then after = after + 1 end
end
if removed == 1 and after == 0 then return 1 end
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
            keys=[presence_key(session_id)],
            args=[
                now,
                user + _SEP,
                now + self.ttl_s,
                presence_member(user, connection),
                int(self.ttl_s * 2) + 1,
            ],
        )
        return int(before) == 0

    async def leave(self, session_id: str, user: str, connection: str) -> bool:
        """Forget the connection; True when it was the user's last in the session."""
        left = await self._leave(
            keys=[presence_key(session_id)],
            args=[time.time(), user + _SEP, presence_member(user, connection)],
        )
        return int(left) == 1

    async def who(self, session_id: str) -> list[str]:
        """Participants with at least one live connection, sorted."""
        members = await self._redis.zrangebyscore(presence_key(session_id), time.time(), "+inf")
        return sorted({_text(m).split(_SEP, 1)[0] for m in members})


def presence_key(session_id: str) -> str:
    """Sorted set of a session's connections, scored by expiry (refreshed by `Leases`)."""
    return f"tw:presence:{session_id}"


def presence_member(user: str, connection: str) -> str:
    return f"{user}{_SEP}{connection}"


def _text(member: object) -> str:
    return member.decode() if isinstance(member, bytes) else str(member)
