"""The plain-HTTP transport against real sockets: streaming, connections kept and dropped,
a kept connection closed as a request crosses it, a server that stops mid-stream or says
nothing, and a request larger than a socket buffer."""

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from llm_worker.completions import Delta, Finish, stream_completion
from llm_worker.plain_http import PlainHTTPClient
from llm_worker.upstream import ModelServer, UpstreamError

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def serving(handle: Handler) -> AsyncIterator[tuple[ModelServer, list[int]]]:
    """A raw HTTP server on loopback, a model server client for it, and the client ports of
    the connections the server accepted."""
    ports: list[int] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ports.append(writer.get_extra_info("peername")[1])
        with contextlib.suppress(ConnectionError):
            await handle(reader, writer)
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = ModelServer(f"http://127.0.0.1:{port}/v1", "k", timeout_s=1.0, max_retries=0)
    try:
        yield client, ports
    finally:
        await client.close()
        server.close()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    return await reader.readexactly(length)


def event(text: str | None, finish: str | None = None) -> bytes:
    delta = {"content": text} if text else {}
    data = json.dumps({"choices": [{"delta": delta, "finish_reason": finish}]})
    return f"data: {data}\n\n".encode()


def chunked(part: bytes) -> bytes:
    return f"{len(part):x}\r\n".encode() + part + b"\r\n"


HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


async def stream_reply(writer: asyncio.StreamWriter, texts: list[str], delay_s: float) -> None:
    writer.write(HEAD)
    for text in texts:
        writer.write(chunked(event(text)))
        await writer.drain()
        await asyncio.sleep(delay_s)
    writer.write(chunked(event(None, "stop")) + chunked(b"data: [DONE]\n\n") + b"0\r\n\r\n")
    await writer.drain()


async def collect(client: ModelServer, content: str = "hi") -> list[object]:
    messages = [{"role": "user", "content": content}]
    return [
        p
        async for p in stream_completion(client, model="m", messages=messages, max_tokens=9)  # type: ignore[arg-type]
    ]


def test_http_servers_get_the_plain_client_and_https_or_proxied_ones_httpx(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    plain = ModelServer("http://127.0.0.1:9/v1", None, timeout_s=1, max_retries=0)
    tls = ModelServer("https://api.example/v1", "k", timeout_s=1, max_retries=0)
    assert isinstance(plain.plain, PlainHTTPClient)
    assert plain.http is None
    assert tls.plain is None
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "localhost")
    assert ModelServer("http://10.0.0.9/v1", None, timeout_s=1, max_retries=0).plain is None
    assert ModelServer("http://localhost:9/v1", None, timeout_s=1, max_retries=0).plain


async def test_a_paced_stream_arrives_whole_and_the_connection_is_kept() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(3):  # three requests on one connection
            await read_request(reader)
            await stream_reply(writer, ["a", "b", "c"], 0.005)

    async with serving(handle) as (client, ports):
        for _ in range(3):
            assert await collect(client) == [Delta("a"), Delta("b"), Delta("c"), Finish("stop")]
    assert len(ports) == 1


async def test_a_kept_connection_the_server_closed_is_replaced_quietly() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await stream_reply(writer, ["x"], 0)  # then closes: no keep-alive after all

    async with serving(handle) as (client, ports):
        assert await collect(client) == [Delta("x"), Finish("stop")]
        await asyncio.sleep(0.05)  # the close reaches the idle pooled connection
        assert await collect(client) == [Delta("x"), Finish("stop")]
    assert len(ports) == 2


async def test_a_request_a_kept_connection_lost_unanswered_is_sent_again_at_once() -> None:
    # The server's idle timeout crosses the second request: it closes without a byte.
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await read_request(reader)
        if connections == 1:
            await stream_reply(writer, ["a"], 0)
            await read_request(reader)
            return  # closed unanswered
        await stream_reply(writer, ["b"], 0)

    async with serving(handle) as (client, ports):  # no retries allowed
        assert await collect(client) == [Delta("a"), Finish("stop")]
        assert await collect(client) == [Delta("b"), Finish("stop")]
    assert len(ports) == 2


async def test_a_new_connection_closed_unanswered_is_an_upstream_error() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)  # then closed unanswered

    async with serving(handle) as (client, ports):
        with pytest.raises(UpstreamError) as caught:
            await collect(client)
    assert caught.value.code == "upstream_unavailable"
    assert len(ports) == 1  # not sent again: a fresh connection is no idle timeout


