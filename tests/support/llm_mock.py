"""A model server over `httpx2.MockTransport`, SSE builders, a recording reply publisher."""

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx2

from llm_worker.upstream import ModelServer
from shared.events import (
    ModelCall,
    ReplyEnd,
    ReplyError,
    ReplyReasoning,
    ReplySources,
    ReplyStart,
    ReplyToken,
    ReplyToolCall,
    SessionTitled,
)


def sse(*chunks: dict[str, Any]) -> bytes:
    body = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks)
    return body + b"data: [DONE]\n\n"


def chunk(content: str | None = None, finish: str | None = None) -> dict[str, Any]:
    delta = {} if content is None else {"content": content}
    return {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        "usage": None,
    }


def usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "m",
        "choices": [],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


def model_over(
    handler: Callable[[httpx2.Request], httpx2.Response], *, max_retries: int = 0
) -> ModelServer:
    http = httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
    return ModelServer("http://llm/v1", "k", timeout_s=5, max_retries=max_retries, http=http)


def streaming(body: bytes) -> Callable[[httpx2.Request], httpx2.Response]:
    def handle(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=body, headers={"content-type": "text/event-stream"})

    return handle


Streamed = ReplyToken | ReplyReasoning | ReplySources | ReplyToolCall


class RecordingPublisher:
    def __init__(self) -> None:
        self.events: list[
            ReplyStart | Streamed | ReplyEnd | ReplyError | ModelCall | SessionTitled
        ] = []

    async def start(self, event: ReplyStart) -> None:
        self.events.append(event)

    async def token(self, event: Streamed) -> "asyncio.Future[Any] | None":
        self.events.append(event)
        return None  # stored at once

    async def end(self, event: ReplyEnd | ReplyError) -> None:
        self.events.append(event)

    async def call(self, event: ModelCall) -> None:
        self.events.append(event)

    async def titled(self, event: SessionTitled) -> None:
        self.events.append(event)


class SlowStream(httpx2.AsyncByteStream):
    """An SSE body that yields one delta every `delay_s`, and notes when it is closed early."""

    def __init__(self, deltas: int, delay_s: float, *, signal_after: int = 0) -> None:
        self.deltas = deltas
        self.delay_s = delay_s
        self.sent = 0
        self.closed_early = False
        self.signal_after = signal_after
        self.reached = asyncio.Event()
        """Set once `signal_after` deltas are sent."""

    async def __aiter__(self):  # type: ignore[no-untyped-def]
        try:
            for i in range(self.deltas):
                yield b"data: " + json.dumps(chunk(f" w{i}")).encode() + b"\n\n"
                self.sent += 1
                if self.sent == self.signal_after:
                    self.reached.set()
                await asyncio.sleep(self.delay_s)
            yield b"data: " + json.dumps(chunk(None, "stop")).encode() + b"\n\n"
            yield b"data: [DONE]\n\n"
        except (asyncio.CancelledError, GeneratorExit):
            self.closed_early = True
            raise

    async def aclose(self) -> None:
        if self.sent < self.deltas:
            self.closed_early = True


def slow_model(body: SlowStream) -> ModelServer:
    def handle(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, stream=body, headers={"content-type": "text/event-stream"})

    return model_over(handle)
