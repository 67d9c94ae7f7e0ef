"""The WebSocket endpoint `/v1/sessions/{session_id}/ws`: the ASGI adapter around
`gateway.connection.ConnectionProtocol` (protocol in docs/protocol.md).

Authentication and membership are settled before the connection joins its session: a refusal
is a close with 4401 (no valid token), 4403 (not a member, or no such session) or 1013
(sessions unavailable). Then the protocol decides; this module reads the socket, the stream
and Redis for it, and carries out what it answers.
"""

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from typing import assert_never

from fastapi import WebSocket, WebSocketDisconnect
from redis.exceptions import RedisError
from starlette.websockets import WebSocketState

from gateway import command_runner, commands
from gateway.arrivals import arrive, depart
from gateway.auth import Principal
from gateway.bus import Unavailable
from gateway.connection import (
    Cancel,
    Close,
    ConnectionProtocol,
    Output,
    Reauthenticate,
    Relay,
    RunCommand,
    Submit,
    cursor,
)
from gateway.credentials import Expiry, authenticate, renewed
from gateway.deps import Resources
from gateway.leases import Lease
from gateway.origins import origin_allowed
from gateway.outbox import Outbox
from gateway.refusal import Refusal
from gateway.replay import batches
from gateway.sessions import SETTINGS_MAX_AGE_S
from shared import rpc, telemetry
from shared.frames import SUBPROTOCOL, AuthenticatedFrame

log = logging.getLogger(__name__)
TRACER = telemetry.tracer(__name__)


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
    protocol = ConnectionProtocol(
        session_id,
        secrets.token_urlsafe(8),
        max_frame_bytes=settings.max_frame_bytes,
        metrics=resources.metrics,
    )
    admitted = await authenticate(ws, protocol, offered, resources)
    await ws.accept(subprotocol=subprotocol)
    if isinstance(admitted, Close):  # accepted first: browsers only see close codes then
        await ws.close(code=admitted.code, reason=admitted.reason)
        return
    connection = Connection(ws, protocol, *admitted, resources)
    await connection.serve(ws.query_params.get("last_seq"))


