"""Publishing reply events to the `CHAT` stream.

Tokens go out with `publish_async` (a bounded window of unacknowledged publishes, no wait per
token; `token` returns the future of the stream's acknowledgement, which the reply checks
before its terminal event); start and terminal events are awaited and carry a `Nats-Msg-Id`,
so a retried publish is stored once: a publish whose acknowledgement timed out (it may have
been stored; a worker that froze wakes up with its timers expired) is sent again before the
attempt fails. One connection keeps them in order.
"""

import asyncio
import logging
from typing import Any, Protocol

from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import PubAck

from shared import subjects
from shared.events import (
    ModelCall,
    ReplyEnd,
    ReplyError,
    ReplyReasoning,
    ReplySources,
    ReplyStart,
    ReplyToken,
    ReplyToolCall,
    SessionTitled,
)
from shared.telemetry import trace_headers

log = logging.getLogger(__name__)
Streamed = ReplyToken | ReplyReasoning | ReplySources | ReplyToolCall
"""What a reply publishes on `chat.<sid>.out.token`, without waiting for each to be stored."""
PUBLISH_TRIES = 3
"""Sends of a start or terminal event whose acknowledgement times out, before giving up."""


class ReplyPublisher(Protocol):
    async def start(self, event: ReplyStart) -> None: ...
    async def token(self, event: Streamed) -> "asyncio.Future[Any] | None":
        """Publish without waiting; returns the acknowledgement to come (None: stored now)."""
        ...

    async def end(self, event: ReplyEnd | ReplyError) -> None: ...

    async def call(self, event: ModelCall) -> None:
        """Record a model call apart from a reply end (stored, deduplicated by attempt and
        outcome)."""
        ...

    async def titled(self, event: SessionTitled) -> None:
        """Store a session's title from the model (deduplicated by attempt)."""
        ...


class JetStreamPublisher:
    def __init__(self, js: JetStreamContext) -> None:
        self._js = js

    async def start(self, event: ReplyStart) -> None:
        await self._stored(
            subjects.out_start(event.session_id),
            event.model_dump_json().encode(),
            {"Nats-Msg-Id": _msg_id(event.session_id, event.message_id, event.attempt, "start")},
        )

    async def token(self, event: Streamed) -> "asyncio.Future[Any]":
        ack = await self._js.publish_async(
            subjects.out_token(event.session_id), event.model_dump_json().encode()
        )
        ack.add_done_callback(_log_failure)
        return ack

    async def end(self, event: ReplyEnd | ReplyError) -> None:
        subject = (
            subjects.out_end(event.session_id)
            if isinstance(event, ReplyEnd)
            else subjects.out_error(event.session_id)
        )
        await self._stored(
            subject,
            event.model_dump_json().encode(),
            {
                **trace_headers(),  # persistence continues the message's trace
                "Nats-Msg-Id": _msg_id(event.session_id, event.message_id, event.attempt, "end"),
            },
        )

    async def call(self, event: ModelCall) -> None:
        await self._stored(
            subjects.out_call(event.session_id),
            event.model_dump_json().encode(),
            {
                "Nats-Msg-Id": _msg_id(
                    event.session_id, event.message_id, event.attempt, f"call-{event.outcome}"
                )
            },
        )

    async def titled(self, event: SessionTitled) -> None:
        await self._stored(
            subjects.out_title(event.session_id),
            event.model_dump_json().encode(),
            {"Nats-Msg-Id": _msg_id(event.session_id, event.message_id, event.attempt, "title")},
        )

    async def _stored(self, subject: str, payload: bytes, headers: dict[str, str]) -> None:
        """Publish until acknowledged, at most `PUBLISH_TRIES` times while the acknowledgement
        times out; other failures raise at once."""
        for tries_left in range(PUBLISH_TRIES - 1, -1, -1):
            try:
                await self._js.publish(subject, payload, headers=headers)
                return
            except NatsTimeoutError:
                if not tries_left:
                    raise
                log.info(
                    "no acknowledgement of %s in time; sending it again", headers["Nats-Msg-Id"]
                )


def _msg_id(session_id: str, message_id: str, attempt: int, kind: str) -> str:
    """Dedup key; scoped by session because message ids are made by clients."""
    return f"{session_id}:{message_id}:{attempt}:{kind}"


def _log_failure(ack: "asyncio.Future[PubAck]") -> None:
    if not ack.cancelled() and ack.exception() is not None:
        log.warning("token publish not stored: %s", ack.exception())
