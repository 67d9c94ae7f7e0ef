"""Messages stored while no worker serves their model (`ModelPools.waiting`): each waits up to
`TOKENWIRE_UNSERVED_TIMEOUT_S`. When its time is up and still no worker for its model is heard
from, it is given up: marked answered in the reply queue unless a worker began it meanwhile
(so a worker that starts later only acks it), and its reply ends with a stored `reply_error`
`no_worker` that every client and history see. A message a worker began is left alone.

The deadlines are kept by the gateway that stored the message; if that gateway stops first,
the message waits for a worker as any message does.
"""

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass

from redis.exceptions import RedisError

from gateway.bus import Bus, Unavailable
from gateway.model_pools import ModelPools
from shared.events import ReplyError
from shared.reply_queue import ReplyQueue

log = logging.getLogger(__name__)
NO_WORKER = "no_worker"
PUBLISH_TRIES = 10


@dataclass(frozen=True, slots=True)
class Unserved:
    session_id: str
    message_id: str
    model: str
    """The model's id."""
    deadline: float
    """`time.monotonic()` after which it is given up."""


class Deadlines:
    """Unserved messages in the order they were stored; sans I/O. One timeout for all, so the
    first stored is always the first due."""

    def __init__(self, timeout_s: float, limit: int = 10_000) -> None:
        self.timeout_s = timeout_s
        self._limit = limit
        self._waiting: deque[Unserved] = deque()

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, session_id: str, message_id: str, model: str, now: float) -> bool:
        """Note a message stored at `now`; False (not noted) beyond the limit: it waits."""
        if len(self._waiting) >= self._limit:
            return False
        self._waiting.append(Unserved(session_id, message_id, model, now + self.timeout_s))
        return True

    def due(self, now: float) -> list[Unserved]:
        """The messages whose time is up, taken out."""
        taken: list[Unserved] = []
        while self._waiting and self._waiting[0].deadline <= now:
            taken.append(self._waiting.popleft())
        return taken

    def next_in(self, now: float) -> float | None:
        """Seconds until the next deadline (None: nothing waits)."""
        return max(self._waiting[0].deadline - now, 0.0) if self._waiting else None


class UnservedMessages:
    """The deadlines, and giving up on the messages still unserved at theirs."""

    def __init__(self, queue: ReplyQueue, bus: Bus, pools: ModelPools, timeout_s: float) -> None:
        self._queue = queue
        self._bus = bus
        self._pools = pools
        self.deadlines = Deadlines(timeout_s)
        self._added = asyncio.Event()

    def watch(self, session_id: str, message_id: str, model: str) -> None:
        if self.deadlines.add(session_id, message_id, model, time.monotonic()):
            self._added.set()

    async def run_forever(self) -> None:
        while True:
            wait = self.deadlines.next_in(time.monotonic())
            self._added.clear()
            if wait is None:
                await self._added.wait()
                continue
            await asyncio.sleep(wait)
            due = self.deadlines.due(time.monotonic())
            if due:
                await self._pools.refresh()
            for message in due:
                await self.settle(message)

    async def settle(self, message: Unserved) -> bool:
        """Give `message` up unless a worker serves its model now or began it: True when it
        was given up and its `no_worker` error stored."""
        if self._pools.workers.get(message.model, 0) > 0:
            return False
        try:
            if not await self._queue.give_up(message.session_id, message.message_id):
                return False
        except RedisError as exc:
            log.warning("unserved message %s not given up: %s", message.message_id, exc)
            return False
        error = ReplyError(
            session_id=message.session_id,
            message_id=message.message_id,
            attempt=1,
            code=NO_WORKER,
            message=(
                f"no worker took this message within {self.deadlines.timeout_s:g} s: "
                f"none serves the model {message.model}"
            ),
            retryable=True,
        )
        return await self._store(error)

    async def _store(self, error: ReplyError) -> bool:
        for attempt in range(PUBLISH_TRIES):
            try:
                await self._bus.store_reply_error(error)
                return True
            except Unavailable as exc:
                log.warning("no_worker error of %s not stored: %s", error.message_id, exc)
                await asyncio.sleep(min(2**attempt, 10))
        return False
