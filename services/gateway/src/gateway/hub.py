"""Fan-out: one NATS subscription per session this gateway holds, shared by its connections.

Each connection owns an `Outbox`, a bounded queue of (seq, frame text). A connection whose
outbox overflows is marked, and closed by its sender with 1013; it then resumes from its last
`seq`, so nothing is lost.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from pydantic import ValidationError

from gateway.translate import frame_for_event
from shared import subjects

log = logging.getLogger(__name__)


OVERFLOW = (-1, "")
"""Queued after the last frame an overflowing outbox accepts: the sender closes with 1013."""


class Outbox:
    def __init__(self, max_frames: int) -> None:
        self._max_frames = max_frames
        self.queue: asyncio.Queue[tuple[int, str]] = asyncio.Queue(max_frames + 1)
        self.overflowed = False

    def offer(self, seq: int, text: str) -> None:
        """Queue a frame; never blocks. Past `max_frames`, queues `OVERFLOW` once and stops."""
        if self.overflowed:
            return
        if self.queue.qsize() >= self._max_frames:
            self.overflowed = True
            self.queue.put_nowait(OVERFLOW)
            return
        self.queue.put_nowait((seq, text))


@dataclass
class _Room:
    subscription: Subscription
    outboxes: set[Outbox] = field(default_factory=set)


class SessionHub:
    def __init__(self, nc: NatsClient) -> None:
        self._nc = nc
        self._rooms: dict[str, _Room] = {}
        self._lock = asyncio.Lock()

    @property
    def sessions(self) -> int:
        return len(self._rooms)

    async def join(self, session_id: str, outbox: Outbox) -> None:
        """Deliver the session's live events to `outbox` from now on."""
        async with self._lock:
            room = self._rooms.get(session_id)
            if room is None:
                sub = await self._nc.subscribe(
                    subjects.live(session_id), cb=self._deliver_to(session_id)
                )
                room = self._rooms[session_id] = _Room(sub)
            room.outboxes.add(outbox)

    async def leave(self, session_id: str, outbox: Outbox) -> None:
        async with self._lock:
            room = self._rooms.get(session_id)
            if room is None:
                return
            room.outboxes.discard(outbox)
            if not room.outboxes:
                del self._rooms[session_id]
                await room.subscription.unsubscribe()

    def _deliver_to(self, session_id: str) -> Callable[[Msg], Awaitable[None]]:
        async def deliver(msg: Msg) -> None:
            room = self._rooms.get(session_id)
            if room is None:
                return
            try:
                seq = int((msg.headers or {})["Nats-Sequence"])
                text = frame_for_event(msg.data, seq).model_dump_json()
            except (KeyError, ValueError, ValidationError):
                log.warning("skipping a live event on %s that is no bus event", msg.subject)
                return
            for outbox in room.outboxes:
                outbox.offer(seq, text)

        return deliver
