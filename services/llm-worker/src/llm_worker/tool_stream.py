"""The tool calls of one streaming reply: their events, in order with the reply's text, and
the calls run between two model calls (`llm_worker.replies` streams the rest).

A call's first delta names it and goes out at once; its argument deltas are joined like tokens
(`Coalescer`: at most one event per window), so a model that streams arguments token by token
costs the stream a few events a call, not one per token.
"""

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
        self.running: tuple[int, Asked] | None = None
        """The call running now, with its step."""

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
        """Run the calls a step asked for, one after the other; the next step's prompt, or
        None when the reply was stopped."""
        await self.flush()
        self.arguing = None
        job, ran = self.job, []
        for call in asked:
            await self._publish(job.tool_call(step, call, "running"))
            self.running = (step, call)
            result = await tools.run(job.message, step, call)
            self.running = None
            ran.append(result)
            self.progress.tool_calls.append(result.record(step, call))
            await self._publish(job.tool_call_ended(step, call, result))
            if stopped():
                return None
        prompt = self.progress.prompt or job.prompt
        return [*prompt, *next_messages(self.progress.step_text(), asked, ran)]

    async def interrupted(self, why: str) -> None:
        """The call that was running when the reply stopped failed: it ends with the reply."""
        await self.flush()
        if self.running is None:
            return
        step, call = self.running
        result = Ran.failed(f"stopped ({why}) while the tool ran")
        self.progress.tool_calls.append(result.record(step, call))
        await self._publish(self.job.tool_call_ended(step, call, result))

    async def _send_arguments(self, index: int, text: str, deltas: int) -> None:
        assert self.arguing is not None
        step, call = self.arguing
        await self._publish(self.job.tool_call(step, call, "arguments", text))
