"""The WebSocket endpoint `/v1/sessions/{session_id}/ws` (protocol in docs/protocol.md).

Authentication and membership are settled before the connection joins its session: a refusal
is a close with 4401 (no valid token), 4403 (not a member, or no such session) or 1013
(sessions unavailable). Then `ready`, the replay after `?last_seq=` if asked, and live frames.
A bad frame gets an `error` frame and the connection stays open.
"""

import asyncio
import contextlib
import logging
import secrets
import time
from typing import assert_never

from fastapi import WebSocket, WebSocketDisconnect
from redis.exceptions import RedisError
from starlette.websockets import WebSocketState

from gateway import policy
from gateway.auth import AuthError, Principal, token_from_handshake
from gateway.bus import Unavailable
from gateway.deps import Resources
from gateway.leases import Lease
from gateway.limits import Refusal
from gateway.origins import origin_allowed
from gateway.outbox import Outbox, Outgoing, coalesce
from gateway.replay import can_resume, replay
from shared import rpc, subjects, telemetry
from shared.events import PresenceChange, TypingRelay, UserMessage
from shared.frames import (
    SUBPROTOCOL,
    CancelFrame,
    ClientFrame,
    ErrorFrame,
    FrameError,
    MessageFrame,
    PingFrame,
    PongFrame,
    ReadyFrame,
    TypingFrame,
    parse_client_frame,
)

log = logging.getLogger(__name__)
TRACER = telemetry.tracer(__name__)

CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_TRY_AGAIN_LATER = 1013
REPLAY_BATCH = 256
"""Stored events sent per merge during a replay."""


async def serve(ws: WebSocket, session_id: str, resources: Resources) -> None:
    settings = resources.settings
    if not origin_allowed(
        ws.headers.get("origin"),
        ws.headers.get("host"),
        allowed=settings.allowed_origins,
        dev=settings.auth == "dev",
    ):
        await ws.close(code=1008)  # before accepting: the browser's handshake fails with 403
        return
    offered = ws.scope.get("subprotocols", [])
    subprotocol = SUBPROTOCOL if SUBPROTOCOL in offered else None
    try:
        principal = await resources.auth.principal(
            token_from_handshake(ws.headers, offered, ws.query_params)
        )
    except AuthError as exc:
        await _refuse(ws, subprotocol, CLOSE_UNAUTHORIZED, str(exc))
        return
    user = principal.user_id
    try:
        session = (
            await resources.sessions.get(session_id) if subjects.is_session_id(session_id) else None
        )
    except Unavailable:
        await _refuse(ws, subprotocol, CLOSE_TRY_AGAIN_LATER, "sessions unavailable; retry")
        return
    if session is None or user not in session.members:
        await _refuse(ws, subprotocol, CLOSE_FORBIDDEN, "not a member of this session")
        return
    await ws.accept(subprotocol=subprotocol)
    connection = Connection(ws, session, principal, resources)
    try:
        refusal = await resources.limits.open_connection(user, connection.id)
    except RedisError:
        refusal = Refusal("unavailable", "limits unavailable; retry", 1.0)
    if refusal is not None:
        resources.metrics.refusals.labels(refusal.code).inc()
        await connection.refuse(refusal)
        return
    try:
        await connection.run(ws.query_params.get("last_seq"))
    finally:
        with contextlib.suppress(RedisError):
            await resources.limits.close_connection(user, connection.id)