class Connection:
    """One accepted socket: its protocol, its outbox, a sender while frames wait, its
    presence (kept alive by `Leases`) and its token's expiry timer."""

    def __init__(
        self,
        ws: WebSocket,
        protocol: ConnectionProtocol,
        principal: Principal,
        session: rpc.SessionInfo,
        resources: Resources,
    ) -> None:
        self.ws = ws
        self.protocol = protocol
        self.session = session
        self.session_id = protocol.session_id
        self.principal = principal
        self.user = principal.user_id
        self.expiry = Expiry(self._expired)
        self.id = protocol.connection_id
        self.r = resources
        self.outbox = Outbox(
            resources.settings.send_queue_frames, owner=self.id, on_ready=self._wake_sender
        )
        self._sender: asyncio.Task[None] | None = None
        self.present = False
        """Whether the connection is recorded in the session's presence."""
        self._closing: asyncio.Task[None] | None = None
        self.pace = commands.Pace()
        """The chat commands it may run a minute."""

    async def serve(self, cursor_param: str | None) -> None:
        """Count the connection against its user's limit, then run it."""
        limits = self.r.limits
        try:
            refusal = await limits.open_connection(self.user, self.id)
        except RedisError:
            refusal = Refusal("unavailable", "limits unavailable; retry", 1.0)
        if refusal is not None:
            frame, close = self.protocol.refuse(refusal)
            await self.send(frame)
            await self.close(close)
            return
        try:
            await self.run(cursor_param)
        finally:
            await depart(self.r, self.session_id, self.user, self.id, present=self.present)

    async def run(self, cursor_param: str | None) -> None:
        hub, bus = self.r.hub, self.r.bus
        await hub.join(self.session_id, self.outbox)  # first: nothing falls before the head
        lease = Lease(self.session_id, self.user, self.id)
        try:
            head = await bus.session_head(self.session_id)
            bounds = await bus.stream_bounds() if cursor(cursor_param) is not None else None
            for frame in self.protocol.open(head, cursor_param, bounds):
                await self.send(frame)
            if self.protocol.replay_after is not None:
                await self._replay(self.protocol.replay_after, head)
            self.present = await arrive(self.r, self.session_id, self.user, self.id)
            self.r.leases.hold(lease)
            self.protocol.go_live()
            self._wake_sender()  # for what queued up meanwhile
            self.expiry.set(self.principal.expires_at)
            self.r.revocations.hold(self)
            await self._receive()
        except WebSocketDisconnect:
            pass
        except (Unavailable, TimeoutError) as exc:
            log.warning("closing a connection: %s", exc)
            await self.close(self.protocol.unavailable())
        finally:
            self.r.leases.release(lease)
            self.r.revocations.release(self)
            self.expiry.cancel()
            self.protocol.gone()
            for task in (self._sender, self._closing):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(
                        asyncio.CancelledError, WebSocketDisconnect, RuntimeError
                    ):
                        await task
            await hub.leave(self.session_id, self.outbox)

    async def _replay(self, after: int, through: int) -> None:
        async for batch in batches(self.r.bus.js, self.session_id, after, through):
            await self._send_all(self.protocol.replayed(batch))

    def _wake_sender(self) -> None:
        """Start a sender if the connection is live and none runs: an idle connection has no
        task of its own besides its receiver."""
        if self.protocol.state == "live" and self._sender is None:
            self._sender = asyncio.create_task(self._send_queued())

    async def _send_queued(self) -> None:
        """Send what the outbox holds until it is empty (merged when items queued up); then
        close if the protocol says so."""
        outbox, protocol = self.outbox, self.protocol
        try:
            while items := outbox.drain():
                await self._send_all(protocol.forward(items))
            close = protocol.drained(overflowed=outbox.overflowed, interrupted=outbox.interrupted)
            if close is not None:
                await self.close(close)
        except (WebSocketDisconnect, RuntimeError, OSError):
            protocol.gone()  # the receiver ends the connection
        finally:
            self._sender = None  # a finished task is not kept for the idle time that follows

    async def _receive(self) -> None:
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            raw = message.get("text")
            if raw is None:
                raw = message.get("bytes") or b""
            output = self.protocol.receive(raw)
            if output is not None:
                await self._carry_out(output)

    async def _carry_out(self, output: Output) -> None:
        match output:
            case str():
                await self.send(output)
            case Submit(frame):
                with TRACER.start_as_current_span(
                    "tokenwire.message",
                    attributes={"session_id": self.session_id, "message_id": frame.message_id},
                ):
                    session = await self._current()
                    result = await self.r.submissions.submit(session, self.principal, frame)
                if (told := self.protocol.submitted(result)) is not None:
                    await self.send(told)
            case RunCommand(frame):
                if not self.pace.allow(time.monotonic()):
                    text = f"at most {self.pace.limit} commands a minute"
                    name = commands.parse(frame.content).name
                    await self.send(commands.result(frame.message_id, name, False, text))
                    return
                session = await self._current()
                await command_runner.run(self.r, session, self.principal, frame, self.send)
            case Cancel(message_id):
                denied = await self.r.submissions.cancel(self.session, self.principal, message_id)
                if denied is not None:
                    await self.send(self.protocol.refused(denied))
            case Reauthenticate(token):
                await self._reauthenticate(token)
            case Relay(typing):
                await self.r.bus.relay_typing(self.session_id, typing)
            case Close():
                await self.close(output)
            case _:
                assert_never(output)

    async def _current(self) -> rpc.SessionInfo:
        """The session as this gateway knows it now: its settings may have changed since the
        connection opened (announced changes reach the cache; kept as it was while persistence
        does not answer)."""
        with contextlib.suppress(Unavailable):
            known = await self.r.sessions.get(self.session_id, max_age_s=SETTINGS_MAX_AGE_S)
            self.session = known or self.session
        return self.session

    async def _reauthenticate(self, token: str) -> None:
        principal = await renewed(self.r.auth, self.r.revocations, self.principal, token)
        if isinstance(principal, Refusal):
            await self.send(self.protocol.refused(principal))
            return
        self.principal = principal  # the same user: its place among the held sockets stays
        self.expiry.set(principal.expires_at)
        frame = AuthenticatedFrame(participant=self.user, expires_at=principal.expires_at)
        await self.send(frame.model_dump_json())

    def _expired(self) -> None:
        self._end(self.protocol.expired)

    def revoke(self) -> None:
        """Its token was revoked: close with 4401."""
        self._end(self.protocol.revoked)

    def evict(self, reason: str = "no longer a member of the session") -> None:
        """Its user is no longer a member of the session, or the session was deleted: close
        with 4403."""
        self._end(lambda: self.protocol.evicted(reason))

    def _end(self, why: Callable[[], Close]) -> None:
        if self._closing is None and self.protocol.state != "closing":
            self._closing = asyncio.create_task(self.close(why()))

    async def _send_all(self, frames: list[str]) -> None:
        for text in frames:
            await self.send(text)

    async def send(self, text: str) -> None:
        await self.ws.send_text(text)

    async def close(self, close: Close) -> None:
        if self.ws.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                await self.ws.close(code=close.code, reason=close.reason)
