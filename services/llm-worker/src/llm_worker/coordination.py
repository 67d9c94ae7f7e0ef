"""What workers agree on through Redis: the reply-queue protocol (`shared.reply_queue`:
fencing, one reply at a time per session, cancel marks) and users' daily budgets."""

from collections.abc import Sequence
from typing import Any

from shared import keys
from shared.redis import Command
from shared.reply_queue import ReplyQueue


class Coordinator(ReplyQueue):
    async def spent_today(self, user_id: str, read: Sequence[Any] | None = None) -> int:
        """Tokens `user_id` spent today; from `read`, the answer to `spending_reads`."""
        stored = read[0] if read else await self.redis.get(keys.budget(user_id, keys.today()))
        return int(stored or 0)

    @staticmethod
    def spending_reads(user_id: str) -> list[Command]:
        return [("GET", keys.budget(user_id, keys.today()))]

    async def spend(self, user_id: str, tokens: int) -> int:
        """Add `tokens` to today's spending; returns the new total."""
        key = keys.budget(user_id, keys.today())
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incrby(key, tokens)
            pipe.expire(key, 2 * 24 * 3600)
            total, _ = await pipe.execute()
        return int(total)
