"""One reply streamed: start, tokens and exactly one terminal event, decided by
`llm_worker.attempt` and carried out here.

The stream can be stopped at any time by its `StopSignal` (a cancel, a budget, or a
newer attempt fencing this one off): the upstream HTTP stream is closed at once, and the
terminal event carries the partial text with usage counted by the tokenizer.
"""

import asyncio
import contextlib
import itertools
import logging
import time
from typing import Any

from llm_worker.attempt import ReplyJob
from llm_worker.call_records import record_later, settle
from llm_worker.cancels import StopSignal
from llm_worker.coalescer import Coalescer
from llm_worker.completions import (
    ChatMessage,
    Citations,
    Delta,
    Finish,
    Reasoning,
    ToolCallDelta,
    UpstreamError,
    UsageReport,
    stream_completion,
)
from llm_worker.progress import Progress
from llm_worker.publisher import Streamed
from llm_worker.streaming import Streaming, Unwatched, Watch
from llm_worker.tool_steps import StepCalls
from llm_worker.tool_stream import ToolStream
from shared.events import (
    CallOutcome,
    ReplyEnd,
    ReplyError,
    ReplyToolCall,
)

log = logging.getLogger(__name__)

__all__ = ["ReplyJob", "Streaming", "TokensLost", "Unwatched", "Watch", "generate_reply"]

TOKEN_ACK_TIMEOUT_S = 10.0
"""How long the stream's acknowledgements of a reply's token events may take at its end."""


async def generate_reply(
    job: ReplyJob, streaming: Streaming, stop: StopSignal, watch: Watch | None = None
) -> ReplyEnd | ReplyError | None:
    """Answer `job.message`; returns the terminal event it published, or None when the reply
    was fenced off by a newer attempt (which publishes the terminal event instead).

    Upstream failures end in a `ReplyError`; publishing failures propagate (the message is
    then not acked and another worker tries again).
    """
    reply = _Reply(job, streaming, stop, watch or Unwatched())
    return await reply.run()


