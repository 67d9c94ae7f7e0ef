"""An HTTP/1.1 client for model servers reached over plain HTTP (`http://`: the fake model, a
vLLM, llama.cpp or Ollama next to the workers), on asyncio's own sockets.

A model that streams paces its tokens, one socket read each. Through httpx, httpcore and h11
every read climbed seven async iterators and h11's event machinery: 116 to 145 µs of a
client's CPU per token paced at 50 a second, parsing included. Here a read takes what the
socket's protocol has buffered (`http_connection`) and the chunked body is cut in place
(`http_answer`): 70 to 73 µs (the fake model, 50 streams at once, in several runs each).
`https://` servers, and any server an `HTTP_PROXY` applies to, keep httpx (TLS, proxies).

What it speaks: `POST` with a body of known length; answers framed by `Content-Length`,
chunked transfer coding (extensions and trailers skipped) or the end of the connection; `1xx`
interim answers skipped. Connections are kept between requests unless either side says
`Connection: close`, and let go after `keepalive_s` idle. Errors are httpx's exception types,
so callers handle both clients alike; a request sent on a kept connection that the server
closed without a byte of answer (its own idle timeout crossed the request on the wire) raises
`ClosedWhenReused`, which `llm_worker.upstream` sends again at once.
"""

import asyncio
import time
from collections.abc import Mapping

import httpx2

from llm_worker.http_answer import MAX_HEAD, Response
from llm_worker.http_connection import ClosedWhenReused, Connection, connect

__all__ = ["ClosedWhenReused", "PlainHTTPClient", "Response"]


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
        connection = await connect(self.host, self.port, within_s=self.connect_timeout_s)
        self._busy.add(connection)
        return connection

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
                return Response(
                    connection,
                    status,
                    headers,
                    buffer,
                    within_s=self.timeout_s,
                    release=self._release,
                )

    def _release(self, connection: Connection, keep: bool) -> None:
        self._busy.discard(connection)
        self._slots.release()
        if keep:
            connection.answered += 1
            connection.idle_since = time.monotonic()
            self._idle.append(connection)
        else:
            connection.close()

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
