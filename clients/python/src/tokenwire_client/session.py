"""One session over WebSocket, kept open: when the connection drops (a gateway restarts, the
network blinks) it reconnects with backoff and resumes from the last frame seen, so that
`frames()` yields every stored frame once, in order (see `tokenwire_client.cursor`).

It stops for good only when the server says so: `SessionClosed` for 4401 (the token expired or
was revoked), 4403 (not a member, or the session was deleted), or a refused handshake.
"""

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, Self

import websockets
from websockets.asyncio.client import ClientConnection

from shared.frames import (
    SUBPROTOCOL,
    CancelFrame,
    ErrorFrame,
    MessageFrame,
    ReadyFrame,
    ServerFrame,
    StreamEndFrame,
    StreamErrorFrame,
    parse_server_frame,
)
from tokenwire_client.cursor import Cursor, backoff_s

FINAL_CLOSES = {4401, 4403, 1008}
"""Close codes after which reconnecting cannot help."""


class SessionClosed(Exception):
    """The server ended the session for this client (`code`, `reason`)."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"closed {code}: {reason}")
        self.code, self.reason = code, reason


class Session:
    """`async with client.session(sid) as session:` — then `send`, `cancel`, `ask`, `frames`."""

    def __init__(
        self,
        ws_url: str,
        token: str,
        *,
        last_seq: int | None = None,
        backoff: Callable[[int], float] = backoff_s,
        send_timeout_s: float = 30.0,
    ) -> None:
        self.url = ws_url
        self.token = token
        self.cursor = Cursor(last_seq)
        self.reconnects = 0
        """How many times the connection was made again."""
        self._backoff = backoff
        self._send_timeout_s = send_timeout_s
        self._ws: ClientConnection | None = None
        self._open = asyncio.Event()
        self._frames: asyncio.Queue[ServerFrame | SessionClosed] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self._closing = False

    async def __aenter__(self) -> Self:
        await self._connect()
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *_: object) -> None:
        self._closing = True
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._ws is not None:
            await self._ws.close()

    async def frames(self) -> AsyncIterator[ServerFrame]:
        """Every frame, each stored one once, across reconnections; a `ready` frame with
        `recovered` False says the stream could not replay what was missed (read history).
        Raises `SessionClosed` when the server ends the session."""
        while True:
            item = await self._frames.get()
            if isinstance(item, SessionClosed):
                raise item
            yield item

    async def send(self, content: str, *, message_id: str | None = None, reply: bool = True) -> str:
        """Send a message (once connected); its id. Sending again with the same id, after
        an error or a drop, stores it once."""
        mid = message_id or uuid.uuid4().hex
        frame = MessageFrame(type="message", message_id=mid, content=content, reply=reply)
        await self._send(frame.model_dump_json())
        return mid

    async def cancel(self, message_id: str) -> None:
        """Stop the reply to `message_id` (yours, or any as the session's owner)."""
        await self._send(CancelFrame(type="cancel", message_id=message_id).model_dump_json())

    async def ask(self, content: str, **send: Any) -> AsyncIterator[ServerFrame]:
        """Send `content` and yield its reply's frames up to its end (`stream_end` or
        `stream_error`), or the `error` that refused it; frames of other messages meanwhile
        are skipped, a `ready` frame with `recovered` False is yielded."""
        mid = await self.send(content, **send)
        async for frame in self.frames():
            if isinstance(frame, ReadyFrame):
                if frame.recovered is False:
                    yield frame
                continue
            if isinstance(frame, ErrorFrame):
                yield frame
                return
            if getattr(frame, "message_id", None) != mid:
                continue
            yield frame
            if isinstance(frame, StreamEndFrame | StreamErrorFrame):
                return

    async def reconnect(self) -> None:
        """Drop the connection now (the network changed, say): it is made again and resumed
        as after any drop."""
        if self._ws is not None and self._ws.transport is not None:
            self._open.clear()
            self._ws.transport.abort()

    async def _send(self, text: str) -> None:
        async with asyncio.timeout(self._send_timeout_s):
            while True:
                await self._open.wait()
                assert self._ws is not None
                try:
                    await self._ws.send(text)
                    return
                except websockets.ConnectionClosed:
                    self._open.clear()  # the reader reconnects; send then

    async def _connect(self) -> None:
        self._ws = await websockets.connect(
            self.url + self.cursor.query(),
            subprotocols=[websockets.Subprotocol(SUBPROTOCOL)],
            additional_headers={"Authorization": f"Bearer {self.token}"},
        )
        self._open.set()

    async def _read(self) -> None:
        while not self._closing:
            assert self._ws is not None
            try:
                async for raw in self._ws:
                    frame = parse_server_frame(raw)
                    if self.cursor.accept(frame):
                        self._frames.put_nowait(frame)
            except websockets.ConnectionClosed:
                pass
            self._open.clear()
            code = self._ws.close_code
            if code in FINAL_CLOSES:
                self._frames.put_nowait(SessionClosed(code, self._ws.close_reason or ""))
                return
            if not await self._reconnect():
                return

    async def _reconnect(self) -> bool:
        """Connect again, after a pause that grows with each failure; False when the server
        refuses the handshake (the session ends)."""
        for attempt in range(1_000_000):
            await asyncio.sleep(self._backoff(attempt))
            try:
                await self._connect()
            except websockets.InvalidStatus as refused:
                status = refused.response.status_code
                if status in (401, 403, 404):
                    self._frames.put_nowait(SessionClosed(status, "handshake refused"))
                    return False
            except (OSError, websockets.InvalidHandshake, TimeoutError):
                continue
            else:
                self.reconnects += 1
                return True
        return False
