"""Runs the tool calls a model asks for: checks them, calls the tool's endpoint, and makes sure
a tool with side effects runs at most once per call, whatever happens to the worker.

At most once: before the endpoint is called, `SET tw:tool:<run key> running NX` claims the call
(`tool_steps.run_key`: the same reply, step, position, tool and arguments); its result then
replaces the mark. A later attempt at the same reply (its worker died, its message came back)
that asks for the same call finds the result and gives it to the model without calling the
tool; one that finds the mark (the first attempt died while the tool ran) cannot know what the
tool did, so it does not call it again: the call fails, and says so. The endpoint also gets
the run key as `Idempotency-Key`, to tell such calls apart itself. When Redis cannot be
reached, a tool with side effects is not called.
"""

import json
import logging
from typing import Any

import httpx2
import jsonschema
from redis.asyncio import Redis
from redis.exceptions import RedisError

from llm_worker.tool_steps import MAX_RESULT_CHARS, Asked, Ran, arguments_of, run_key
from llm_worker.tools import Toolbox, ToolSpec
from shared.events import UserMessage

log = logging.getLogger(__name__)
RUNNING = b"running"
INTERRUPTED = (
    "an earlier attempt at this reply started this call and stopped before it ended; "
    "it is not run twice, and what it did is unknown"
)


class ToolRunner:
    def __init__(
        self,
        toolbox: Toolbox,
        redis: Redis,
        *,
        timeout_s: float,
        max_steps: int,
        ttl_s: int = 24 * 3600,
        http: httpx2.AsyncClient | None = None,
    ) -> None:
        self.toolbox = toolbox
        self._redis = redis
        self._timeout_s = timeout_s
        self.max_steps = max_steps
        self._ttl_s = ttl_s
        self._http = http or httpx2.AsyncClient(timeout=timeout_s)

    def offer(self, step: int) -> list[dict[str, Any]] | None:
        """The tools step `step` offers the model: none past the last step that may call them."""
        return self.toolbox.offered() if step <= self.max_steps else None

    async def run(self, message: UserMessage, step: int, call: Asked) -> Ran:
        """The call's outcome; never raises but for cancellation."""
        spec = self.toolbox.get(call.name)
        if spec is None:
            return Ran.failed(f"there is no tool named {call.name!r}")
        arguments = arguments_of(call)
        if isinstance(arguments, str):
            return Ran.failed(arguments)
        try:
            jsonschema.validate(arguments, spec.parameters)
        except jsonschema.ValidationError as exc:
            return Ran.failed(f"the arguments do not fit the tool's parameters: {exc.message}")
        key = run_key(message, step, call, arguments)
        if not spec.side_effects:
            return await self._call(spec, message, call, arguments, key)
        try:
            if not await self._redis.set(f"tw:tool:{key}", RUNNING, nx=True, ex=self._ttl_s):
                return _stored(await self._redis.get(f"tw:tool:{key}"))
        except RedisError as exc:
            log.warning("tool call not claimed: %s", exc)
            return Ran.failed("the call could not be recorded (Redis is unavailable): not run")
        ran = await self._call(spec, message, call, arguments, key)
        stored = json.dumps({"ok": ran.ok, "content": ran.content, "error": ran.error})
        try:
            await self._redis.set(f"tw:tool:{key}", stored, xx=True, ex=self._ttl_s)
        except RedisError as exc:  # the mark stays: a later attempt does not run it again
            log.warning("tool result not stored: %s", exc)
        return ran

    async def _call(
        self, spec: ToolSpec, message: UserMessage, call: Asked, arguments: dict[str, Any], key: str
    ) -> Ran:
        timeout_s = spec.timeout_s or self._timeout_s
        headers = {"Idempotency-Key": key}
        if secret := spec.secret():
            headers["Authorization"] = f"Bearer {secret}"
        body = {
            "name": call.name,
            "arguments": arguments,
            "call_id": call.call_id,
            "session_id": message.session_id,
            "message_id": message.message_id,
            "user": message.participant,
        }
        try:
            answer = await self._http.post(
                str(spec.url), json=body, headers=headers, timeout=timeout_s
            )
        except httpx2.TimeoutException:
            return Ran.failed(f"the tool took longer than {timeout_s:g} s")
        except httpx2.HTTPError as exc:
            return Ran.failed(f"the tool could not be reached ({type(exc).__name__})")
        if answer.status_code >= 400:
            return Ran.failed(f"the tool answered HTTP {answer.status_code}: {answer.text[:200]}")
        return Ran(True, answer.text[:MAX_RESULT_CHARS])

    async def close(self) -> None:
        await self._http.aclose()


def _stored(value: bytes | str | None) -> Ran:
    """The outcome an earlier attempt left for the same call."""
    if value is None or value in (RUNNING, RUNNING.decode()):
        return Ran.failed(INTERRUPTED)
    try:
        stored = json.loads(value)
        return Ran(bool(stored["ok"]), str(stored["content"]), str(stored.get("error", "")))
    except (ValueError, KeyError, TypeError):
        return Ran.failed(INTERRUPTED)
