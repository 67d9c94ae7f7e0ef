"""Tool calls the fake model makes, and the tools it serves, for tests.

`[fake tool=NAME]` in the last user message makes the model ask for tool NAME (when the
request offers it) until the prompt holds `tool_steps=N` of its answers (default 1), then
answer as usual. The arguments it asks with script the tool: `{"query": "step K"}`, plus
`"delay_ms"` (`tool_delay_ms=`) and `"fail": true` (`tool_fail=1`); `tool_args=bad` asks with
arguments that are no JSON.

The tools live at `POST /v1/_fake/tools/{name}`; `GET /v1/_fake/tool_calls` lists the calls
they got (with their `Idempotency-Key`), so that tests can count them.
"""

import asyncio
import json
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fake_llm import sse
from fake_llm.script import directive

Chunk = Callable[[dict[str, Any], str | None], bytes]


def asked_call(body: dict[str, Any], messages: list[Any]) -> dict[str, str] | None:
    """The call the model asks for now (`id`, `name`, `arguments`), or None to answer."""
    fields = directive(messages)
    name = fields.get("tool")
    offered = [
        t.get("function", {}).get("name") for t in body.get("tools") or [] if isinstance(t, dict)
    ]
    if not name or name not in offered:
        return None
    answered = _answers_since_user(messages)
    if answered >= int(fields.get("tool_steps", 1)):
        return None
    arguments: dict[str, Any] = {"query": f"step {answered + 1}"}
    if "tool_delay_ms" in fields:
        arguments["delay_ms"] = int(fields["tool_delay_ms"])
    if fields.get("tool_fail"):
        arguments["fail"] = True
    text = "{not json" if fields.get("tool_args") == "bad" else json.dumps(arguments)
    return {"id": f"call_{uuid.uuid4().hex[:12]}", "name": name, "arguments": text}


def _answers_since_user(messages: list[Any]) -> int:
    count = 0
    for message in reversed(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role == "user":
            break
        count += role == "tool"
    return count


async def call_chunks(call: dict[str, str], chunk: Chunk, delay_s: float) -> AsyncIterator[bytes]:
    """The tool call's deltas, its arguments in three pieces, and the `tool_calls` finish."""
    head = {"index": 0, "id": call["id"], "type": "function"}
    yield chunk(
        {"tool_calls": [{**head, "function": {"name": call["name"], "arguments": ""}}]}, None
    )
    for piece in argument_pieces(call["arguments"]):
        await asyncio.sleep(delay_s)
        yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}, None)
    yield chunk({}, "tool_calls")


def argument_pieces(arguments: str) -> list[str]:
    third = -(-len(arguments) // 3) or 1
    return [arguments[i : i + third] for i in range(0, len(arguments), third)]


class ToolDesk:
    """The fake tools, and the calls they got."""

    def __init__(self) -> None:
        self.calls: deque[dict[str, Any]] = deque(maxlen=1000)

    def routes(self) -> list[Route]:
        return [
            Route("/v1/_fake/tools/{name}", self.call, methods=["POST"]),
            Route("/v1/_fake/tool_calls", self.list_calls, methods=["GET"]),
        ]

    async def call(self, request: Request) -> Response:
        body = await request.json()
        arguments = body.get("arguments") or {}
        record = {
            "name": request.path_params["name"],
            "arguments": arguments,
            "call_id": body.get("call_id"),
            "message_id": body.get("message_id"),
            "idempotency_key": request.headers.get("idempotency-key", ""),
            "authorization": request.headers.get("authorization", ""),
            "started": time.time(),
            "ended": None,
        }
        self.calls.append(record)
        try:
            await asyncio.sleep(int(arguments.get("delay_ms", 0)) / 1000)
        finally:
            record["ended"] = time.time()
        if arguments.get("fail"):
            return JSONResponse(
                sse.error_body("the tool failed (injected)", "tool_error", None), 500
            )
        query = arguments.get("query", "")
        return JSONResponse({"tool": record["name"], "answer": f"3 results for {query}"})

    async def list_calls(self, _: Request) -> Response:
        return JSONResponse(list(self.calls))
