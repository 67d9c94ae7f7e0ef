"""Streaming from the model server: events become pieces, failures become UpstreamError."""

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
import uvicorn

from fake_llm.main import create_app
from fake_llm.settings import FakeLLMSettings
from llm_worker.completions import (
    ChatMessage,
    Citations,
    Delta,
    Finish,
    UpstreamError,
    UsageReport,
    pieces_from_chunk,
    sse_data,
    stream_completion,
)
from llm_worker.upstream import ModelServer
from shared.events import Source, Usage
from support.llm_mock import chunk, model_over, sse, streaming, usage


async def collect(client_body: bytes) -> list[object]:
    client = model_over(streaming(client_body))
    return [p async for p in stream_completion(client, model="m", messages=[], max_tokens=5)]


async def test_chunks_become_deltas_finish_and_usage() -> None:
    pieces = await collect(
        sse(chunk(""), chunk("Hel"), chunk("lo"), chunk(None, "stop"), usage(7, 2))
    )
    assert pieces == [
        Delta("Hel"),
        Delta("lo"),
        Finish("stop"),
        UsageReport(Usage(prompt_tokens=7, completion_tokens=2, total_tokens=9)),
    ]


async def test_request_asks_for_usage_and_bounds_tokens() -> None:
    seen: list[dict[str, object]] = []

    def handle(request: httpx2.Request) -> httpx2.Response:
        seen.append(json.loads(request.content))
        return httpx2.Response(
            200, content=sse(chunk("x")), headers={"content-type": "text/event-stream"}
        )

    client = model_over(handle)
    _ = [p async for p in stream_completion(client, model="m", messages=[], max_tokens=42)]
    assert seen[0]["stream"] is True
    assert seen[0]["stream_options"] == {"include_usage": True}
    assert seen[0]["max_tokens"] == 42
    assert "temperature" not in seen[0]  # the model server's default
    _ = [
        p
        async for p in stream_completion(
            client, model="m", messages=[], max_tokens=42, temperature=0.3
        )
    ]
    assert seen[1]["temperature"] == 0.3


@pytest.mark.parametrize(
    ("status", "code", "retryable"),
    [
        (429, "upstream_rate_limited", True),
        (500, "upstream_error", True),
        (400, "upstream_error", False),
    ],
)
async def test_http_failures_become_upstream_errors(
    status: int, code: str, retryable: bool
) -> None:
    def handle(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(status, json={"error": {"message": "nope", "type": "x"}})

    client = model_over(handle)
    with pytest.raises(UpstreamError) as caught:
        _ = [p async for p in stream_completion(client, model="m", messages=[], max_tokens=5)]
    assert (caught.value.code, caught.value.retryable) == (code, retryable)
    assert caught.value.message == "nope"


async def test_unreachable_server_is_retryable() -> None:
    def handle(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("refused", request=request)

    client = model_over(handle)
    with pytest.raises(UpstreamError) as caught:
        _ = [p async for p in stream_completion(client, model="m", messages=[], max_tokens=5)]
    assert caught.value.code == "upstream_unavailable"
    assert caught.value.retryable


async def test_events_split_anywhere_and_crlf_lines_parse_the_same() -> None:
    body = sse(chunk("Hel"), chunk("lo"), chunk(None, "stop")).replace(b"\n", b"\r\n")

    async def pieces_of(size: int) -> list[bytes]:
        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(body), size):
                yield body[i : i + size]

        return [data async for data in sse_data(chunks())]

    whole = await pieces_of(len(body))
    assert len(whole) == 3
    for size in (1, 2, 7, 64):
        assert await pieces_of(size) == whole


async def test_multi_line_data_is_joined_and_done_ends_the_stream() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'event: x\ndata: {"a":\ndata: 1}\n\ndata: [DONE]\n\ndata: {"late": 1}\n\n'

    assert [data async for data in sse_data(chunks())] == [b'{"a":\n1}']


async def test_an_error_inside_the_stream_becomes_an_upstream_error() -> None:
    body = sse(chunk("Hel"), {"error": {"message": "overloaded", "type": "server_error"}})
    with pytest.raises(UpstreamError) as caught:
        await collect(body)
    assert (caught.value.code, caught.value.message) == ("upstream_error", "overloaded")


async def test_malformed_json_in_the_stream_is_an_upstream_error() -> None:
    with pytest.raises(UpstreamError) as caught:
        await collect(b"data: {not json\n\n")
    assert caught.value.retryable


async def test_one_connection_serves_reply_after_reply() -> None:
    """The body after `[DONE]` is read, so the connection goes back to the pool: a real
    server sees every request of one client, one after the other, on the same socket."""
    app = create_app(FakeLLMSettings(ttft_ms=0, token_delay_ms=0, reply_tokens=2))
    client_ports: set[int] = set()

    async def counting(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            client_ports.add(scope["client"][1])
        await app(scope, receive, send)

    listener = socket.create_server(("127.0.0.1", 0))  # listening before the server runs
    port = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(counting, log_config=None))  # logging untouched
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    client = ModelServer(f"http://127.0.0.1:{port}/v1", "k", timeout_s=5, max_retries=0)
    try:
        for _ in range(3):
            hello: list[ChatMessage] = [{"role": "user", "content": "hello"}]
            pieces = [
                p async for p in stream_completion(client, model="m", messages=hello, max_tokens=5)
            ]
            assert isinstance(pieces[-1], UsageReport)
    finally:
        await client.close()
        server.should_exit = True
        await serving
    assert len(client_ports) == 1


class AfterDone(httpx2.AsyncByteStream):
    """A body that goes on after `[DONE]`: it hangs there, or its connection breaks."""

    def __init__(self, then: str) -> None:
        self.then = then

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield sse(chunk("Hi"), chunk(None, "stop"))
        if self.then == "hang":
            await asyncio.sleep(60)
        raise httpx2.ReadError("connection reset")


@pytest.mark.parametrize("then", ["hang", "break"])
async def test_a_body_that_misbehaves_after_done_still_gives_the_whole_reply(
    then: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("llm_worker.completions.DRAIN_S", 0.05)

    def handle(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, stream=AfterDone(then))

    client = model_over(handle)
    pieces = [p async for p in stream_completion(client, model="m", messages=[], max_tokens=5)]
    assert pieces == [Delta("Hi"), Finish("stop")]


def test_a_models_citations_become_sources() -> None:
    cited = {
        "choices": [
            {
                "index": 0,
                "delta": {
                    "content": "See the docs.",
                    "annotations": [
                        {
                            "type": "url_citation",
                            "url_citation": {"url": "https://nats.io/", "title": "NATS"},
                        },
                        {"type": "file_citation", "file_citation": {"file_id": "f1"}},
                    ],
                },
                "finish_reason": None,
            }
        ]
    }
    assert pieces_from_chunk(cited) == [
        Delta("See the docs."),
        Citations((Source(id="https://nats.io/", title="NATS", url="https://nats.io/"),)),
    ]
