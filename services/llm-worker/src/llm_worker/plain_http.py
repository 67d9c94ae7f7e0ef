"""An HTTP/1.1 client for model servers reached over plain HTTP (`http://`: the fake model, a
vLLM, llama.cpp or Ollama next to the workers), on asyncio's own sockets.

A model that streams paces its tokens, one socket read each. Through httpx, httpcore and h11
every read climbed seven async iterators and h11's event machinery: 116 to 122 µs of a
client's CPU per token paced at 50 a second. Here a read takes what the socket's protocol has
buffered and the chunked body is cut in place: 54 to 59 µs, parsing included (same fake
model, 50 streams at once). `https://` servers, and any server an `HTTP_PROXY` applies to, keep
httpx (TLS, proxies).

What it speaks: `POST` with a body of known length; answers framed by `Content-Length`,
chunked transfer coding (extensions and trailers skipped) or the end of the connection; `1xx`
interim answers skipped. Connections are kept between requests unless either side says
`Connection: close`, and let go after `keepalive_s` idle. Errors are httpx's exception types,
so callers handle both clients alike; a request sent on a kept connection that the server
closed without a byte of answer (its own idle timeout crossed the request on the wire) raises
`ClosedWhenReused`, which `llm_worker.upstream` sends again at once.
"""

import asyncio
import select
import time
from collections.abc import AsyncIterator, Mapping
from typing import cast

import httpx2

MAX_BUFFER = 1 << 20
"""Received bytes held before the socket stops being read."""
MAX_HEAD = 64 * 1024
"""The longest status line and headers accepted."""


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


