"""The reply-queue protocol: how gateways and workers agree, through Redis, on which attempt
answers a message, in which order a session's messages are answered, and when a reply ends.

Every stage is one round trip, a Lua script where it must be atomic (the states and their
transitions are drawn in docs/architecture.md, "The reply lifecycle"):

- `admit` (gateway, before storing a message): the user's message rate, their daily budget,
  the session's replies in flight and its second-message policy decide; an admitted message
  takes a slot in flight and, outside `parallel` sessions, the next place in its session's
  line (and in `interrupt` sessions marks the running reply cancelled).
- `begin` (worker, on each delivery): claim the reply for the attempt (the fence), read a
  waiting cancel mark, rejoin the line (idempotent) and learn its head.
- `line` / `beat` / `skip` (worker, while it waits or streams): who is first in line, whether
  the worker answering it is alive, and giving up on a head nobody answers.
- `finish` (worker, once the terminal event is stored): mark the message answered unless a
  newer attempt took it meanwhile, and leave the line and the slot in flight in the same step.

Places are numbers handed out by `admit` in the order messages are admitted; a message that
was stored without one (by a client of the stream other than a gateway) is placed by its
stream sequence.
"""

import time
from dataclasses import dataclass
from typing import Literal

from redis.asyncio import Redis

from shared import keys
from shared.events import Policy

FENCE_TTL_S = 24 * 3600
"""A fence outlives every delivery a message can have, so a late, stale one always finds it."""
TURN_TTL_S = 24 * 3600
"""The counter of a session's places lives this long after its last message."""

Claim = Literal["ours", "newer", "answered"]
_CLAIMS: dict[int, Claim] = {1: "ours", 0: "newer", 2: "answered"}
Verdict = Literal["rate_limited", "budget_exceeded", "replies_in_flight", "busy"]
_VERDICTS: dict[int, Verdict] = {
    1: "rate_limited",
    2: "budget_exceeded",
    3: "replies_in_flight",
    4: "busy",
}

# KEYS: rate bucket, budget, in flight, line, active, turn counter.
# ARGV: now, bucket size, refill/s, budget (0: none), wants a reply (0/1), message id,
#   in-flight expiry, in-flight limit, policy, line ttl, cancel-mark prefix, cancel ttl,
#   turn ttl.
# Returns {verdict (0 admitted), retry after, place, interrupted message id}.
_ADMIT = """
local now = tonumber(ARGV[1])
local capacity, rate = tonumber(ARGV[2]), tonumber(ARGV[3])
local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = math.min(capacity, (tonumber(bucket[1]) or capacity)
  + (now - (tonumber(bucket[2]) or now)) * rate)
local allowed = tokens >= 1
if allowed then tokens = tokens - 1 end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'at', now)
redis.call('EXPIRE', KEYS[1], math.ceil(capacity / rate) + 1)
if not allowed then return {1, tostring((1 - tokens) / rate), 0, ''} end
if ARGV[5] ~= '1' then return {0, '0', 0, ''} end
local budget = tonumber(ARGV[4])
if budget > 0 and tonumber(redis.call('GET', KEYS[2]) or '0') >= budget then
  return {2, '0', 0, ''}
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
if not redis.call('ZSCORE', KEYS[3], ARGV[6])
  and redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[8]) then return {3, '1', 0, ''} end
local policy = ARGV[9]
if policy == 'reject' and (redis.call('EXISTS', KEYS[5]) == 1
  or redis.call('ZCARD', KEYS[4]) > 0) then return {4, '1', 0, ''} end
local interrupted = ''
if policy == 'interrupt' then
  interrupted = redis.call('GET', KEYS[5]) or ''
  if interrupted ~= '' then
    redis.call('SET', ARGV[11] .. interrupted, 1, 'EX', ARGV[12])
  end
end
redis.call('ZADD', KEYS[3], ARGV[7], ARGV[6])
redis.call('EXPIRE', KEYS[3], math.ceil(tonumber(ARGV[7]) - now) + 1)
if policy == 'parallel' then return {0, '0', 0, interrupted} end
local place = redis.call('INCR', KEYS[6])
local last = redis.call('ZRANGE', KEYS[4], -1, -1, 'WITHSCORES')[2]
if last and place <= tonumber(last) then
  place = tonumber(last) + 1
  redis.call('SET', KEYS[6], place)
end
redis.call('EXPIRE', KEYS[6], ARGV[13])
redis.call('ZADD', KEYS[4], place, place)
redis.call('EXPIRE', KEYS[4], ARGV[10])
return {0, '0', place, interrupted}
"""
# KEYS: fence. Claim the reply for ARGV[1] unless a newer attempt has it (0) or it was
# answered (2). With ARGV[3] > 0 and the claim ours, the worker answering the head of line
# beats for ARGV[3] ms (KEYS[2]).
_CLAIM = """
local current = redis.call('GET', KEYS[1])
if current == 'done' then return 2 end
if tonumber(current or '0') > tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
if tonumber(ARGV[3]) > 0 then redis.call('SET', KEYS[2], 1, 'PX', ARGV[3]) end
return 1
"""
# KEYS: fence, cancel mark, line, active. The claim (as _CLAIM); whether a cancel mark waits;
# with a place (ARGV[4] > 0), rejoin the line, its head, and the active mark when the head is
# this message.
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
# KEYS: line, beat, active. Rejoin the line (idempotent); its head, whether the worker
# answering the head beat lately; the active mark when the head is message ARGV[3] (if any).
_LINE = """
redis.call('ZADD', KEYS[1], 'NX', ARGV[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
local head = redis.call('ZRANGE', KEYS[1], 0, 0)[1]
if head == ARGV[1] and ARGV[3] ~= '' then redis.call('SET', KEYS[3], ARGV[3], 'EX', ARGV[2]) end
return {head, redis.call('EXISTS', KEYS[2])}
"""
# KEYS: line. Drop the head if it still is ARGV[1].
_SKIP = """
if redis.call('ZRANGE', KEYS[1], 0, 0)[1] == ARGV[1] then redis.call('ZREM', KEYS[1], ARGV[1]) end
return 1
"""
# KEYS: fence, line, active, in flight. ARGV: attempt, fence ttl, place, message id, answered.
# Answered: mark it so unless a newer attempt took the reply (0: that attempt streams it
# again; its terminal event is the one kept), leave the line and the active mark. Answered or
# failed, the reply leaves the session's replies in flight.
_FINISH = """
if ARGV[5] == '1' then
  local current = redis.call('GET', KEYS[1])
  if current and current ~= 'done' and tonumber(current) > tonumber(ARGV[1]) then return 0 end
  redis.call('SET', KEYS[1], 'done', 'EX', ARGV[2])
  redis.call('ZREM', KEYS[2], ARGV[3])
  if redis.call('GET', KEYS[3]) == ARGV[4] then redis.call('DEL', KEYS[3]) end
end
redis.call('ZREM', KEYS[4], ARGV[4])
return 1
"""


