"""What workers agree on through Redis: the reply-queue protocol (`shared.reply_queue`:
fencing, one reply at a time per session, cancel marks), users' daily budgets and sessions'
caps."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from shared import keys
from shared.events import UserMessage
from shared.redis import Command, read_all, text
from shared.reply_queue import ReplyQueue

Limit = Literal["budget", "session_budget"]
"""Which budget a reply ran out of: its sender's daily budget, or its session's cap."""


@dataclass(frozen=True, slots=True)
class Budgets:
    """The budgets a reply streams under (0: none), and what they had spent before it."""

    daily: int
    session: int
    spent_today: int = 0
    spent_in_session: int = 0

    @property
    def any(self) -> bool:
        return bool(self.daily or self.session)

    def spent(self, limit: Limit) -> str:
        """What a refusal says of `limit`."""
        if limit == "budget":
            return f"the sender's daily budget of {self.daily} tokens is spent"
        return f"this session's cap of {self.session} tokens is spent"

    def exceeded(self, today: int, in_session: int) -> Limit | None:
        """The limit spent at these totals, if one is."""
        if self.daily and today >= self.daily:
            return "budget"
        if self.session and in_session >= self.session:
            return "session_budget"
        return None


class Coordinator(ReplyQueue):
    @staticmethod
    def spending_reads(
        message: UserMessage, *, default_daily: int, session_cap: int
    ) -> list[Command]:
        """An administrator's budget for the sender; when a budget applies before any
        override (`meters`), also the sender's spending today and the session's. Otherwise
        a reply reads the spending only if an override turns up."""
        override: Command = ("HGET", keys.BUDGETS, message.participant)
        metered = meters(message, default_daily=default_daily, session_cap=session_cap)
        return [override, *_spending(message)] if metered else [override]

    async def budgets(
        self,
        message: UserMessage,
        *,
        default_daily: int,
        session_cap: int,
        read: Sequence[Any] | None = None,
    ) -> Budgets:
        """The reply's budgets: an administrator's for the sender, else their token's claim,
        else `default_daily`; the session's cap. From `read`, the answers to
        `spending_reads`."""
        if read is None:
            reads = self.spending_reads(
                message, default_daily=default_daily, session_cap=session_cap
            )
            read = await read_all(self.redis, reads)
        override, *spent = read
        daily = default_daily if message.daily_budget is None else message.daily_budget
        if override is not None:
            daily = int(text(override))
        if not spent and (daily or session_cap):  # an override on an unmetered deployment
            spent = await read_all(self.redis, _spending(message))
        today, in_session = spent or (0, 0)
        return Budgets(daily, session_cap, int(today or 0), int(in_session or 0))

    async def spend(self, message: UserMessage, tokens: int) -> tuple[int, int]:
        """Add `tokens` to the sender's spending today and the session's; the new totals."""
        today = keys.budget(message.participant, keys.today())
        session = keys.session_spend(message.session_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incrby(today, tokens)
            pipe.expire(today, 2 * 24 * 3600)
            pipe.incrby(session, tokens)
            pipe.expire(session, keys.SESSION_SPEND_TTL_S)
            spent_today, _, in_session, _ = await pipe.execute()
        return int(spent_today), int(in_session)


def _spending(message: UserMessage) -> list[Command]:
    """The sender's spending today, and the session's."""
    return [
        ("GET", keys.budget(message.participant, keys.today())),
        ("GET", keys.session_spend(message.session_id)),
    ]


def meters(message: UserMessage, *, default_daily: int, session_cap: int) -> bool:
    """Whether a budget applies to `message`'s reply before any override is read: a default
    daily budget, a session cap, or the sender's token claim."""
    return bool(default_daily or session_cap or message.daily_budget is not None)
