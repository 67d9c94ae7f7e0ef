"""How a worker treats Redis failing under a reply: before the reply is stored it waits for
Redis (`patiently`); after, it goes on and retries the bookkeeping in the background
(`Bookkeeping.eventually`)."""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.exceptions import RedisError

log = logging.getLogger(__name__)
T = TypeVar("T")
BOOKKEEPING_RETRY_S = 120.0


async def patiently(step: Callable[[], Awaitable[T]]) -> T:
    """`step`, retried while Redis is unreachable (every second at most; logged once).

    The message is held meanwhile (its in-progress beats go on), so an outage of Redis costs
    no delivery of it: retrying through redeliveries would use them all up in seconds.
    """
    delay, warned = 0.1, False
    while True:
        try:
            return await step()
        except RedisError as exc:
            if not warned:
                log.warning("Redis unavailable (%s); waiting for it", exc)
                warned = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)


class Bookkeeping:
    """Steps that must not hold up a reply's end: retried in the background when Redis fails."""

    def __init__(self) -> None:
        self._background: set[asyncio.Task[None]] = set()

    async def eventually(self, step: Callable[[], Awaitable[T]], otherwise: T) -> T:
        """`step`'s result; if Redis fails it, `otherwise`, and `step` is retried in the
        background every second for up to `BOOKKEEPING_RETRY_S`."""
        try:
            return await step()
        except RedisError as exc:
            log.warning("reply bookkeeping postponed: %s", exc)
            self._retry_later(step)
            return otherwise

    def _retry_later(self, step: Callable[[], Awaitable[object]]) -> None:
        async def retry() -> None:
            deadline = time.monotonic() + BOOKKEEPING_RETRY_S
            while time.monotonic() < deadline:
                await asyncio.sleep(1.0)
                try:
                    await step()
                    return
                except RedisError:
                    continue
            log.error("reply bookkeeping lost after %.0f s without Redis", BOOKKEEPING_RETRY_S)

        task = asyncio.create_task(retry())
        self._background.add(task)
        task.add_done_callback(self._background.discard)
