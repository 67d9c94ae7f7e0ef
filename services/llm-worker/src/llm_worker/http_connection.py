"""One kept-alive TCP connection to a model server, on asyncio's own sockets: a protocol
that buffers what arrives (and stops reading past `MAX_BUFFER`), and a `Connection` that
writes a request, reads what arrived within a time limit, and tells whether it may be used
again. Errors are httpx's exception types."""

import asyncio
import select
import time
from typing import cast

import httpx2

MAX_BUFFER = 1 << 20
"""Received bytes held before the socket stops being read."""


class ClosedWhenReused(httpx2.NetworkError):
    """A connection that had answered a request before closed before a byte of the answer to
    the next one: the server's idle timeout crossed the request, which no handler read."""


class _Wire(asyncio.Protocol):
    """The socket's state: received bytes, end of stream, a reader or writer waiting."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.received = bytearray()
        self.ended = False
        self.error: BaseException | None = None
        self.reader: asyncio.Future[None] | None = None
        self.writer: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.received += data
        if len(self.received) > MAX_BUFFER and self.transport is not None:
            self.transport.pause_reading()
        self._wake_reader()

    def eof_received(self) -> bool:
        self.ended = True
        self._wake_reader()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended = True
        self.error = exc
        self._wake_reader()
        if self.writer is not None and not self.writer.done():
            self.writer.set_result(None)

    def pause_writing(self) -> None:
        self.writer = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self.writer is not None and not self.writer.done():
            self.writer.set_result(None)
        self.writer = None

    def _wake_reader(self) -> None:
        if self.reader is not None and not self.reader.done():
            self.reader.set_result(None)


class Connection:
    """One kept-alive TCP connection: write a request, read what arrived."""

    def __init__(self, wire: _Wire, transport: asyncio.Transport) -> None:
        self._wire = wire
        self._transport = transport
        self.answered = 0
        """Requests answered whole on this connection."""
        self.idle_since = time.monotonic()

    async def write(self, data: bytes, within_s: float) -> None:
        if self._transport.is_closing():
            if self.answered:
                raise ClosedWhenReused("the model server closed a kept connection")
            raise httpx2.WriteError("the connection to the model server is closed")
        self._transport.write(data)
        if self._wire.writer is not None:
            try:
                async with asyncio.timeout(within_s):
                    await self._wire.writer
            except TimeoutError:
                raise httpx2.WriteTimeout("the model server took nothing in time") from None

    async def read(self, within_s: float) -> bytes:
        """What arrived (waiting up to `within_s` for something); b"" at the end of stream."""
        wire = self._wire
        if not wire.received and not wire.ended:
            await self._wait(within_s)
        if not wire.received:
            if wire.error is not None:
                raise httpx2.ReadError(str(wire.error) or type(wire.error).__name__)
            return b""
        data = bytes(wire.received)
        paused = len(wire.received) > MAX_BUFFER
        wire.received.clear()
        if paused:
            self._transport.resume_reading()
        return data

    async def _wait(self, within_s: float) -> None:
        loop = asyncio.get_running_loop()
        waiter = self._wire.reader = loop.create_future()
        timer = loop.call_later(within_s, _expire, waiter)
        try:
            await waiter
        except TimeoutError:
            raise httpx2.ReadTimeout("the model server sent nothing in time") from None
        finally:
            self._wire.reader = None
            timer.cancel()

    def usable(self, keepalive_s: float) -> bool:
        """Idle for less than `keepalive_s`, and neither closed nor sent to out of turn (a
        close the event loop has not read yet counts)."""
        wire = self._wire
        if wire.ended or wire.received or self._transport.is_closing():
            return False
        if time.monotonic() - self.idle_since >= keepalive_s:
            return False
        sock = self._transport.get_extra_info("socket")
        return sock is not None and not select.select([sock], [], [], 0)[0]

    def close(self) -> None:
        self._transport.close()


def _expire(waiter: "asyncio.Future[None]") -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


async def connect(host: str, port: int, *, within_s: float) -> Connection:
    """A new connection to `host:port`; raises httpx's `ConnectTimeout` or `ConnectError`."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(within_s):
            transport, wire = await loop.create_connection(_Wire, host, port)
    except TimeoutError:
        raise httpx2.ConnectTimeout(f"no connection to {host}:{port} in time") from None
    except OSError as exc:
        raise httpx2.ConnectError(str(exc) or type(exc).__name__) from exc
    return Connection(wire, transport)
