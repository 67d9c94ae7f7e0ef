"""What workers agree on through Redis: the reply-queue protocol (`shared.reply_queue`:
fencing, one reply at a time per session, cancel marks) and users' daily budgets."""

from shared import keys
from shared.reply_queue import ReplyQueue


class Coordinator(ReplyQueue):
    async def spent_today(self, user_id: str) -> int:
        return int(await self.redis.get(keys.budget(user_id, keys.today())) or 0)

    async def spend(self, user_id: str, tokens: int) -> int:
        """Add `tokens` to today's spending; returns the new total."""
        key = keys.budget(user_id, keys.today())
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incrby(key, tokens)
            pipe.expire(key, 2 * 24 * 3600)
            total, _ = await pipe.execute()
        return int(total)
