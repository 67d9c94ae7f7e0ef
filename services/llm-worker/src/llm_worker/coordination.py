"""What workers agree on through Redis: fencing, one reply at a time per session, cancel
marks and daily budgets. Each operation is one round trip (a Lua script where it must be
atomic)."""

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from redis.asyncio import Redis

from shared import keys

# Claim the reply for `attempt` unless a newer attempt has it (0), or it was answered (2).
_CLAIM = """
local current = redis.call('GET', KEYS[1])
if current == 'done' then return 2 end
if tonumber(current or '0') > tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""
# Everything a reply needs before it may start, in one round trip: the claim (as _CLAIM);
# whether a cancel mark waits; with a queue (ARGV[4] = seq > 0), the session's head of line,
# and the active mark when the head is this message.
_BEGIN = """
local current = redis.call('GET', KEYS[1])
if current == 'done' then return {2, 0, 0} end
if tonumber(current or '0') > tonumber(ARGV[1]) then return {0, 0, 0} end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
local marked = redis.call('EXISTS', KEYS[2])
local head = 0
if tonumber(ARGV[4]) > 0 then
  redis.call('ZADD', KEYS[3], 'NX', ARGV[4], ARGV[4])
  redis.call('EXPIRE', KEYS[3], ARGV[5])
  head = tonumber(redis.call('ZRANGE', KEYS[3], 0, 0)[1])
  if head == tonumber(ARGV[4]) then redis.call('SET', KEYS[4], ARGV[3], 'EX', ARGV[5]) end
end
return {1, marked, head}
"""
# Queue `seq` in its session (gateways queue it too, on storing it); answer the head, and
# whether a worker answering the head beat lately.
_ENQUEUE = """
redis.call('ZADD', KEYS[1], 'NX', ARGV[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return {redis.call('ZRANGE', KEYS[1], 0, 0)[1], redis.call('EXISTS', KEYS[2])}
"""
# The reply of `attempt` is stored: mark the message answered, unless a newer attempt took the
# reply meanwhile (0: that attempt streams it again, and its terminal event is the one kept).
_ANSWERED = """
local current = redis.call('GET', KEYS[1])
if current and current ~= 'done' and tonumber(current) > tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], 'done', 'EX', ARGV[2])
return 1
"""
# Drop the head if it is still `head`: its message will never be answered (given up on).
_SKIP = """
if redis.call('ZRANGE', KEYS[1], 0, 0)[1] == ARGV[1] then redis.call('ZREM', KEYS[1], ARGV[1]) end
return 1
"""

# Leave the queue, and clear the active mark if it is still this message's.
_DONE = """
redis.call('ZREM', KEYS[1], ARGV[1])
if redis.call('GET', KEYS[2]) == ARGV[2] then redis.call('DEL', KEYS[2]) end
return 1
"""


@dataclass(frozen=True, slots=True)
class Beginning:
    claim: Literal["ours", "newer", "answered"]
    cancel_marked: bool
    head: int
    """The session's first in line (0 without a queue); the active mark is set when it is the
    message that began."""


@dataclass(frozen=True, slots=True)
class Line:
    head: int
    """The session's first in line."""
    beating: bool
    """Whether a worker answering a queued reply of the session beat lately."""