async def test_a_server_that_stops_mid_stream_is_an_upstream_error() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(HEAD + chunked(event("half")))
        await writer.drain()

    async with serving(handle) as (client, _):
        with pytest.raises(UpstreamError) as caught:
            await collect(client)
    assert caught.value.code == "upstream_unavailable"
    assert caught.value.retryable


async def failure_when_answered(answer: bytes) -> UpstreamError:
    """What a server that reads the request, writes `answer` and then holds the connection
    open (longer than the client's 1 s read timeout) makes the client raise."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer)
        await writer.drain()
        await asyncio.sleep(3)

    async with serving(handle) as (client, _):
        with pytest.raises(UpstreamError) as caught:
            await collect(client)
    return caught.value


async def test_a_server_that_says_nothing_times_out() -> None:
    failure = await failure_when_answered(HEAD + chunked(event("one")))
    assert failure.code == "upstream_timeout"


async def test_a_request_larger_than_the_socket_buffers_is_sent_whole() -> None:
    received: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.1)  # the client's writes fill the buffers meanwhile
        received.append(await read_request(reader))
        await stream_reply(writer, ["ok"], 0)

    prompt = "x" * (4 << 20)
    async with serving(handle) as (client, _):
        assert await collect(client, prompt) == [Delta("ok"), Finish("stop")]
    assert json.loads(received[0])["messages"][0]["content"] == prompt


async def test_stopping_early_closes_the_connection_the_server_sees_it() -> None:
    gone = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(HEAD)
        with contextlib.suppress(ConnectionError):
            for i in range(200):
                writer.write(chunked(event(f"t{i}")))
                await writer.drain()
                await asyncio.sleep(0.01)
        gone.set()

    async with serving(handle) as (client, _):
        pieces = stream_completion(
            client, model="m", messages=[{"role": "user", "content": "hi"}], max_tokens=9
        )
        async with contextlib.aclosing(pieces):
            assert await anext(pieces) == Delta("t0")
        await asyncio.wait_for(gone.wait(), 1.0)


def body_of(texts: list[str]) -> bytes:
    return b"".join(event(t) for t in texts) + event(None, "stop") + b"data: [DONE]\n\n"


async def test_chunks_cut_anywhere_with_extensions_and_trailers_arrive_whole() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(2):  # the connection stays usable after the trailers
            await read_request(reader)
            raw = HEAD
            for part in (event("ab"), event("c"), body_of([])):
                raw += f"{len(part):x};name=value\r\n".encode() + part + b"\r\n"
            raw += b"0\r\nx-trailer: 1\r\n\r\n"
            for i in range(0, len(raw), 7):  # seven bytes a write
                writer.write(raw[i : i + 7])
                await writer.drain()
                await asyncio.sleep(0)

    async with serving(handle) as (client, ports):
        for _ in range(2):
            assert await collect(client) == [Delta("ab"), Delta("c"), Finish("stop")]
    assert len(ports) == 1


async def test_answers_sized_by_length_or_by_the_close_and_interim_ones_skipped() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        body = body_of(["sized"])
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
        await read_request(reader)  # kept: the length said where the body ends
        writer.write(b"HTTP/1.0 200 OK\r\n\r\n" + body_of(["until", " closed"]))
        await writer.drain()

    async with serving(handle) as (client, ports):
        assert await collect(client) == [Delta("sized"), Finish("stop")]
        assert await collect(client) == [Delta("until"), Delta(" closed"), Finish("stop")]
        assert client.plain is not None
        assert not client.plain._idle  # not kept: HTTP/1.0
    assert len(ports) == 1


async def test_an_error_answer_keeps_its_message_and_its_connection() -> None:
    error = b'{"error": {"message": "slow down", "type": "rate_limit"}}'

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: %d\r\n\r\n" % len(error))
        writer.write(error)
        await read_request(reader)
        await stream_reply(writer, ["ok"], 0)

    async with serving(handle) as (client, ports):
        with pytest.raises(UpstreamError) as caught:
            await collect(client)
        assert await collect(client) == [Delta("ok"), Finish("stop")]
    assert (caught.value.code, caught.value.message) == ("upstream_error", "slow down")
    assert len(ports) == 1


@pytest.mark.parametrize(
    "answer",
    [
        b"SMTP ready\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        HEAD + b"zz\r\n",
        HEAD + b"3\r\nabcXY",
        b"HTTP/1.1 200 OK\r\ncontent-length: many\r\n\r\n",
    ],
    ids=["not-http", "bad-header", "bad-chunk-size", "bad-chunk-end", "bad-length"],
)
async def test_a_malformed_answer_is_an_upstream_error(answer: bytes) -> None:
    failure = await failure_when_answered(answer)
    assert failure.code == "upstream_unavailable"