class Response:
    """An answer whose head was read; its body is read with `aiter_bytes` (once), and
    `aclose` gives the connection back when the body was read whole and may be kept."""

    def __init__(
        self,
        client: "PlainHTTPClient",
        connection: Connection,
        status_code: int,
        headers: dict[str, str],
        rest: bytes,
    ) -> None:
        self.status_code = status_code
        self.headers = headers
        """Lower-case names; a repeated header keeps its last value."""
        self._client = client
        self._connection: Connection | None = connection
        self._buffer = rest
        self._complete = False
        self._keep = "close" not in headers.get("connection", "").lower()

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The body's bytes as they arrive; raises httpx's errors when it breaks off."""
        if self.status_code in (204, 304):
            body = self._sized(0)
        elif "chunked" in self.headers.get("transfer-encoding", "").lower():
            body = self._chunked()
        elif "content-length" in self.headers:
            body = self._sized(_length(self.headers["content-length"]))
        else:
            self._keep = False
            body = self._until_close()
        async for part in body:
            yield part
        self._complete = True

    async def _more(self) -> bytes:
        """The next bytes of the body; raises when the connection ends first."""
        assert self._connection is not None
        data = await self._connection.read(self._client.timeout_s)
        if not data:
            raise httpx2.RemoteProtocolError("the model server closed the body before its end")
        return data

    async def _sized(self, left: int) -> AsyncIterator[bytes]:
        data, self._buffer = self._buffer, b""
        while left > 0:
            if not data:
                data = await self._more()
            part, data = data[:left], data[left:]
            left -= len(part)
            yield part
        self._buffer = data

    async def _chunked(self) -> AsyncIterator[bytes]:
        buffer = self._buffer
        while True:
            while (end := buffer.find(b"\r\n")) < 0:
                if len(buffer) > MAX_HEAD:
                    raise httpx2.RemoteProtocolError("a malformed chunk from the model server")
                buffer += await self._more()
            size = _chunk_size(buffer[:end])
            buffer = buffer[end + 2 :]
            if size == 0:
                await self._trailers(buffer)
                return
            while len(buffer) < size:  # a chunk in parts: each part as it comes
                if buffer:
                    yield buffer
                    size -= len(buffer)
                buffer = await self._more()
            yield buffer[:size]
            buffer = buffer[size:]
            while len(buffer) < 2:
                buffer += await self._more()
            if buffer[:2] != b"\r\n":
                raise httpx2.RemoteProtocolError("a malformed chunk from the model server")
            buffer = buffer[2:]

    async def _trailers(self, buffer: bytes) -> None:
        while not (buffer.startswith(b"\r\n") or b"\r\n\r\n" in buffer):
            if len(buffer) > MAX_HEAD:
                raise httpx2.RemoteProtocolError("the model server's trailers are too long")
            buffer += await self._more()
        self._buffer = (
            buffer[2:] if buffer.startswith(b"\r\n") else buffer.partition(b"\r\n\r\n")[2]
        )

    async def _until_close(self) -> AsyncIterator[bytes]:
        assert self._connection is not None
        data, self._buffer = self._buffer, b""
        while data:
            yield data
            data = await self._connection.read(self._client.timeout_s)

    async def aclose(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if self._complete and self._keep and not self._buffer:
            self._client.give_back(connection)
        else:
            connection.close()
            self._client.forget(connection)


def _length(value: str) -> int:
    if not value.strip().isdigit():
        raise httpx2.RemoteProtocolError(f"a malformed Content-Length: {value!r}")
    return int(value)


def _chunk_size(line: bytes) -> int:
    try:
        return int(line.split(b";", 1)[0].strip(), 16)
    except ValueError:
        raise httpx2.RemoteProtocolError("a malformed chunk size from the model server") from None


class PlainHTTPClient:
    """Requests to one `http://host:port` over kept connections (at most `max_connections`
    open at once; a request waits for one beyond that)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout_s: float,
        connect_timeout_s: float,
        max_connections: int,
        keepalive_s: float,
    ) -> None:
        self.host, self.port = host, port
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.keepalive_s = keepalive_s
        self._authority = host if port == 80 else f"{host}:{port}"
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: list[Connection] = []
        self._busy: set[Connection] = set()

    async def post(self, path: str, content: bytes, headers: Mapping[str, str]) -> Response:
        """Send the request and read the answer's head; the body is the caller's to read, and
        `Response.aclose` must follow."""
        await self._slots.acquire()
        try:
            connection = await self._connection()
            try:
                await connection.write(
                    _request(self._authority, path, content, headers), self.timeout_s
                )
                return await self._answer(connection)
            except BaseException:
                connection.close()
                self._busy.discard(connection)
                raise
        except BaseException:
            self._slots.release()
            raise

    async def _connection(self) -> Connection:
        while self._idle:
            connection = self._idle.pop()
            if connection.usable(self.keepalive_s):
                self._busy.add(connection)
                return connection
            connection.close()
        connection = await self._connect()
        self._busy.add(connection)
        return connection

    async def _connect(self) -> Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                transport, wire = await loop.create_connection(_Wire, self.host, self.port)
        except TimeoutError:
            raise httpx2.ConnectTimeout(f"no connection to {self._authority} in time") from None
        except OSError as exc:
            raise httpx2.ConnectError(str(exc) or type(exc).__name__) from exc
        return Connection(wire, transport)

    async def _answer(self, connection: Connection) -> Response:
        """Read the head of the final answer (interim `1xx` ones are skipped)."""
        buffer = b""
        while True:
            while (end := buffer.find(b"\r\n\r\n")) < 0:
                if len(buffer) > MAX_HEAD:
                    raise httpx2.RemoteProtocolError("the model server's headers are too long")
                data = await connection.read(self.timeout_s)
                if not data:
                    if not buffer and connection.answered:
                        raise ClosedWhenReused("the model server closed a kept connection")
                    raise httpx2.RemoteProtocolError("the model server closed without an answer")
                buffer += data
            status, headers = _head(buffer[:end])
            buffer = buffer[end + 4 :]
            if not 100 <= status < 200:
                return Response(self, connection, status, headers, buffer)

    def give_back(self, connection: Connection) -> None:
        self._busy.discard(connection)
        connection.answered += 1
        connection.idle_since = time.monotonic()
        self._idle.append(connection)
        self._slots.release()

    def forget(self, connection: Connection) -> None:
        self._busy.discard(connection)
        self._slots.release()

    async def aclose(self) -> None:
        for connection in [*self._idle, *self._busy]:
            connection.close()
        self._idle.clear()
        self._busy.clear()


def _request(authority: str, path: str, content: bytes, headers: Mapping[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {authority}", f"Content-Length: {len(content)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + content


def _head(raw: bytes) -> tuple[int, dict[str, str]]:
    """The status and headers of an answer's head."""
    status_line, *lines = raw.decode("latin-1").split("\r\n")
    version, _, rest = status_line.partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise httpx2.RemoteProtocolError(f"not an HTTP/1.1 answer: {status_line[:80]!r}")
    headers: dict[str, str] = {}
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon:
            raise httpx2.RemoteProtocolError(f"a malformed header line: {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    if version == "HTTP/1.0" and "keep-alive" not in headers.get("connection", "").lower():
        headers["connection"] = "close"
    return int(code), headers
