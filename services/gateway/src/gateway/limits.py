"""Abuse limits kept in Redis, so they hold across every gateway: a user's message rate (token
bucket), a user's open connections, a session's replies in flight, a user's daily budget.

Each check is one round trip (an atomic Lua script). A refusal says when to try again. When
Redis cannot be asked, callers fail closed for anything that would cost model tokens.
"""

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from redis.asyncio import Redis

from shared import keys
from shared.frames import ErrorCode

# KEYS[1] bucket; ARGV: capacity, refill per second, now. Returns {allowed, retry_after}.
_BUCKET = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or capacity
local at = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + (now - at) * rate)
local allowed = 0
local retry = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  retry = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'at', now)
redis.call('EXPIRE', KEYS[1], math.ceil(capacity / rate) + 1)
return {allowed, tostring(retry)}
"""
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


@dataclass(frozen=True)
class Refusal:
    code: ErrorCode
    detail: str
    retry_after_s: float | None


class Limits:
    def __init__(
        self,
        redis: Redis,
        *,
        messages_per_min: float,
        connections_per_user: int,
        replies_per_session: int,
        daily_token_budget: int,
        connection_ttl_s: float,
        reply_ttl_s: float = 600.0,
    ) -> None:
        self._redis = redis
        self._messages_per_min = messages_per_min
        self._connections = connections_per_user
        self._replies = replies_per_session
        self._budget = daily_token_budget
        self._connection_ttl_s = connection_ttl_s
        self._reply_ttl_s = reply_ttl_s
        self._bucket = redis.register_script(_BUCKET)
        self._slot = redis.register_script(_SLOT)

    async def message(self, user_id: str) -> Refusal | None:
        """Take one message from the user's bucket."""
        allowed, retry = await self._bucket(
            keys=[keys.message_rate(user_id)],
            args=[self._messages_per_min, self._messages_per_min / 60, time.time()],
        )
        if int(allowed):
            return None
        return Refusal(
            "rate_limited",
            f"at most {self._messages_per_min:g} messages a minute",
            round(float(retry), 2),
        )

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

    async def reply(self, session_id: str, message_id: str) -> Refusal | None:
        """Count a reply asked for in the session; workers remove it when it ends."""
        now = time.time()
        taken = await self._slot(
            keys=[keys.inflight(session_id)],
            args=[message_id, now + self._reply_ttl_s, now, self._replies],
        )
        if int(taken):
            return None
        return Refusal("busy", f"at most {self._replies} replies at once in a session", 1.0)

    async def budget(self, user_id: str) -> Refusal | None:
        if not self._budget:
            return None
        day = datetime.now(UTC).strftime("%Y%m%d")
        spent = int(await self._redis.get(keys.budget(user_id, day)) or 0)
        if spent < self._budget:
            return None
        midnight = (datetime.now(UTC) + timedelta(days=1)).replace(
            hour=0, minute=0, second=0, microsecond=0
        )
        return Refusal(
            "budget_exceeded",
            "the daily token budget is spent",
            round((midnight - datetime.now(UTC)).total_seconds()),
        )
