"""Fan-out: per session this gateway holds, one subscription to each of its NATS subjects,
shared by all of the session's connections here.

- `live.<sid>.>`: stored events, republished by the stream with their sequence;
- `chat.<sid>.typing`: typing relays, not echoed to the connection they came from;
- `chat.<sid>.presence`: joined/left announcements, not echoed to the connection that caused
  them.

Each event is translated and serialised once, then offered to every connection's `Outbox`,
which never blocks: one slow client cannot delay the others.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from pydantic import ValidationError

from gateway.metrics import GatewayMetrics
from gateway.outbox import AttemptFilter, Outbox, Outgoing
from gateway.translate import outgoing_for_event
from shared import subjects
from shared.events import (
    PresenceChange,
    ReplyEnd,
    ReplyError,
    ReplyToken,
    TypingRelay,
    UserMessage,
)
from shared.frames import PresenceFrame, TypingRelayFrame
from shared.stream_reader import stamp

log = logging.getLogger(__name__)
MAX_AWAITED = 1000
"""User messages per session whose first token is awaited, for the TTFT metric."""


@dataclass
class _Room:
    subscriptions: list[Subscription] = field(default_factory=list)
    outboxes: set[Outbox] = field(default_factory=set)
    attempts: AttemptFilter = field(default_factory=AttemptFilter)
    asked: dict[str, float] = field(default_factory=dict)
    """When each user message awaiting its first token was stored (for the TTFT metric)."""


class SessionHub:
    def __init__(self, nc: NatsClient, metrics: GatewayMetrics | None = None) -> None:
        self._nc = nc
        self._metrics = metrics
        self._rooms: dict[str, _Room] = {}
        self._lock = asyncio.Lock()

    @property
    def sessions(self) -> int:
        return len(self._rooms)

    @property
    def connections(self) -> int:
        return sum(len(room.outboxes) for room in self._rooms.values())

    def interrupt_all(self) -> None:
        """Live events may have been missed (the NATS connection dropped, or messages of a slow
        subscription were dropped): every connection sends what it has, then closes with 1013
        so that its client resumes from the stream by `last_seq`, without a gap."""
        for room in self._rooms.values():
            for outbox in room.outboxes:
                outbox.interrupt()

    async def join(self, session_id: str, outbox: Outbox) -> None:
        """Deliver the session's events to `outbox` from now on. The subscriptions reach the
        server before any request this gateway sends later on the same NATS connection."""
        async with self._lock:
            room = self._rooms.get(session_id)
            if room is None:
                room = _Room()
                handlers: list[tuple[str, Callable[[Msg], Awaitable[None]]]] = [
                    (subjects.live(session_id), self._stored(room)),
                    (subjects.typing(session_id), self._typing(room)),
                    (subjects.presence(session_id), self._presence(room)),
                ]
                for subject, callback in handlers:
                    room.subscriptions.append(await self._nc.subscribe(subject, cb=callback))
                self._rooms[session_id] = room
            room.outboxes.add(outbox)

    async def leave(self, session_id: str, outbox: Outbox) -> None:
        async with self._lock:
            room = self._rooms.get(session_id)
            if room is None:
                return
            room.outboxes.discard(outbox)
            if not room.outboxes:
                del self._rooms[session_id]
                for subscription in room.subscriptions:
                    await subscription.unsubscribe()

    def _stored(self, room: _Room) -> Callable[[Msg], Awaitable[None]]:
        async def deliver(msg: Msg) -> None:
            try:
                headers = msg.headers or {}
                seq = int(headers["Nats-Sequence"])
                stored_at = headers.get("Nats-Time-Stamp")
                item = outgoing_for_event(msg.data, seq, stamp(stored_at) if stored_at else None)
            except (KeyError, ValueError, ValidationError):
                log.warning("skipping a live event on %s that is no bus event", msg.subject)
                return
            if item is None or not room.attempts.admit(item):
                return
            if self._metrics is not None:
                self._observe(room, item)
            for outbox in room.outboxes:
                outbox.offer(item)

        return deliver

    def _observe(self, room: _Room, item: Outgoing) -> None:
        metrics = self._metrics
        assert metrics is not None
        match item.event:
            case UserMessage(message_id=message_id):
                room.asked[message_id] = time.monotonic()
                while len(room.asked) > MAX_AWAITED:
                    room.asked.pop(next(iter(room.asked)))
            case ReplyToken(message_id=message_id, deltas=deltas):
                metrics.tokens.inc(deltas)
                asked = room.asked.pop(message_id, None)
                if asked is not None:
                    metrics.ttft.observe(time.monotonic() - asked)
            case ReplyEnd(finish_reason=reason) | ReplyError(code=reason):
                metrics.replies.labels(reason).inc()
            case _:
                pass

    def _typing(self, room: _Room) -> Callable[[Msg], Awaitable[None]]:
        async def deliver(msg: Msg) -> None:
            try:
                relay = TypingRelay.model_validate_json(msg.data)
            except ValidationError:
                return
            frame = TypingRelayFrame(participant=relay.participant, state=relay.state)
            item = Outgoing(frame.model_dump_json())
            for outbox in room.outboxes:
                if outbox.owner != relay.origin:
                    outbox.offer(item)

        return deliver

    def _presence(self, room: _Room) -> Callable[[Msg], Awaitable[None]]:
        async def deliver(msg: Msg) -> None:
            try:
                change = PresenceChange.model_validate_json(msg.data)
            except ValidationError:
                return
            frame = PresenceFrame(participant=change.participant, state=change.state)
            item = Outgoing(frame.model_dump_json())
            for outbox in room.outboxes:
                if outbox.owner != change.origin:
                    outbox.offer(item)

        return deliver
