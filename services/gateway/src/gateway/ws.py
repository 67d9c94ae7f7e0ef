"""The WebSocket endpoint `/v1/sessions/{session_id}/ws`: handshake, `ready`, frames both ways.

Authentication and membership are checked before the connection joins its session; a refusal
is a close with 4401 (no valid token) or 4403 (not a member, or no such session). A bad frame
gets an `error` frame and the connection stays open.
"""

import asyncio
import contextlib
import logging
from typing import assert_never

from fastapi import WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from gateway.auth import AuthError, token_from_handshake, verify_token
from gateway.bus import Bus, Unavailable
from gateway.hub import OVERFLOW, Outbox, SessionHub
from gateway.settings import GatewaySettings
from shared import subjects
from shared.events import UserMessage
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

CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_INTERNAL = 1011


async def serve(
    ws: WebSocket, session_id: str, settings: GatewaySettings, bus: Bus, hub: SessionHub
) -> None:
    subprotocol = SUBPROTOCOL if SUBPROTOCOL in ws.scope.get("subprotocols", []) else None
    try:
        user = verify_token(
            token_from_handshake(ws.headers, ws.scope.get("subprotocols", []), ws.query_params),
            settings.secret,
        )
    except AuthError as exc:
        await _refuse(ws, subprotocol, CLOSE_UNAUTHORIZED, str(exc))
        return
    try:
        session = await bus.get_session(session_id) if subjects.is_session_id(session_id) else None
    except Unavailable:
        await _refuse(ws, subprotocol, CLOSE_TRY_AGAIN_LATER, "sessions unavailable; retry")
        return
    if session is None or user not in session.members:
        await _refuse(ws, subprotocol, CLOSE_FORBIDDEN, "not a member of this session")
        return

    await ws.accept(subprotocol=subprotocol)
    outbox = Outbox(settings.send_queue_frames)
    await hub.join(session_id, outbox)  # before reading the head: nothing falls in between
    sender: asyncio.Task[None] | None = None
    try:
        head = await bus.session_head(session_id)
        await ws.send_text(
            ReadyFrame(session_id=session_id, participant=user, last_seq=head).model_dump_json()
        )
        sender = asyncio.create_task(_send_live(ws, outbox, after_seq=head))
        await _receive(ws, session_id, user, settings, bus)
    except WebSocketDisconnect:
        pass
    except Unavailable as exc:
        log.warning("closing a connection: %s", exc)
        await _close(ws, CLOSE_TRY_AGAIN_LATER, "broker unavailable; reconnect with last_seq")
    finally:
        await hub.leave(session_id, outbox)
        if sender is not None:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
                await sender


async def _receive(
    ws: WebSocket, session_id: str, user: str, settings: GatewaySettings, bus: Bus
) -> None:
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        raw = message.get("text") if message.get("text") is not None else message.get("bytes")
        try:
            frame = parse_client_frame(raw or b"", max_bytes=settings.max_frame_bytes)
        except FrameError as exc:
            await _send_error(ws, ErrorFrame(code=exc.code, detail=exc.detail))
            continue
        await _handle(ws, frame, session_id, user, bus)


async def _handle(ws: WebSocket, frame: ClientFrame, session_id: str, user: str, bus: Bus) -> None:
    match frame:
        case MessageFrame():
            event = UserMessage(
                session_id=session_id,
                message_id=frame.message_id,
                participant=user,
                content=frame.content,
                reply=frame.reply,
            )
            try:
                await bus.store_user_message(event)  # the echo on the live path acknowledges it
            except Unavailable:
                await _send_error(
                    ws,
                    ErrorFrame(
                        code="unavailable",
                        retry_after_s=1.0,
                        detail="message not stored; send it again",
                    ),
                )
        case CancelFrame():
            await bus.cancel(session_id, frame.message_id)
        case TypingFrame():
            pass  # relayed once presence and typing land; accepted so clients can send it now
        case PingFrame():
            await ws.send_text(PongFrame().model_dump_json())
        case _:
            assert_never(frame)


async def _send_live(ws: WebSocket, outbox: Outbox, *, after_seq: int) -> None:
    """Forward the session's live frames newer than `after_seq`; close 1013 on overflow."""
    while True:
        seq, text = await outbox.queue.get()
        if (seq, text) == OVERFLOW:
            await _close(ws, CLOSE_TRY_AGAIN_LATER, "client too slow; resume with last_seq")
            return
        if seq > after_seq:
            await ws.send_text(text)


async def _send_error(ws: WebSocket, frame: ErrorFrame) -> None:
    await ws.send_text(frame.model_dump_json())


async def _refuse(ws: WebSocket, subprotocol: str | None, code: int, reason: str) -> None:
    """Accept, then close with `code`: browsers only see close codes of accepted sockets."""
    await ws.accept(subprotocol=subprotocol)
    await ws.close(code=code, reason=reason)


async def _close(ws: WebSocket, code: int, reason: str) -> None:
    if ws.application_state == WebSocketState.CONNECTED:
        with contextlib.suppress(RuntimeError):
            await ws.close(code=code, reason=reason)
