"""Streaming chat completions from an OpenAI-compatible server.

`stream_completion` yields `Delta`, then at most one `Finish` and one `UsageReport`; it raises
`UpstreamError` for any failure of the model server, before or during the stream.

The request is made by `llm_worker.upstream` (retries, status errors); the event stream is
read as bytes and each `data:` line parsed with orjson. The openai SDK did both before: its
request building was a fifth of a worker's CPU per reply, and building its typed chunk for
every delta had been the worker's largest cost under load.
"""

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal, NotRequired, TypedDict

import httpx2
import orjson

from llm_worker.upstream import ModelServer, UpstreamError, transport_error
from shared.events import Source, Usage

__all__ = [
    "ChatMessage",
    "Citations",
    "Delta",
    "Finish",
    "Piece",
    "Reasoning",
    "ToolCallDelta",
    "UpstreamError",
    "UsageReport",
    "pieces_from_chunk",
    "sse_data",
    "stream_completion",
]


class ChatMessage(TypedDict):
    """One message of a prompt, as the chat completions API takes it: an assistant's may ask
    for tools (`tool_calls`), and a `tool` message answers one (`tool_call_id`)."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str
    tool_calls: NotRequired[list[dict[str, Any]]]
    tool_call_id: NotRequired[str]


DRAIN_S = 1.0
"""How long the rest of a response body after `[DONE]` may take to arrive."""
MAX_ANSWER_BYTES = 256 * 1024
"""The largest answer `complete` reads."""


@dataclass(frozen=True, slots=True)
class Delta:
    text: str


@dataclass(frozen=True, slots=True)
class Reasoning:
    """What the model reasons before it answers (`reasoning_content` in vLLM, llama.cpp and
    DeepSeek's API; `reasoning` in others)."""

    text: str


@dataclass(frozen=True, slots=True)
class Citations:
    """Sources the model cites in its stream (OpenAI's `url_citation` annotations)."""

    sources: tuple[Source, ...]


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """Part of a tool call the model asks for: the call's `index` in its message, then its id
    and name (in its first delta) and a piece of its JSON arguments."""

    index: int
    call_id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Finish:
    reason: str


@dataclass(frozen=True, slots=True)
class UsageReport:
    usage: Usage


Piece = Delta | Reasoning | Citations | ToolCallDelta | Finish | UsageReport


def pieces_from_chunk(chunk: Any) -> list[Piece]:
    """What one streamed chunk (parsed JSON) carries: text, a finish reason, the final usage.

    Raises `UpstreamError` for an error object sent inside the stream.
    """
    if not isinstance(chunk, dict):
        return []
    if chunk.get("error"):
        error = chunk["error"]
        message = error.get("message") if isinstance(error, dict) else None
        raise UpstreamError(
            "upstream_error",
            message if isinstance(message, str) and message else "the model stream failed",
            retryable=True,
        )
    pieces: list[Piece] = []
    for choice in (chunk.get("choices") or [])[:1]:
        delta = choice.get("delta") or {}
        thought = delta.get("reasoning_content") or delta.get("reasoning")
        if thought and isinstance(thought, str):
            pieces.append(Reasoning(thought))
        content = delta.get("content")
        if content:
            pieces.append(Delta(content))
        if cited := _citations(delta.get("annotations")):
            pieces.append(Citations(cited))
        pieces.extend(_tool_calls(delta.get("tool_calls")))
        if choice.get("finish_reason"):
            pieces.append(Finish(choice["finish_reason"]))
    reported = chunk.get("usage")
    if isinstance(reported, dict):
        pieces.append(UsageReport(_usage(reported)))
    return pieces


def _citations(annotations: Any) -> tuple[Source, ...]:
    if not isinstance(annotations, list):
        return ()
    found = []
    for note in annotations:
        cite = note.get("url_citation") if isinstance(note, dict) else None
        if isinstance(cite, dict) and isinstance(cite.get("url"), str):
            url = cite["url"][:2000]
            found.append(Source(id=url[:200], title=str(cite.get("title") or "")[:500], url=url))
    return tuple(found)


def _tool_calls(calls: Any) -> list[ToolCallDelta]:
    if not isinstance(calls, list):
        return []
    deltas = []
    for call in calls:
        if not isinstance(call, dict):
            continue
        function = call.get("function")
        function = function if isinstance(function, dict) else {}
        index = call.get("index")
        deltas.append(
            ToolCallDelta(
                index=index if isinstance(index, int) else 0,
                call_id=str(call.get("id") or ""),
                name=str(function.get("name") or ""),
                arguments=str(function.get("arguments") or ""),
            )
        )
    return deltas


def _usage(reported: dict[str, Any]) -> Usage:
    details = reported.get("completion_tokens_details")
    thinking = details.get("reasoning_tokens") if isinstance(details, dict) else None
    return Usage(
        prompt_tokens=int(reported.get("prompt_tokens") or 0),
        completion_tokens=int(reported.get("completion_tokens") or 0),
        total_tokens=int(reported.get("total_tokens") or 0),
        reasoning_tokens=int(thinking or 0),
    )


async def sse_data(chunks: AsyncIterator[bytes]) -> AsyncGenerator[bytes, None]:
    """The `data` of each server-sent event in `chunks` (multi-line data joined by newlines);
    stops at `[DONE]`."""
    buffer = b""
    data: list[bytes] = []
    async for chunk in chunks:
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for raw in lines:
            line = raw.rstrip(b"\r")
            if not line:
                if data:
                    joined = b"\n".join(data)
                    data.clear()
                    if joined.startswith(b"[DONE]"):
                        return
                    yield joined
            elif line.startswith(b"data:"):
                data.append(line[6:] if line[5:6] == b" " else line[5:])
    if data and not data[0].startswith(b"[DONE]"):
        yield b"\n".join(data)


async def stream_completion(
    server: ModelServer,
    *,
    model: str,
    messages: list[ChatMessage],
    max_tokens: int,
    temperature: float | None = None,
    tools: list[dict[str, Any]] | None = None,
) -> AsyncGenerator[Piece, None]:
    """Stream one completion; the upstream request is closed when the caller stops iterating.
    Without `temperature`, the model server's default applies; `tools` are offered to the
    model (none: it can call none)."""
    request: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "max_tokens": max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if temperature is not None:
        request["temperature"] = temperature
    if tools:
        request["tools"] = tools
    try:
        async with server.stream(request) as response:
            body = response.aiter_bytes()
            events = sse_data(body)
            try:
                async for data in events:
                    try:
                        chunk = orjson.loads(data)
                    except orjson.JSONDecodeError:
                        raise UpstreamError(
                            "upstream_error", "the model sent malformed JSON", retryable=True
                        ) from None
                    for piece in pieces_from_chunk(chunk):
                        yield piece
            finally:
                await events.aclose()
            await read_to_end(body)
    except httpx2.HTTPError as exc:  # the stream broke, or stalled past the read timeout
        raise transport_error(exc) from exc


async def read_to_end(body: AsyncIterator[bytes]) -> None:
    """Read what follows `[DONE]` (the body's last chunk, normally already arrived): a
    response closed before its end also closes its connection, and every reply would then
    open a new one. A server that keeps the body open after `[DONE]` is left after
    `DRAIN_S`, and one that fails there is ignored (the reply is whole), at the cost of
    that connection."""
    with contextlib.suppress(TimeoutError, httpx2.HTTPError):
        async with asyncio.timeout(DRAIN_S):
            async for _ in body:
                pass


async def complete(
    server: ModelServer,
    *,
    model: str,
    messages: list[ChatMessage],
    max_tokens: int,
    temperature: float | None = None,
) -> tuple[str, Usage | None]:
    """One short completion, not streamed (a title): its text, and its usage when the server
    reports it. Raises `UpstreamError`, also for an answer over `MAX_ANSWER_BYTES`."""
    request: dict[str, Any] = {"model": model, "messages": messages, "max_tokens": max_tokens}
    if temperature is not None:
        request["temperature"] = temperature
    body = b""
    try:
        async with server.stream(request) as response:
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_ANSWER_BYTES:
                    raise UpstreamError("upstream_error", "the answer is too long", retryable=False)
    except httpx2.HTTPError as exc:
        raise transport_error(exc) from exc
    try:
        answer = orjson.loads(body)
        text = answer["choices"][0]["message"].get("content") or ""
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError):
        malformed = "the model sent malformed JSON"
        raise UpstreamError("upstream_error", malformed, retryable=True) from None
    usage = answer.get("usage")
    return str(text), _usage(usage) if isinstance(usage, dict) else None
