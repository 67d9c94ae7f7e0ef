"""A user's open connections, capped across every gateway (a Redis sorted set per user, each
connection scored by when its lease expires). The limits on messages are admitted with the
message itself (`gateway.submissions`)."""

import time

from redis.asyncio import Redis

from gateway.refusal import Refusal
from shared import keys

# KEYS[1] sorted set; ARGV: member, expiry, now, limit. Adds unless at the limit.
_SLOT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
  return 1
end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2]) - tonumber(ARGV[3])) + 1)
return 1
"""


class Limits:
    def __init__(self, redis: Redis, *, connections_per_user: int, connection_ttl_s: float) -> None:
        self._redis = redis
        self._connections = connections_per_user
        self._connection_ttl_s = connection_ttl_s
        self._slot = redis.register_script(_SLOT)

    async def open_connection(self, user_id: str, connection: str) -> Refusal | None:
        """Count the connection against the user's limit (refreshing it if counted)."""
        now = time.time()
        taken = await self._slot(
            keys=[keys.connections(user_id)],
            args=[connection, now + self._connection_ttl_s, now, self._connections],
        )
        if int(taken):
            return None
        return Refusal(
            "rate_limited",
            f"at most {self._connections} open connections per user",
            self._connection_ttl_s / 3,
        )

    async def close_connection(self, user_id: str, connection: str) -> None:
        await self._redis.zrem(keys.connections(user_id), connection)