class _Reply:
    def __init__(self, job: ReplyJob, streaming: Streaming, stop: StopSignal, watch: Watch) -> None:
        self.job, self.streaming, self.stop, self.watch = job, streaming, stop, watch
        self.progress = Progress(started=time.monotonic())
        self.acks: list[asyncio.Future[Any]] = []
        self.abandoned = False
        self.tokens = Coalescer(self._send, streaming.coalesce_s)
        self.thoughts = Coalescer(self._send_reasoning, streaming.coalesce_s)
        self.starting: asyncio.Task[None] | None = None
        self.tools = ToolStream(job, self.progress, self._tool_event, streaming.coalesce_s)

    async def run(self) -> ReplyEnd | ReplyError | None:
        publisher = self.streaming.publisher
        # Stored while the model request goes out (one round trip less before the first
        # token); awaited before the first token and before the terminal event. A retry often
        # follows a broker that failed (a node lost, a failover under way): it calls the model
        # only once the stream stores its start again, or a failing broker would cost a model
        # call a retry.
        self.starting = starting = asyncio.create_task(publisher.start(self.job.start()))
        if self.job.attempt > 1:
            await starting
        failure = await self._stream()
        if self.stop.reason == "fenced" or not await self.watch.still_ours():
            self.tokens.abandon()
            self.thoughts.abandon()
            self.tools.abandon()
            with contextlib.suppress(Exception):
                await starting
            await self._bill("superseded")
            return None
        try:
            return await self._end(starting, failure)
        except Exception:  # the message comes back; the call it made is billed all the same
            await self._bill("failed")
            raise

    async def _end(
        self, starting: "asyncio.Task[None]", failure: BaseException | None
    ) -> ReplyEnd | ReplyError:
        publisher = self.streaming.publisher
        await starting
        await self.tools.interrupted(self.stop.reason or "failed")
        await self.thoughts.close()
        await self.tokens.close()  # every delta is published before the terminal event
        await _all_stored(self.acks)  # and stored: a hole in the stream fails the attempt
        terminal: ReplyEnd | ReplyError
        if failure is not None:
            if not isinstance(failure, UpstreamError):
                raise failure
            terminal = self.job.failed(failure)
            await self._bill("failed")
        else:
            s = self.streaming
            terminal = self.progress.end(
                self.job, self.stop.reason, s.counter, s.prices, time.monotonic()
            )
        if self.job.earlier is not None:
            terminal = await settle(self.job, self.streaming, terminal, self.job.earlier)
        await publisher.end(terminal)
        return terminal

    async def _bill(self, outcome: CallOutcome) -> None:
        """Record this attempt's model call, when the model streamed anything, for an end
        that is no reply end. The broker that failed the attempt may refuse this too: it is
        then sent again in the background, for a minute (meanwhile a later attempt's
        estimate may stand in for it)."""
        s = self.streaming
        usage = self.progress.spent(self.job, s.counter)
        if usage is None:
            return
        call = self.job.call(outcome, usage, s.prices)
        try:
            await s.publisher.call(call)
        except Exception as exc:
            log.info("model call of attempt %d not recorded yet: %s", call.attempt, exc)
            record_later(s.publisher, call)

    async def _stream(self) -> BaseException | None:
        """Stream until the model ends or the reply is stopped; the stream's failure, if any
        (retrieved now, whatever happens next)."""
        streaming = asyncio.create_task(self._consume())
        stopped = asyncio.create_task(self.stop.wait())
        try:
            await asyncio.wait({streaming, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.abandoned = not streaming.done()
            for task in (streaming, stopped):
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, UpstreamError):
                        await task
        if streaming.done() and not streaming.cancelled():
            return streaming.exception()
        return None

    async def _consume(self) -> None:
        job, progress, tools = self.job, self.progress, self.streaming.tools
        if job.sources:  # what the reply draws on, before its first token
            await self._publish(job.sources_found(job.sources), first=True)
        for step in itertools.count(1):
            calls = StepCalls(step)
            offered = tools.offer(step) if tools else None
            if not await self._step(progress.prompt or job.prompt, offered, calls):
                return  # stopped
            asked = calls.asked()
            if not asked or tools is None or offered is None:
                break
            prompt = await self.tools.run(tools, step, asked, self._stopped)
            if prompt is None:
                return  # stopped
            progress.next_step(self.streaming.counter, job, prompt)
        progress.complete = True

    def _stopped(self) -> bool:
        return self.stop.reason is not None or self.abandoned

    async def _step(
        self, prompt: list[ChatMessage], tools: list[dict[str, Any]] | None, calls: StepCalls
    ) -> bool:
        """Stream one model call; False when the reply was stopped."""
        job, progress, watch = self.job, self.progress, self.watch
        counter = self.streaming.counter
        pieces = stream_completion(
            self.streaming.client,
            model=job.model,
            messages=prompt,
            max_tokens=job.max_tokens,
            temperature=job.temperature,
            tools=tools,
        )
        async with contextlib.aclosing(pieces):  # closing it closes the upstream stream
            async for piece in pieces:
                match piece:
                    case Delta(text=text) | Reasoning(text=text):
                        thinking = isinstance(piece, Reasoning)
                        watch.delta(progress.delta(text, time.monotonic(), reasoning=thinking))
                        if thinking:
                            await self.thoughts.add(text)
                        else:
                            await self.thoughts.close()  # its reasoning goes out before it
                            if self.tools.arguing is not None:
                                await self.tools.flush()  # and a call's arguments
                            await self.tokens.add(text)
                    case ToolCallDelta(arguments=text):
                        call = calls.add(piece)
                        progress.arguments.append(text)
                        await self.tools.delta(calls.step, call, text)
                    case Citations(sources=cited):
                        progress.citations.extend(cited)
                        await self._publish(job.sources_found(cited), first=True)
                        continue
                    case Finish(reason=reason):
                        progress.finish = "length" if reason == "length" else "stop"
                        continue
                    case UsageReport(usage=reported):
                        progress.usage = reported
                        continue
                if watch.meters and (spent := await watch.spend(counter.count(text))):
                    self.stop.set(spent)
                    return False
                # Also checked, not only cancelled: nats-py's publish can swallow a
                # CancelledError, and a cancelled stream must still end now.
                if self.stop.reason is not None or self.abandoned:
                    return False
        return True

    async def _tool_event(self, event: ReplyToolCall) -> None:
        """After every delta before it: the text said before a call goes out first."""
        await self.thoughts.close()
        await self.tokens.close()
        await self._publish(event, first=True)

    async def _send(self, index: int, text: str, deltas: int) -> None:
        await self._publish(self.job.token(index, text, deltas), first=index == 0)

    async def _send_reasoning(self, index: int, text: str, deltas: int) -> None:
        await self._publish(self.job.reasoning(index, text, deltas), first=index == 0)

    async def _publish(self, token: Streamed, *, first: bool) -> None:
        if first and self.starting is not None:
            await self.starting
        ack = await self.streaming.publisher.token(token)
        if ack is not None:
            self.acks.append(ack)


class TokensLost(Exception):
    """Token events of the reply were not stored (the broker failed while they were in
    flight): the attempt fails without a terminal event, so the message is delivered again
    and its reply streamed whole by the next attempt, rather than with a hole in it."""


async def _all_stored(acks: list["asyncio.Future[Any]"]) -> None:
    if not acks:
        return
    done, pending = await asyncio.wait(acks, timeout=TOKEN_ACK_TIMEOUT_S)
    for ack in pending:
        ack.cancel()  # frees its place in the window of unacknowledged publishes
    failed = len(pending) + sum(1 for a in done if a.cancelled() or a.exception() is not None)
    if failed:
        raise TokensLost(f"{failed} of {len(acks)} token events were not stored")
