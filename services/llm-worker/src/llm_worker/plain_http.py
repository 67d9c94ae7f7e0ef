"""An HTTP transport for model servers reached over plain HTTP (`http://`: the fake model, a
vLLM, llama.cpp or Ollama next to the workers), on asyncio's own sockets.

httpx reads through anyio, which opens a cancel scope and asks which async library runs for
every read of a streamed response; a model that streams a token per segment pays that per
token. Here a read takes what the socket's protocol has buffered, and its timeout is one
timer: reading a stream paced at 50 tokens a second cost a client 85 to 121 µs of CPU per
token against 122 to 168 through anyio (four paired runs against the fake model). `https://`
servers keep httpx's own transport (TLS; proxies from the
environment apply to both).

The connections are httpcore's pool over `AsyncioBackend`, a network backend (httpcore's
public interface); `PlainHTTPTransport` is httpx's transport with that pool in place of its
default one. A request sent on a kept connection that the server closed without a byte of
answer (its own idle timeout crossed the request on the wire) raises `ClosedWhenReused`,
which `llm_worker.upstream` sends again at once.
"""

# httpcore's interface takes timeouts as arguments.
# ruff: noqa: ASYNC109

import asyncio
import select
import socket
from collections.abc import Iterable
from typing import Any, cast

import httpcore2
import httpx2

MAX_BUFFER = 1 << 20
"""Received bytes held before the socket stops being read."""
WRITE_BUFFER = 1 << 16
"""Bytes queued for the socket beyond which a write waits for them to drain."""


class ClosedWhenReused(httpcore2.NetworkError):
    """A connection that had answered a request before closed before a byte of the answer to
    the next one: the server's idle timeout crossed the request, which no handler read."""


class _Connection(asyncio.Protocol):
    """The socket's state: received bytes, end of stream, a reader or writer waiting."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.received: list[bytes] = []
        self.size = 0
        self.ended = False
        self.error: BaseException | None = None
        self.reader: asyncio.Future[None] | None = None
        self.writer: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.received.append(data)
        self.size += len(data)
        if self.size > MAX_BUFFER and self.transport is not None:
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


class AsyncioStream(httpcore2.AsyncNetworkStream):
    def __init__(self, connection: _Connection) -> None:
        self._c = connection
        self._reused = False
        """Whether an earlier request on this connection was answered."""
        self._heard = False
        """Whether a byte arrived since the request being sent or answered was written."""

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        c = self._c
        if not c.received and not c.ended:
            await self._wait_for_data(timeout)
        if not c.received:
            if self._reused and not self._heard:
                raise ClosedWhenReused("the model server closed a kept connection unanswered")
            if c.error is not None:
                raise httpcore2.ReadError(str(c.error) or type(c.error).__name__)
            return b""
        self._heard = True
        data = b"".join(c.received) if len(c.received) > 1 else c.received[0]
        c.received.clear()
        if len(data) > max_bytes:
            c.received.append(data[max_bytes:])
            data = data[:max_bytes]
        was_paused = c.size > MAX_BUFFER
        c.size -= len(data)
        if was_paused and c.size <= MAX_BUFFER and c.transport is not None:
            c.transport.resume_reading()
        return data

    async def _wait_for_data(self, timeout: float | None) -> None:
        loop = asyncio.get_running_loop()
        waiter = self._c.reader = loop.create_future()
        timer = None if timeout is None else loop.call_later(timeout, _expire, waiter)
        try:
            await waiter
        except TimeoutError:
            raise httpcore2.ReadTimeout("the model server sent nothing in time") from None
        finally:
            self._c.reader = None
            if timer is not None:
                timer.cancel()

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        c = self._c
        if self._heard:  # the first write of a request after an answer
            self._reused, self._heard = True, False
        if c.transport is None or c.transport.is_closing():
            if self._reused:
                raise ClosedWhenReused("the model server closed a kept connection")
            raise httpcore2.WriteError("the connection is closed")
        c.transport.write(buffer)
        if c.writer is not None:
            try:
                async with asyncio.timeout(timeout):
                    await c.writer
            except TimeoutError:
                raise httpcore2.WriteTimeout("the model server took nothing in time") from None

    async def aclose(self) -> None:
        if self._c.transport is not None:
            self._c.transport.close()

    async def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore2.AsyncNetworkStream:
        raise httpcore2.ConnectError("plain HTTP only: https:// servers use httpx's transport")

    def get_extra_info(self, info: str) -> Any:
        c = self._c
        if c.transport is None:
            return None
        if info == "is_readable":  # an idle kept-alive connection the server closed, or wrote to
            return c.ended or bool(c.received) or _readable(c.transport.get_extra_info("socket"))
        if info == "socket":
            return c.transport.get_extra_info("socket")
        if info == "client_addr":
            return c.transport.get_extra_info("sockname")
        if info == "server_addr":
            return c.transport.get_extra_info("peername")
        return None


def _readable(sock: socket.socket | None) -> bool:
    """Whether the kernel holds bytes or an end of stream the event loop has not read yet."""
    if sock is None or sock.fileno() < 0:
        return True
    return bool(select.select([sock], [], [], 0)[0])


def _expire(waiter: "asyncio.Future[None]") -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class AsyncioBackend(httpcore2.AsyncNetworkBackend):
    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        connection = _Connection()
        try:
            async with asyncio.timeout(timeout):
                await loop.create_connection(
                    lambda: connection,
                    host,
                    port,
                    local_addr=(local_address, 0) if local_address else None,
                )
        except TimeoutError:
            raise httpcore2.ConnectTimeout(f"no connection to {host}:{port} in time") from None
        except OSError as exc:
            raise httpcore2.ConnectError(str(exc)) from exc
        assert connection.transport is not None
        sock: socket.socket | None = connection.transport.get_extra_info("socket")
        for option in socket_options or ():
            if sock is not None:
                sock.setsockopt(*option)
        return AsyncioStream(connection)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore2.AsyncNetworkStream:
        raise httpcore2.ConnectError("plain HTTP over TCP only")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class PlainHTTPTransport(httpx2.AsyncHTTPTransport):
    """httpx's transport (its request and response handling, its errors) with its pool of
    connections made by `AsyncioBackend`."""

    def __init__(self, *, limits: httpx2.Limits) -> None:
        super().__init__(limits=limits)
        self._pool = httpcore2.AsyncConnectionPool(
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=AsyncioBackend(),
        )
