"""The fake model's HTTP app: `/v1/chat/completions` (streaming or not), `/v1/models`."""

import asyncio
import json
import random
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from fake_llm import script, sse, tool_script
from fake_llm.settings import FakeLLMSettings


class DroppedConnection(ConnectionError):
    """Raised mid-stream to cut the connection, as a crashed upstream would."""


@dataclass
class StreamRecord:
    """One completion, as `GET /v1/_fake/streams` reports it to tests."""

    id: str
    worker: str
    planned: int
    sent: int = 0
    started: float = field(default_factory=time.time)
    ended: float | None = None
    closed_early: bool = False
    """The client went away before the last chunk: a cancel that really stopped the model."""
    prompt: str = ""
    """The last message's content (its first 200 characters): tests count calls per message."""
    model: str = ""
    temperature: float | None = None
    max_tokens: int | None = None
    """The request's parameters, as it gave them."""
    system: str = ""
    """The first message's content when it is the system prompt (its first 200 characters)."""
    messages: int = 0
    """How many messages the prompt had."""
    streamed: bool = True
    """False for a request that asked for the whole answer at once (`stream` not set)."""
    previous: str = ""
    """The message before the last (its first 200 characters): the answer the model sees."""


def create_app(settings: FakeLLMSettings, *, rng: random.Random | None = None) -> Starlette:
    """Build the app; `rng` decides which requests fail when `fail_rate` is set."""
    draw = rng or random.Random()
    failures: dict[str, int] = {}
    streams: deque[StreamRecord] = deque(maxlen=1000)
    tools = tool_script.ToolDesk()

    async def completions(request: Request) -> Response:
        parsed = await _request_body(request)
        if isinstance(parsed, Response):
            return parsed
        body, messages = parsed
        plan = _counting_failures(
            script.plan_for(messages, settings, roll=draw.random()), messages, failures
        )
        if (failure := _injected(plan)) is not None:
            return failure
        plan = replace(plan, call=tool_script.asked_call(body, messages))
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        count = min(plan.tokens, int(limit)) if limit else plan.tokens
        finish = "length" if count < plan.tokens else "stop"
        model = str(body.get("model") or settings.model)
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        prompt = script.prompt_tokens(messages)
        pieces = script.reply_pieces(count, plan.chars)
        record = _record(completion_id, request, body, messages, len(pieces))
        streams.append(record)
        if not body.get("stream"):
            record.streamed = False
            await asyncio.sleep((plan.ttft_ms + plan.delay_ms * (count - 1)) / 1000)
            record.sent, record.ended = len(pieces), time.time()
            return JSONResponse(
                _whole(completion_id, model, "".join(pieces), finish, prompt, count)
            )
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(
            _stream(completion_id, model, pieces, finish, prompt, plan, include_usage, record),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache"},
        )

    async def models(_: Request) -> Response:
        model = {"id": settings.model, "object": "model", "created": 0, "owned_by": "tokenwire"}
        return JSONResponse({"object": "list", "data": [model]})

    async def recorded_streams(_: Request) -> Response:
        return JSONResponse([asdict(record) for record in streams])

    return Starlette(
        routes=[
            Route("/v1/chat/completions", completions, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/v1/_fake/streams", recorded_streams, methods=["GET"]),
            Route("/v1/_fake/retrieve", retrieve, methods=["POST"]),
            *tools.routes(),
        ]
    )


def _counting_failures(
    plan: script.Plan, messages: list[Any], failures: dict[str, int]
) -> script.Plan:
    """`fail_first`: the same request fails its first N times, then is answered."""
    if plan.fail_first:
        key = script.conversation_key(messages)
        failures[key] = failures.get(key, 0) + 1
        if failures[key] > plan.fail_first:
            return replace(plan, fail="none")
    return plan


def _record(
    completion_id: str, request: Request, body: dict[str, Any], messages: list[Any], planned: int
) -> StreamRecord:
    last = messages[-1].get("content") if isinstance(messages[-1], dict) else None
    first = messages[0] if isinstance(messages[0], dict) else {}
    system = first.get("content") if first.get("role") == "system" else None
    temperature, max_tokens = body.get("temperature"), body.get("max_tokens")
    return StreamRecord(
        completion_id,
        request.headers.get("x-tokenwire-worker", ""),
        planned,
        prompt=last[:200] if isinstance(last, str) else "",
        model=str(body.get("model") or ""),
        temperature=float(temperature) if isinstance(temperature, int | float) else None,
        max_tokens=int(max_tokens) if isinstance(max_tokens, int) else None,
        system=system[:200] if isinstance(system, str) else "",
        messages=len(messages),
        previous=_text(messages[-2]) if len(messages) > 1 else "",
    )


def _text(message: Any) -> str:
    content = message.get("content") if isinstance(message, dict) else None
    return content[:200] if isinstance(content, str) else ""


async def retrieve(request: Request) -> Response:
    """A retrieval hook for tests (`TOKENWIRE_RETRIEVAL_URL`), scripted by the query."""
    body = await request.json()
    found = script.retrieved(str(body.get("query", "")))
    if found == "slow":
        await asyncio.sleep(30)
    if isinstance(found, str):
        return JSONResponse({"error": "retrieval failed (injected)"}, status_code=503)
    context, sources = found
    return JSONResponse({"context": context, "sources": sources})


async def healthz(_: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def _request_body(request: Request) -> tuple[dict[str, Any], list[Any]] | Response:
    """The request's JSON body and its messages, or the 400 answer refusing it."""
    try:
        body = await request.json()
    except json.JSONDecodeError:
        return _error(400, "request body is not valid JSON", "invalid_request_error", None)
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list) or not messages:
        return _error(400, "'messages' must be a non-empty list", "invalid_request_error", None)
    return body, messages


def _injected(plan: script.Plan) -> Response | None:
    """The error a plan asks for before any chunk (`429` or `500`), if any."""
    if plan.fail == "429":
        return _error(
            429,
            "Rate limit reached (injected)",
            "rate_limit_exceeded",
            "rate_limit_exceeded",
            headers={"retry-after": "1"},
        )
    if plan.fail == "500":
        return _error(500, "The server had an error (injected)", "server_error", None)
    return None


async def _stream(
    completion_id: str,
    model: str,
    pieces: list[str],
    finish: str,
    prompt: int,
    plan: script.Plan,
    include_usage: bool,
    record: StreamRecord,
) -> AsyncIterator[bytes]:
    created = int(time.time())
    try:
        async for chunk in _chunks(
            completion_id, model, pieces, finish, prompt, plan, include_usage, created, record
        ):
            yield chunk
    except (asyncio.CancelledError, GeneratorExit):
        record.closed_early = True
        raise
    finally:
        record.ended = time.time()


async def _chunks(
    completion_id: str,
    model: str,
    pieces: list[str],
    finish: str,
    prompt: int,
    plan: script.Plan,
    include_usage: bool,
    created: int,
    record: StreamRecord,
) -> AsyncIterator[bytes]:
    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        return sse.event(
            sse.chunk(
                completion_id, model, created, delta, finish_reason, with_usage_field=include_usage
            )
        )

    yield chunk({"role": "assistant", "content": "", "refusal": None})
    await asyncio.sleep(plan.ttft_ms / 1000)
    thoughts = script.reasoning_pieces(plan.reasoning)
    for i, thought in enumerate(thoughts):
        if i:
            await asyncio.sleep(plan.delay_ms / 1000)
        yield chunk({"reasoning_content": thought})
    if thoughts:
        await asyncio.sleep(plan.delay_ms / 1000)
    if plan.call is not None:  # asks for a tool instead of answering
        pieces = tool_script.argument_pieces(plan.call["arguments"])
        async for data in tool_script.call_chunks(plan.call, chunk, plan.delay_ms / 1000):
            yield data
    for i, piece in enumerate(pieces if plan.call is None else []):
        if plan.fail == "drop" and i >= plan.fail_after:
            raise DroppedConnection
        if i:
            await asyncio.sleep(plan.delay_ms / 1000)
        yield chunk({"content": piece})
        record.sent += 1
    if plan.call is None:
        yield chunk({}, finish)
    if include_usage:
        yield sse.event(
            sse.usage_chunk(completion_id, model, created, prompt, len(pieces), len(thoughts))
        )
    yield sse.DONE


def _whole(
    completion_id: str, model: str, text: str, finish: str, prompt: int, completion: int
) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


def _error(
    status: int,
    message: str,
    error_type: str,
    code: str | None,
    headers: dict[str, str] | None = None,
) -> Response:
    return JSONResponse(sse.error_body(message, error_type, code), status, headers=headers)
