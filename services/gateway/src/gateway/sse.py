"""Server-sent events beside the WebSocket: `GET /v1/sessions/{sid}/events` streams the same
frames (`id: <seq>` on stored events, `event: <type>`, `data: <the frame's JSON>`), resumes from
`Last-Event-ID` or `?last_seq` without gap or duplicate, and sends a comment every
`TOKENWIRE_SSE_HEARTBEAT_S` so that proxies keep it open. It is the WebSocket's
`ConnectionProtocol` behind another adapter: the same authentication (a bearer header, or
`?token=` for `EventSource`), membership, limits, replay and closes (the stream ends; the
client reconnects with its last id). Sending and cancelling are REST calls (`gateway.api`)."""

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import StreamingResponse

from gateway.auth import AuthError, Principal, token_from_handshake
from gateway.bus import Unavailable
from gateway.connection import ConnectionProtocol, cursor
from gateway.credentials import Expiry
from gateway.deps import Resources, ResourcesDep, member_session
from gateway.outbox import Outbox
from gateway.replay import batches
from shared import rpc

router = APIRouter(tags=["sessions"])


@router.get(
    "/v1/sessions/{session_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def events(session_id: str, request: Request, resources: ResourcesDep) -> StreamingResponse:
    """The session's frames as server-sent events, from `Last-Event-ID` (or `?last_seq`) on
    when given. 401 without a valid token, 403 for someone not a member, 429 over the
    connections a user may hold."""
    principal = await _principal(request, resources)
    session = await member_session(resources, session_id, principal.user_id)
    connection = secrets.token_urlsafe(8)
    refusal = await resources.limits.open_connection(principal.user_id, connection)
    if refusal is not None:
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, refusal.detail)
    last = request.headers.get("last-event-id") or request.query_params.get("last_seq")
    stream = _Stream(resources, session, principal, connection)
    return StreamingResponse(
        stream.run(last),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _principal(request: Request, resources: Resources) -> Principal:
    try:
        token = token_from_handshake(request.headers, [], request.query_params)
        principal = await resources.auth.principal(token)
    except AuthError as exc:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, str(exc)) from None
    if resources.revocations.covers(principal):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "token revoked")
    return principal


def sse(frame: str) -> str:
    """One frame as an event: its `seq` as the id of a stored event, its `type` as the name."""
    parsed = json.loads(frame)
    head = f"id: {parsed['seq']}\n" if parsed.get("seq") is not None else ""
    return f"{head}event: {parsed['type']}\ndata: {frame}\n\n"


class _Stream:
    """One event stream: joined to the session's live path before its head is read, then
    replayed, then live, like a socket (`gateway.ws.Connection`)."""

    def __init__(
        self, r: Resources, session: rpc.SessionInfo, principal: Principal, connection: str
    ) -> None:
        self.r, self.session_id, self.principal = r, session.session_id, principal
        self.connection = connection
        self.protocol = ConnectionProtocol(
            self.session_id, connection, max_frame_bytes=1, metrics=r.metrics
        )
        self.protocol.join(principal.user_id, session)
        self.ready = asyncio.Event()
        self.outbox = Outbox(
            r.settings.send_queue_frames, owner=connection, on_ready=self.ready.set
        )
        self.ended = asyncio.Event()
        self.expiry = Expiry(self.revoke)

    async def run(self, last: str | None) -> AsyncIterator[str]:
        hub = self.r.hub
        await hub.join(self.session_id, self.outbox)
        self.r.revocations.hold(self)
        self.expiry.set(self.principal.expires_at)
        try:
            async for chunk in self._frames(last):
                yield chunk
        except (Unavailable, TimeoutError):
            yield ": the broker did not answer; reconnect with Last-Event-ID\n\n"
        finally:
            self.expiry.cancel()
            self.r.revocations.release(self)
            await hub.leave(self.session_id, self.outbox)
            with contextlib.suppress(Exception):
                await self.r.limits.close_connection(self.principal.user_id, self.connection)

    async def _frames(self, last: str | None) -> AsyncIterator[str]:
        bus = self.r.bus
        head = await bus.session_head(self.session_id)
        bounds = await bus.stream_bounds() if cursor(last) is not None else None
        for frame in self.protocol.open(head, last, bounds):
            yield sse(frame)
        if self.protocol.replay_after is not None:
            after = self.protocol.replay_after
            async for batch in batches(bus.js, self.session_id, after, head):
                for frame in self.protocol.replayed(batch):
                    yield sse(frame)
        self.protocol.go_live()
        async for chunk in self._live():
            yield chunk

    async def _live(self) -> AsyncIterator[str]:
        heartbeat_s = self.r.settings.sse_heartbeat_s
        while not self.ended.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.ready.wait(), heartbeat_s)
            self.ready.clear()
            items = self.outbox.drain()
            if not items:
                yield ": heartbeat\n\n"
                continue
            for frame in self.protocol.forward(items):
                yield sse(frame)
            close = self.protocol.drained(
                overflowed=self.outbox.overflowed, interrupted=self.outbox.interrupted
            )
            if close is not None:
                yield f": {close.reason}\n\n"
                return

    # What revocations, membership changes and the token's expiry call, as on a socket: the
    # stream ends (the client reconnects, or signs in again).
    def revoke(self) -> None:
        self.ended.set()
        self.ready.set()

    def evict(self, reason: str = "no longer a member of the session") -> None:
        self.ended.set()
        self.ready.set()