@dataclass(frozen=True, slots=True)
class Admitted:
    place: int
    """The message's place in its session's line (0 in `parallel` sessions or without a reply)."""
    interrupted: str | None
    """In an `interrupt` session, the message whose running reply is now marked cancelled."""


@dataclass(frozen=True, slots=True)
class Refused:
    verdict: Verdict
    retry_after_s: float


@dataclass(frozen=True, slots=True)
class AdmissionLimits:
    messages_per_min: float
    replies_per_session: int
    daily_token_budget: int
    """0: no budget."""
    reply_ttl_s: float = 600.0
    """A reply that never ends stops counting against the session after this."""


@dataclass(frozen=True, slots=True)
class Beginning:
    claim: Claim
    cancel_marked: bool
    head: int
    """The session's first in line (0 without a place); the active mark is set when it is the
    message that began."""


@dataclass(frozen=True, slots=True)
class Line:
    head: int
    """The session's first in line."""
    beating: bool
    """Whether a worker answering a queued reply of the session beat lately."""


class ReplyQueue:
    """The protocol's operations; each one round trip. Raises `redis.exceptions.RedisError`
    when Redis cannot be asked (callers decide: gateways fail closed, workers wait)."""

    def __init__(
        self,
        redis: Redis,
        *,
        fence_ttl_s: int = FENCE_TTL_S,
        queue_ttl_s: int = keys.SESSION_QUEUE_TTL_S,
    ) -> None:
        self.redis = redis
        self._fence_ttl_s = fence_ttl_s
        self._queue_ttl_s = queue_ttl_s
        self._admit = redis.register_script(_ADMIT)
        self._claim = redis.register_script(_CLAIM)
        self._begin = redis.register_script(_BEGIN)
        self._line = redis.register_script(_LINE)
        self._skip = redis.register_script(_SKIP)
        self._finish = redis.register_script(_FINISH)

    # Gateways.
    async def admit(
        self,
        limits: AdmissionLimits,
        *,
        user_id: str,
        session_id: str,
        message_id: str,
        reply: bool,
        policy: Policy,
    ) -> Admitted | Refused:
        """Every check before a message is stored, and its slot and place once it may be."""
        now = time.time()
        verdict, retry, place, interrupted = await self._admit(
            keys=[
                keys.message_rate(user_id),
                keys.budget(user_id, keys.today()),
                keys.inflight(session_id),
                keys.session_queue(session_id),
                keys.active_reply(session_id),
                keys.turn(session_id),
            ],
            args=[
                now,
                limits.messages_per_min,
                limits.messages_per_min / 60,
                limits.daily_token_budget,
                int(reply),
                message_id,
                now + limits.reply_ttl_s,
                limits.replies_per_session,
                policy,
                self._queue_ttl_s,
                keys.cancel_mark(session_id, ""),
                keys.CANCEL_MARK_TTL_S,
                TURN_TTL_S,
            ],
        )
        if int(verdict):
            return Refused(_VERDICTS[int(verdict)], round(float(retry), 2))
        text = interrupted.decode() if isinstance(interrupted, bytes) else str(interrupted)
        return Admitted(int(place), text or None)

    async def withdraw(self, session_id: str, place: int) -> None:
        """Give back a place whose message was not stored (or was stored before, under
        another place): a worker that does get the message rejoins the line itself."""
        await self.redis.zrem(keys.session_queue(session_id), str(place))

    async def mark_cancelled(self, session_id: str, message_id: str) -> None:
        """A worker that takes `message_id` later (or holds it now) stops its reply."""
        await self.redis.set(keys.cancel_mark(session_id, message_id), 1, ex=keys.CANCEL_MARK_TTL_S)

    # Workers. Attempts are the stream's delivery count, so they only grow.
    async def claim(self, session_id: str, message_id: str, attempt: int) -> Claim:
        """Take the reply for `attempt`, unless a newer attempt took it or it was answered."""
        return await self.watch(session_id, message_id, attempt, beat_s=0)

    async def holds(self, session_id: str, message_id: str, attempt: int) -> bool:
        """Whether `attempt` still has the reply."""
        return await self.claim(session_id, message_id, attempt) == "ours"

    async def watch(
        self, session_id: str, message_id: str, attempt: int, *, beat_s: float
    ) -> Claim:
        """`claim`, and while it is ours with `beat_s` > 0, `Line.beating` for `beat_s`: the
        worker answering the session's head of line is alive."""
        result = await self._claim(
            keys=[keys.fence(session_id, message_id), keys.reply_beat(session_id)],
            args=[attempt, self._fence_ttl_s, max(int(beat_s * 1000), 0)],
        )
        return _CLAIMS[int(result)]

    async def begin(
        self, session_id: str, message_id: str, attempt: int, *, place: int = 0
    ) -> Beginning:
        """`claim`, whether a cancel mark waits, and with a `place` the head of the line
        (setting the active mark when it is this message): one round trip before a reply."""
        claim, marked, head = await self._begin(
            keys=[
                keys.fence(session_id, message_id),
                keys.cancel_mark(session_id, message_id),
                keys.session_queue(session_id),
                keys.active_reply(session_id),
            ],
            args=[attempt, self._fence_ttl_s, message_id, place, self._queue_ttl_s],
        )
        return Beginning(_CLAIMS[int(claim)], bool(marked), int(head))

    async def line(self, session_id: str, place: int, message_id: str = "") -> Line:
        """Rejoin the line at `place` (idempotent) and answer its head; when the head is
        `place`, `message_id` becomes the session's active reply."""
        head, beating = await self._line(
            keys=[
                keys.session_queue(session_id),
                keys.reply_beat(session_id),
                keys.active_reply(session_id),
            ],
            args=[place, self._queue_ttl_s, message_id],
        )
        return Line(int(head), bool(beating))

    async def beat(self, session_id: str, ttl_s: float) -> None:
        """The session's head of line is being answered: `Line.beating` for `ttl_s`."""
        await self.redis.set(keys.reply_beat(session_id), 1, px=max(int(ttl_s * 1000), 1))

    async def skip(self, session_id: str, head: int) -> None:
        """Give up on the message at the head of the line (if it still is)."""
        await self._skip(keys=[keys.session_queue(session_id)], args=[head])

    async def finish(
        self, session_id: str, message_id: str, attempt: int, *, place: int, answered: bool
    ) -> bool:
        """The attempt ended. `answered` (its terminal event is stored): any later delivery is
        only acked, and the message leaves the line. Failed: it keeps its place, so its next
        attempt is still answered first. Either way it leaves the replies in flight.

        False when a newer attempt claimed the reply after this one last checked its claim
        (this worker stalled in between): that attempt streams the reply again, its terminal
        event supersedes this one, and nothing was changed.
        """
        done = await self._finish(
            keys=[
                keys.fence(session_id, message_id),
                keys.session_queue(session_id),
                keys.active_reply(session_id),
                keys.inflight(session_id),
            ],
            args=[attempt, self._fence_ttl_s, place, message_id, int(answered)],
        )
        return bool(done)
