"""Messages stored while no worker serves their model (`ModelPools.waiting`): each waits up to
`TOKENWIRE_UNSERVED_TIMEOUT_S`. When its time is up and still no worker for its model is heard
from, it is given up: marked answered in the reply queue unless a worker began it meanwhile
(so a worker that starts later only acks it), and its reply ends with a stored `reply_error`
`no_worker` that every client and history see. A message a worker began is left alone.

The deadlines are kept by the gateway that stored the message; if that gateway stops first,
the message waits for a worker as any message does.
"""

import asyncio
import contextlib
import heapq
import logging
import time
from dataclasses import dataclass, replace

from redis.exceptions import RedisError

from gateway.bus import Bus, Unavailable
from gateway.model_pools import ModelPools
from shared.events import ReplyError
from shared.reply_queue import ReplyQueue

log = logging.getLogger(__name__)
NO_WORKER = "no_worker"
PUBLISH_TRIES = 10
RETRY_S = 5.0
MAX_TRIES = 12
"""Giving a message up is tried this often, `RETRY_S` apart, while Redis does not answer."""


@dataclass(frozen=True, slots=True, order=True)
class Unserved:
    deadline: float
    """`time.monotonic()` after which it is given up."""
    session_id: str
    message_id: str
    model: str
    """The model's id."""
    tries: int = 0
    """How often giving it up failed (Redis did not answer)."""


class Deadlines:
    """Unserved messages by deadline; sans I/O. A message whose giving up failed comes back
    `RETRY_S` later, at most `MAX_TRIES` times."""

    def __init__(self, timeout_s: float, limit: int = 10_000) -> None:
        self.timeout_s = timeout_s
        self._limit = limit
        self._waiting: list[Unserved] = []

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, session_id: str, message_id: str, model: str, now: float) -> bool:
        """Note a message stored at `now`; False (not noted) beyond the limit: it waits."""
        if len(self._waiting) >= self._limit:
            return False
        heapq.heappush(self._waiting, Unserved(now + self.timeout_s, session_id, message_id, model))
        return True

    def again(self, message: Unserved, now: float) -> bool:
        """`message` could not be given up: due again `RETRY_S` from `now`, unless it has
        failed `MAX_TRIES` times (False: it waits for a worker as any message does)."""
        if message.tries + 1 >= MAX_TRIES:
            return False
        heapq.heappush(
            self._waiting, replace(message, deadline=now + RETRY_S, tries=message.tries + 1)
        )
        return True

    def due(self, now: float) -> list[Unserved]:
        """The messages whose time is up, taken out, earliest first."""
        taken: list[Unserved] = []
        while self._waiting and self._waiting[0].deadline <= now:
            taken.append(heapq.heappop(self._waiting))
        return taken

    def next_in(self, now: float) -> float | None:
        """Seconds until the next deadline (None: nothing waits)."""
        return max(self._waiting[0].deadline - now, 0.0) if self._waiting else None


class UnservedMessages:
    """The deadlines, and giving up on the messages still unserved at theirs: each in a task
    of its own, so that a broker that does not answer holds none of the others up."""

    def __init__(self, queue: ReplyQueue, bus: Bus, pools: ModelPools, timeout_s: float) -> None:
        self._queue = queue
        self._bus = bus
        self._pools = pools
        self.deadlines = Deadlines(timeout_s)
        self._added = asyncio.Event()
        self._settling: set[asyncio.Task[bool]] = set()

    def watch(self, session_id: str, message_id: str, model: str) -> None:
        if self.deadlines.add(session_id, message_id, model, time.monotonic()):
            self._added.set()

    async def run_forever(self) -> None:
        while True:
            self._added.clear()
            wait = self.deadlines.next_in(time.monotonic())
            with contextlib.suppress(TimeoutError):  # woken early by a message noted
                await asyncio.wait_for(self._added.wait(), wait)
            due = self.deadlines.due(time.monotonic())
            if due:
                await self._pools.refresh()
            for message in due:
                task = asyncio.create_task(self.settle(message))
                self._settling.add(task)
                task.add_done_callback(self._settling.discard)

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
            if self.deadlines.again(message, time.monotonic()):
                self._added.set()
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
