"""The reply-queue protocol: how gateways and workers agree, through Redis, on which attempt
answers a message, in which order a session's messages are answered, and when a reply ends.

Every stage is one round trip, a Lua script where it must be atomic (`shared.reply_scripts`;
the states and their transitions are drawn in docs/architecture.md, "The reply lifecycle"):

- `admit` (gateway, before storing a message): the user's message rate, their daily budget,
  the session's replies in flight and its second-message policy decide; an admitted message
  takes a slot in flight (and in `interrupt` sessions marks the running reply cancelled)
  and, outside `parallel` sessions, is noted as storing at the time it was admitted.
- `withdraw` (gateway, only when the stream did not store an admitted message): the slot and
  the note go. `give_up` (gateway, a message no worker served in time): the same, and the
  message is marked answered unless a worker began it.
- `begin` (worker, on each delivery): claim the reply for the attempt (the fence), read a
  waiting cancel mark, trade the storing note for a place in line and learn the head.
- `line` / `beat` / `skip` / `forget` (worker, while it waits or streams): who is first in
  line, whether the worker answering it is alive, whether a message admitted earlier is still
  storing (the blocker), and giving up on a head nobody answers or a blocker nobody takes.
- `finish` (worker, once the terminal event is stored): mark the message answered unless a
  newer attempt took it meanwhile, and leave the line and the slot in flight in the same step.

A message's place in line is its stream sequence, taken by the worker that begins it. The
storing notes close the race in which a later message's worker begins before an earlier
message's worker did: stream deliveries come in order, so a blocker is a message whose worker
is about to begin it, or one stored after this message by another gateway — or one that was
never stored (its gateway died between admitting and storing it). Nobody can tell the last
from the others at once, so a waiting worker forgets a blocker nobody took for long
(`attempt.Waiting`); it never waits for a place that no message fills.
"""

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from redis.asyncio import Redis

from shared import keys, versions
from shared import reply_scripts as scripts
from shared.events import Policy
from shared.redis import Command, ListAppend, script_and_reads, text
from shared.reply_states import (
    CANCEL_VERDICTS,
    CLAIMS,
    VERDICTS,
    AdmissionLimits,
    Admitted,
    Beginning,
    CancelVerdict,
    Claim,
    Line,
    Refused,
)

