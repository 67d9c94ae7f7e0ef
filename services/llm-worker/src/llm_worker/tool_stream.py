"""The tool calls of one streaming reply: their events, in order with the reply's text, and
the calls run between two model calls (`llm_worker.replies` streams the rest). The calls a
model asks for at once run at once; each ends (`done` or `failed`) as its tool answers.

A call's first delta names it and goes out at once; its argument deltas are joined like tokens
(`Coalescer`: at most one event per window), so a model that streams arguments token by token
costs the stream a few events a call, not one per token.
"""

import asyncio
from collections.abc import Awaitable, Callable

from llm_worker.attempt import ReplyJob
from llm_worker.coalescer import Coalescer
from llm_worker.completions import ChatMessage
from llm_worker.progress import Progress
from llm_worker.tool_runs import ToolRunner
from llm_worker.tool_steps import Asked, Ran, next_messages
from shared.events import ReplyToolCall

Publish = Callable[[ReplyToolCall], Awaitable[None]]
"""Publishes an event after every text and reasoning delta before it."""


class ToolStream:
    def __init__(
        self, job: ReplyJob, progress: Progress, publish: Publish, window_s: float
    ) -> None:
        self.job, self.progress, self._publish = job, progress, publish
        self.arguments = Coalescer(self._send_arguments, window_s)
        self.arguing: tuple[int, Asked] | None = None
        """The call whose argument deltas are coming, with its step."""
        self.running: dict[str, tuple[int, Asked]] = {}
        """The calls running now (by call id), with their step."""

    async def delta(self, step: int, call: Asked, text: str) -> None:
        """A delta of `call` (already added to it): a new call is named at once."""
        if self.arguing is None or self.arguing[1] is not call:
            await self.flush()  # the previous call's arguments go out before this one
            self.arguing = (step, call)
            await self._publish(self.job.tool_call(step, call, "arguments", text))
        elif text:
            await self.arguments.add(text)

    async def flush(self) -> None:
        """Publish the arguments waiting for their window."""
        await self.arguments.close()

    def abandon(self) -> None:
        self.arguments.abandon()

    async def run(
        self, tools: ToolRunner, step: int, asked: list[Asked], stopped: Callable[[], bool]
    ) -> list[ChatMessage] | None:
        """Run the calls a step asked for, all at once; the next step's prompt, or None when
        the reply was stopped."""
        await self.flush()
        self.arguing = None
        for call in asked:
            await self._publish(self.job.tool_call(step, call, "running"))
            self.running[call.call_id] = (step, call)
        ran = await asyncio.gather(*(self._run_one(tools, step, call) for call in asked))
        self.progress.tool_calls.sort(key=lambda c: (c.step, _position(asked, c.call_id)))
        if stopped():
            return None
        prompt = self.progress.prompt or self.job.prompt
        return [*prompt, *next_messages(self.progress.step_text(), asked, list(ran))]

    async def _run_one(self, tools: ToolRunner, step: int, call: Asked) -> Ran:
        result = await tools.run(self.job.message, step, call)
        del self.running[call.call_id]
        self.progress.tool_calls.append(result.record(step, call))
        await self._publish(self.job.tool_call_ended(step, call, result))
        return result

    async def interrupted(self, why: str) -> None:
        """The calls running when the reply stopped failed: they end with the reply."""
        await self.flush()
        for step, call in list(self.running.values()):
            result = Ran.failed(f"stopped ({why}) while the tool ran")
            self.progress.tool_calls.append(result.record(step, call))
            await self._publish(self.job.tool_call_ended(step, call, result))
        self.running.clear()

    async def _send_arguments(self, index: int, text: str, deltas: int) -> None:
        assert self.arguing is not None
        step, call = self.arguing
        await self._publish(self.job.tool_call(step, call, "arguments", text))


def _position(asked: list[Asked], call_id: str) -> int:
    """Where a call of this step stands among the calls asked (earlier steps' calls: -1)."""
    return next((call.index for call in asked if call.call_id == call_id), -1)