class Connection:
    """One accepted socket: its outbox, its sender, its presence (kept alive by `Leases`)."""

    def __init__(
        self, ws: WebSocket, session: rpc.SessionInfo, principal: Principal, resources: Resources
    ) -> None:
        self.ws = ws
        self.session = session
        self.session_id = session.session_id
        self.user = principal.user_id
        self.expires_at = principal.expires_at
        self.id = secrets.token_urlsafe(8)
        self.r = resources
        self.outbox = Outbox(
            resources.settings.send_queue_frames, owner=self.id, on_ready=self._wake_sender
        )
        self._live_after: int | None = None
        """Set once the connection is live: queued events up to it were replayed or predate it."""
        self._sender: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[None] | None = None

    async def run(self, last_seq_param: str | None) -> None:
        last_seq = _cursor(last_seq_param)
        hub, bus = self.r.hub, self.r.bus
        await hub.join(self.session_id, self.outbox)  # first: nothing falls before the head
        expiry: asyncio.TimerHandle | None = None
        lease = Lease(self.session_id, self.user, self.id)
        present = False
        try:
            head = await bus.session_head(self.session_id)
            recovered: bool | None = None
            if last_seq is not None:
                recovered = can_resume(last_seq, *await bus.stream_bounds())
                self.r.metrics.resumes.labels(str(recovered).lower()).inc()
            await self._send(
                ReadyFrame(
                    session_id=self.session_id,
                    participant=self.user,
                    last_seq=head,
                    recovered=recovered,
                ).model_dump_json()
            )
            if last_seq_param is not None and last_seq is None:
                await self._send(
                    ErrorFrame(
                        code="bad_frame",
                        detail="last_seq must be a non-negative integer; not resumed",
                    ).model_dump_json()
                )
            if recovered and last_seq is not None:
                await self._replay(last_seq, head)
            present = await self._enter()
            self.r.leases.hold(lease)
            self._live_after = head
            self._wake_sender()  # for what queued up meanwhile
            if self.expires_at is not None:
                expiry = self._close_when_expired(self.expires_at)
            await self._receive()
        except WebSocketDisconnect:
            pass
        except (Unavailable, TimeoutError) as exc:
            log.warning("closing a connection: %s", exc)
            await self._close(CLOSE_TRY_AGAIN_LATER, "broker unavailable; resume with last_seq")
        finally:
            self.r.leases.release(lease)
            if expiry is not None:
                expiry.cancel()
            self._live_after = None
            for task in (self._sender, self._closing):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(
                        asyncio.CancelledError, WebSocketDisconnect, RuntimeError
                    ):
                        await task
            await hub.leave(self.session_id, self.outbox)
            if present:
                await self._leave()

    async def _replay(self, after: int, through: int) -> None:
        batch: list[Outgoing] = []
        async for item in replay(self.r.bus.js, self.session_id, after, through):
            batch.append(item)
            if len(batch) >= REPLAY_BATCH:
                await self._send_all(batch)
        await self._send_all(batch)

    def _wake_sender(self) -> None:
        """Start a sender if the connection is live and none runs: an idle connection has no
        task of its own besides its receiver."""
        if self._live_after is not None and self._sender is None:
            self._sender = asyncio.create_task(self._send_queued(self._live_after))

    async def _send_queued(self, after: int) -> None:
        """Forward live frames newer than `after` until none is queued, merged when they queue
        up; on overflow, send what is queued and close with 1013 (the client resumes from its
        last `seq`)."""
        outbox = self.outbox
        try:
            while items := outbox.drain():
                await self._send_all([i for i in items if i.seq is None or i.seq > after])
            if outbox.overflowed or outbox.interrupted:
                self._live_after = None  # nothing more is sent
                if outbox.overflowed:
                    self.r.metrics.slow_closes.inc()
                    reason = "client too slow; resume with last_seq"
                else:
                    reason = "broker connection lost; resume with last_seq"
                await self._close(CLOSE_TRY_AGAIN_LATER, reason)
        except (WebSocketDisconnect, RuntimeError, OSError):
            self._live_after = None  # the client is gone; the receiver ends the connection
        finally:
            self._sender = None  # a finished task is not kept for the idle time that follows

    async def _receive(self) -> None:
        max_bytes = self.r.settings.max_frame_bytes
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            raw = message.get("text")
            if raw is None:
                raw = message.get("bytes") or b""
            try:
                frame = parse_client_frame(raw, max_bytes=max_bytes)
            except FrameError as exc:
                self.r.metrics.frames_in.labels(exc.code).inc()
                await self._send(ErrorFrame(code=exc.code, detail=exc.detail).model_dump_json())
                continue
            self.r.metrics.frames_in.labels(frame.type).inc()
            await self._handle(frame)

    async def _handle(self, frame: ClientFrame) -> None:
        bus = self.r.bus
        match frame:
            case MessageFrame():
                await self._store(frame)
            case CancelFrame():
                try:
                    await policy.cancel(self.r.redis, bus, self.session_id, frame.message_id)
                except RedisError:  # the workers still hear the broadcast
                    await bus.cancel(self.session_id, frame.message_id)
            case TypingFrame():
                await bus.relay_typing(
                    self.session_id,
                    TypingRelay(participant=self.user, state=frame.state, origin=self.id),
                )
            case PingFrame():
                await self._send(PongFrame().model_dump_json())
            case _:
                assert_never(frame)

    async def _store(self, frame: MessageFrame) -> None:
        """Store the message (its echo acknowledges it), once the limits and the session's
        policy agree. Without Redis nothing is stored: limits fail closed."""
        session = self.session
        try:
            refusal = await self._admit(frame)
            if refusal is not None:
                self.r.metrics.refusals.labels(refusal.code).inc()
                await self._send(refusal.model_dump_json())
                return
            with TRACER.start_as_current_span(
                "tokenwire.message",
                attributes={"session_id": self.session_id, "message_id": frame.message_id},
            ):
                seq, new = await self._publish(frame)
            if new and frame.reply:
                await policy.enqueue(self.r.redis, session.policy, self.session_id, seq)
        except (Unavailable, RedisError) as exc:
            log.warning("message refused, not stored: %s", exc)
            await self._send(
                ErrorFrame(
                    code="unavailable",
                    retry_after_s=1.0,
                    detail="message not stored; send it again",
                ).model_dump_json()
            )

    async def _publish(self, frame: MessageFrame) -> tuple[int, bool]:
        session = self.session
        return await self.r.bus.store_user_message(
            UserMessage(
                session_id=self.session_id,
                message_id=frame.message_id,
                participant=self.user,
                content=frame.content,
                reply=frame.reply,
                policy=session.policy,
                system_prompt=session.system_prompt,
            ),
            headers=telemetry.trace_headers(),
        )

    async def _admit(self, frame: MessageFrame) -> ErrorFrame | None:
        limits = self.r.limits
        refusal = await limits.message(self.user)
        if refusal is None and frame.reply:
            refusal = await limits.budget(self.user) or await limits.reply(
                self.session_id, frame.message_id
            )
        if refusal is not None:
            return ErrorFrame(
                code=refusal.code,
                detail=refusal.detail,
                retry_after_s=refusal.retry_after_s,
            )
        if frame.reply:
            return await policy.admit(
                self.r.redis, self.r.bus, self.session.policy, self.session_id
            )
        return None

    async def _enter(self) -> bool:
        """Record presence; announce the user if this is their first connection here."""
        try:
            first = await self.r.presence.enter(self.session_id, self.user, self.id)
        except RedisError as exc:
            log.warning("presence unavailable: %s", exc)
            return False
        if first:
            await self.r.bus.announce(
                self.session_id,
                PresenceChange(participant=self.user, state="joined", origin=self.id),
            )
        return True

    async def _leave(self) -> None:
        try:
            last = await self.r.presence.leave(self.session_id, self.user, self.id)
        except RedisError as exc:
            log.warning("presence unavailable: %s", exc)
            return
        if last:
            await self.r.bus.announce(
                self.session_id, PresenceChange(participant=self.user, state="left", origin=self.id)
            )

    def _close_when_expired(self, expires_at: float) -> asyncio.TimerHandle:
        """Close with 4401 when the token expires: the client reconnects with a fresh one.
        A timer, not a task: an idle connection should cost as little as it can."""

        def expired() -> None:
            self._closing = asyncio.create_task(self._close(CLOSE_UNAUTHORIZED, "token expired"))

        return asyncio.get_running_loop().call_later(max(expires_at - time.time(), 0), expired)

    async def refuse(self, refusal: Refusal) -> None:
        """Tell the client why (with when to retry), then close with 1013."""
        await self._send(
            ErrorFrame(
                code=refusal.code,
                detail=refusal.detail,
                retry_after_s=refusal.retry_after_s,
            ).model_dump_json()
        )
        await self._close(CLOSE_TRY_AGAIN_LATER, refusal.detail)

    async def _send_all(self, items: list[Outgoing]) -> None:
        frames = coalesce(items)
        if len(frames) < len(items):
            self.r.metrics.merged.inc(len(items) - len(frames))
        self.r.metrics.frames_out.inc(len(frames))
        for text in frames:
            await self._send(text)
        items.clear()

    async def _send(self, text: str) -> None:
        await self.ws.send_text(text)

    async def _close(self, code: int, reason: str) -> None:
        if self.ws.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                await self.ws.close(code=code, reason=reason)


def _cursor(value: str | None) -> int | None:
    """`?last_seq=` as a sequence, or None when absent or not a non-negative integer."""
    if value is None or not value.isdigit() or len(value) > 19:
        return None
    return int(value)


async def _refuse(ws: WebSocket, subprotocol: str | None, code: int, reason: str) -> None:
    """Accept, then close with `code`: browsers only see close codes of accepted sockets."""
    await ws.accept(subprotocol=subprotocol)
    await ws.close(code=code, reason=reason)