FENCE_TTL_S = 24 * 3600
"""A fence outlives every delivery a message can have, so a late, stale one always finds it."""


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
        self._admit = redis.register_script(scripts.ADMIT)
        self._cancel = redis.register_script(scripts.CANCEL)
        self._give_up = redis.register_script(scripts.GIVE_UP)
        self._claim = redis.register_script(scripts.CLAIM)
        self._begin = redis.register_script(scripts.BEGIN)
        self._line = redis.register_script(scripts.LINE)
        self._skip = redis.register_script(scripts.SKIP)
        self._finish = redis.register_script(scripts.FINISH)

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
        daily_budget: int | None = None,
    ) -> Admitted | Refused:
        """Every check before a message is stored, and its slot in flight once it may be.
        `daily_budget` (a token's claim) replaces the limits' default; an administrator's
        budget for the user, stored in Redis, replaces both."""
        now = time.time()
        if daily_budget is None:
            daily_budget = limits.daily_token_budget
        verdict, retry, spent_limit, interrupted, *turn = await self._admit(
            keys=[
                keys.message_rate(user_id),
                keys.budget(user_id, keys.today()),
                keys.inflight(session_id),
                keys.session_queue(session_id),
                keys.active_reply(session_id),
                keys.storing(session_id),
                keys.fence(session_id, message_id),
                keys.sender(session_id, message_id),
                keys.BUDGETS,
                keys.session_spend(session_id),
                keys.turns(session_id),
            ],
            args=[
                now,
                limits.messages_per_min,
                limits.messages_per_min / 60,
                daily_budget,
                int(reply),
                message_id,
                now + limits.reply_ttl_s,
                limits.replies_per_session,
                policy,
                keys.cancel_mark(session_id, ""),
                keys.CANCEL_MARK_TTL_S,
                user_id,
                keys.SENDER_TTL_S,
                limits.session_token_budget,
                versions.split(message_id)[0],
                keys.TURNS_TTL_S,
            ],
        )
        if int(verdict):
            return Refused(VERDICTS[int(verdict)], round(float(retry), 2), int(spent_limit))
        return Admitted(text(interrupted) or None, int(turn[0]) if turn else 0)

    async def withdraw(self, session_id: str, message_id: str) -> None:
        """The stream did not store an admitted message: it leaves the replies in flight and
        the storing notes (so nothing waits for it)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrem(keys.inflight(session_id), message_id)
            pipe.zrem(keys.storing(session_id), message_id)
            await pipe.execute()

    async def give_up(self, session_id: str, message_id: str) -> bool:
        """Mark a stored message answered if no worker began it (True), so that a worker
        that takes it later only acks it; it leaves the replies in flight and the notes."""
        sid, mid = session_id, message_id
        given_up = await self._give_up(
            keys=[keys.fence(sid, mid), keys.inflight(sid), keys.storing(sid)],
            args=[mid, self._fence_ttl_s],
        )
        return bool(given_up)

    async def cancel(
        self, session_id: str, message_id: str, *, user_id: str, any_reply: bool
    ) -> CancelVerdict:
        """Mark the reply to `message_id` cancelled if `user_id` sent the message (or
        `any_reply`: the session's owner, an administrator)."""
        verdict = await self._cancel(
            keys=[keys.sender(session_id, message_id), keys.cancel_mark(session_id, message_id)],
            args=[user_id, int(any_reply), keys.CANCEL_MARK_TTL_S],
        )
        return CANCEL_VERDICTS[int(verdict)]

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
        return CLAIMS[int(result)]

    async def begin(
        self, session_id: str, message_id: str, attempt: int, *, place: int = 0, delivery: str = ""
    ) -> Beginning:
        """`claim` for `delivery` (an id of this one delivery; see `Beginning.attempt`),
        whether a cancel mark waits, and with a `place` the head of the line and any blocker
        (setting the active mark when it is this message's turn): one round trip before a
        reply."""
        began, _ = await self.begin_and_read(
            session_id, message_id, attempt, place=place, delivery=delivery
        )
        return began

    async def begin_and_read(
        self,
        session_id: str,
        message_id: str,
        attempt: int,
        *,
        place: int = 0,
        delivery: str = "",
        reads: Sequence[Command] = (),
    ) -> tuple[Beginning, list[Any]]:
        """`begin`, and the answers to `reads`, in the same round trip."""
        found, answers = await script_and_reads(
            self.redis,
            self._begin,
            [
                keys.fence(session_id, message_id),
                keys.cancel_mark(session_id, message_id),
                keys.session_queue(session_id),
                keys.active_reply(session_id),
                keys.storing(session_id),
            ],
            [attempt, self._fence_ttl_s, message_id, place, self._queue_ttl_s, delivery],
            reads,
        )
        claim, marked, head, at, blocker, claimed = found
        began = Beginning(CLAIMS[int(claim)], bool(marked), int(head), float(at), text(blocker))
        return replace(began, attempt=int(claimed)), answers

    async def line(
        self, session_id: str, place: int, message_id: str = "", admitted_at: float = 0.0
    ) -> Line:
        """Rejoin the line at `place` (idempotent) and answer its head, and the first message
        admitted before `admitted_at` still storing; when the head is `place` and nothing
        blocks it, `message_id` becomes the session's active reply."""
        head, beating, blocker = await self._line(
            keys=[
                keys.session_queue(session_id),
                keys.reply_beat(session_id),
                keys.active_reply(session_id),
                keys.storing(session_id),
            ],
            args=[place, self._queue_ttl_s, message_id, admitted_at],
        )
        return Line(int(head), bool(beating), text(blocker))

    async def beat(self, session_id: str, ttl_s: float) -> None:
        """The session's head of line is being answered: `Line.beating` for `ttl_s`."""
        await self.redis.set(keys.reply_beat(session_id), 1, px=max(int(ttl_s * 1000), 1))

    async def skip(self, session_id: str, head: int) -> None:
        """Give up on the message at the head of the line (if it still is)."""
        await self._skip(keys=[keys.session_queue(session_id)], args=[head])

    async def forget(self, session_id: str, message_id: str) -> None:
        """Stop waiting for an admitted message no worker took (the blocker of a `Line`)."""
        await self.redis.zrem(keys.storing(session_id), message_id)

    async def finish(
        self,
        session_id: str,
        message_id: str,
        attempt: int,
        *,
        place: int,
        answered: bool,
        then: ListAppend | None = None,
    ) -> bool:
        """The attempt ended. `answered` (its terminal event is stored): any later delivery is
        only acked, and the message leaves the line. Failed: it keeps its place, so its next
        attempt is still answered first. Either way it leaves the replies in flight.

        False when a newer attempt claimed the reply after this one last checked its claim
        (this worker stalled in between): that attempt streams the reply again, its terminal
        event supersedes this one, and nothing was changed.

        `then`: appended once, by the call that marks the message answered.
        """
        done = await self._finish(
            keys=[
                keys.fence(session_id, message_id),
                keys.session_queue(session_id),
                keys.active_reply(session_id),
                keys.inflight(session_id),
                keys.storing(session_id),
                *(then.keys if then else ()),
            ],
            args=[
                attempt,
                self._fence_ttl_s,
                place,
                message_id,
                int(answered),
                *(then.args if then else ()),
            ],
        )
        return bool(done)