class Coordinator:
    def __init__(
        self, redis: Redis, *, fence_ttl_s: int, queue_ttl_s: int = keys.SESSION_QUEUE_TTL_S
    ) -> None:
        self.redis = redis
        self._fence_ttl_s = fence_ttl_s
        self._queue_ttl_s = queue_ttl_s
        self._claim = redis.register_script(_CLAIM)
        self._answered = redis.register_script(_ANSWERED)
        self._begin = redis.register_script(_BEGIN)
        self._enqueue = redis.register_script(_ENQUEUE)
        self._done = redis.register_script(_DONE)
        self._skip = redis.register_script(_SKIP)

    # Fencing: attempts are the stream's delivery count, so they only grow. The fence outlives
    # every delivery a message can have, so a late, stale delivery always finds it.
    async def claim(
        self, session_id: str, message_id: str, attempt: int
    ) -> Literal["ours", "newer", "answered"]:
        """Take the reply for `attempt`, unless a newer attempt took it or it was answered."""
        key = keys.fence(session_id, message_id)
        result = int(await self._claim(keys=[key], args=[attempt, self._fence_ttl_s]))
        return "ours" if result == 1 else "answered" if result == 2 else "newer"

    async def begin(
        self, session_id: str, message_id: str, attempt: int, *, queue_seq: int = 0
    ) -> "Beginning":
        """`claim`, `cancel_marked` and — with `queue_seq` — `head_of_line`, plus `set_active`
        when the message is first in line: one round trip before a reply starts."""
        claim, marked, head = await self._begin(
            keys=[
                keys.fence(session_id, message_id),
                keys.cancel_mark(session_id, message_id),
                keys.session_queue(session_id),
                keys.active_reply(session_id),
            ],
            args=[attempt, self._fence_ttl_s, message_id, queue_seq, self._queue_ttl_s],
        )
        return Beginning(
            "ours" if claim == 1 else "answered" if claim == 2 else "newer",
            bool(marked),
            int(head),
        )

    async def holds(self, session_id: str, message_id: str, attempt: int) -> bool:
        """Whether `attempt` still has the reply."""
        return await self.claim(session_id, message_id, attempt) == "ours"

    async def answered(self, session_id: str, message_id: str, attempt: int) -> bool:
        """`attempt` stored the reply's terminal event: any later delivery is only acked.

        False when a newer attempt claimed the reply after this one last checked its claim
        (this worker stalled in between): the newer attempt is streaming the reply again, its
        terminal event supersedes this one, and the message is not answered yet.
        """
        key = keys.fence(session_id, message_id)
        return bool(await self._answered(keys=[key], args=[attempt, self._fence_ttl_s]))

    # One reply at a time per session, in stream order, across workers.
    async def head_of_line(self, session_id: str, seq: int) -> "Line":
        """Queue `seq` (idempotent) and answer the sequence first in line in its session."""
        head, beating = await self._enqueue(
            keys=[keys.session_queue(session_id), keys.reply_beat(session_id)],
            args=[seq, self._queue_ttl_s],
        )
        return Line(int(head), bool(beating))

    async def beat(self, session_id: str, ttl_s: float) -> None:
        """The session's head of line is being answered: `Line.beating` for `ttl_s`."""
        await self.redis.set(keys.reply_beat(session_id), 1, px=max(int(ttl_s * 1000), 1))

    async def skip(self, session_id: str, head: int) -> None:
        """Give up on the message at the head of the line (if it still is)."""
        await self._skip(keys=[keys.session_queue(session_id)], args=[head])

    async def done(self, session_id: str, seq: int, message_id: str) -> None:
        await self._done(
            keys=[keys.session_queue(session_id), keys.active_reply(session_id)],
            args=[seq, message_id],
        )

    async def reply_ended(self, session_id: str, message_id: str) -> None:
        """The reply no longer counts against the session's limit of replies in flight."""
        await self.redis.zrem(keys.inflight(session_id), message_id)

    async def set_active(self, session_id: str, message_id: str) -> None:
        await self.redis.set(keys.active_reply(session_id), message_id, ex=self._queue_ttl_s)

    async def cancel_marked(self, session_id: str, message_id: str) -> bool:
        return bool(await self.redis.exists(keys.cancel_mark(session_id, message_id)))

    # Budgets.
    async def spent_today(self, user_id: str) -> int:
        return int(await self.redis.get(keys.budget(user_id, _today())) or 0)

    async def spend(self, user_id: str, tokens: int) -> int:
        """Add `tokens` to today's spending; returns the new total."""
        key = keys.budget(user_id, _today())
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incrby(key, tokens)
            pipe.expire(key, 2 * 24 * 3600)
            total, _ = await pipe.execute()
        return int(total)


def _today() -> str:
    return datetime.fromtimestamp(time.time(), UTC).strftime("%Y%m%d")
