"""A model server's answer read from a `Connection` (`http_connection`): the head's status
and headers, and the body as it arrives — framed by `Content-Length`, chunked transfer coding
(extensions and trailers skipped) or the end of the connection. Errors are httpx's exception
types."""

from collections.abc import AsyncIterator, Callable

import httpx2

from llm_worker.http_connection import Connection

MAX_HEAD = 64 * 1024
"""The longest status line and headers, or trailers, accepted."""


class Response:
    """An answer whose head was read; its body is read with `aiter_bytes` (once), and
    `aclose` releases the connection: to be used again when the body was read whole and
    neither side said `Connection: close`."""

    def __init__(
        self,
        connection: Connection,
        status_code: int,
        headers: dict[str, str],
        rest: bytes,
        *,
        within_s: float,
        release: Callable[[Connection, bool], None],
    ) -> None:
        self.status_code = status_code
        self.headers = headers
        """Lower-case names; a repeated header keeps its last value."""
        self._within_s = within_s
        self._release = release
        """Called once with the connection and whether it may be used again."""
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
        data = await self._connection.read(self._within_s)
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
            data = await self._connection.read(self._within_s)

    async def aclose(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        self._release(connection, self._complete and self._keep and not self._buffer)


def _length(value: str) -> int:
    if not value.strip().isdigit():
        raise httpx2.RemoteProtocolError(f"a malformed Content-Length: {value!r}")
    return int(value)


def _chunk_size(line: bytes) -> int:
    try:
        return int(line.split(b";", 1)[0].strip(), 16)
    except ValueError:
        raise httpx2.RemoteProtocolError("a malformed chunk size from the model server") from None
