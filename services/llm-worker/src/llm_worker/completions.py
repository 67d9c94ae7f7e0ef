"""Streaming chat completions through the official `openai` SDK.

`stream_completion` yields `Delta`, then at most one `Finish` and one `UsageReport`; it raises
`UpstreamError` for any failure of the model server, before or during the stream.
"""

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import httpx2
import openai
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam

from shared.events import Usage


@dataclass(frozen=True, slots=True)
class Delta:
    text: str


@dataclass(frozen=True, slots=True)
class Finish:
    reason: str


@dataclass(frozen=True, slots=True)
class UsageReport:
    usage: Usage


Piece = Delta | Finish | UsageReport


class UpstreamError(Exception):
    """The model server failed; `code` and `retryable` go into the `stream_error` event."""

    def __init__(self, code: str, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable


def pieces_from_chunk(chunk: ChatCompletionChunk) -> list[Piece]:
    """What one streamed chunk carries: text, a finish reason, the final usage."""
    pieces: list[Piece] = []
    for choice in chunk.choices[:1]:
        if choice.delta.content:
            pieces.append(Delta(choice.delta.content))
        if choice.finish_reason:
            pieces.append(Finish(choice.finish_reason))
    if chunk.usage is not None:
        pieces.append(
            UsageReport(
                Usage(
                    prompt_tokens=chunk.usage.prompt_tokens,
                    completion_tokens=chunk.usage.completion_tokens,
                    total_tokens=chunk.usage.total_tokens,
                )
            )
        )
    return pieces


async def stream_completion(
    client: AsyncOpenAI,
    *,
    model: str,
    messages: list[ChatCompletionMessageParam],
    max_tokens: int,
) -> AsyncGenerator[Piece, None]:
    """Stream one completion; the upstream request is closed when the caller stops iterating."""
    try:
        stream = await client.chat.completions.create(
            model=model,
            messages=messages,
            max_tokens=max_tokens,
            stream=True,
            stream_options={"include_usage": True},
        )
        async with stream:
            async for chunk in stream:
                for piece in pieces_from_chunk(chunk):
                    yield piece
    except openai.APIError as exc:
        raise _upstream_error(exc) from exc
    except httpx2.HTTPError as exc:  # a connection cut mid-stream surfaces unwrapped
        raise UpstreamError(
            "upstream_unavailable", str(exc) or type(exc).__name__, retryable=True
        ) from exc


def _upstream_error(exc: openai.APIError) -> UpstreamError:
    if isinstance(exc, openai.RateLimitError):
        return UpstreamError("upstream_rate_limited", _message(exc), retryable=True)
    if isinstance(exc, openai.APITimeoutError):
        return UpstreamError(
            "upstream_timeout", "the model server did not answer in time", retryable=True
        )
    if isinstance(exc, openai.APIConnectionError):
        return UpstreamError(
            "upstream_unavailable", "the model server cannot be reached", retryable=True
        )
    if isinstance(exc, openai.APIStatusError):
        return UpstreamError("upstream_error", _message(exc), retryable=exc.status_code >= 500)
    return UpstreamError("upstream_error", _message(exc), retryable=True)


def _message(exc: openai.APIError) -> str:
    body: Any = exc.body
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    return exc.message
