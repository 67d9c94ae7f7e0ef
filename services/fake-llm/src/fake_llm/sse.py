"""OpenAI's chat-completion chunk format, as server-sent events. Pure functions."""

import json
from typing import Any

DONE = b"data: [DONE]\n\n"


def event(payload: dict[str, Any]) -> bytes:
    """One SSE event carrying `payload` as compact JSON."""
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def chunk(
    completion_id: str,
    model: str,
    created: int,
    delta: dict[str, Any],
    finish_reason: str | None = None,
    *,
    with_usage_field: bool = False,
) -> dict[str, Any]:
    """A `chat.completion.chunk` with one choice.

    With `stream_options.include_usage`, OpenAI sends `"usage": null` on every such chunk.
    """
    body: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }
    if with_usage_field:
        body["usage"] = None
    return body


def usage_chunk(
    completion_id: str,
    model: str,
    created: int,
    prompt_tokens: int,
    completion_tokens: int,
    reasoning_tokens: int = 0,
) -> dict[str, Any]:
    """The final chunk sent with `include_usage`: no choices, the request's usage (reasoning
    tokens count in the completion, and in its details, as OpenAI reports them)."""
    completion_tokens += reasoning_tokens
    usage: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    if reasoning_tokens:
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning_tokens}
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": [],
        "usage": usage,
    }


def error_body(message: str, error_type: str, code: str | None) -> dict[str, Any]:
    """OpenAI's error envelope."""
    return {"error": {"message": message, "type": error_type, "param": None, "code": code}}
