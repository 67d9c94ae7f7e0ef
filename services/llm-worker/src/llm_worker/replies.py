"""One reply streamed: start, tokens and exactly one terminal event, decided by
`llm_worker.attempt` and carried out here.

The stream can be stopped at any time by its `StopSignal` (a cancel, a budget, or a
newer attempt fencing this one off): the upstream HTTP stream is closed at once, and the
terminal event carries the partial text with usage counted by the tokenizer.
"""

import asyncio
import contextlib
import logging
import time
from typing import Any

from llm_worker.attempt import ReplyJob
from llm_worker.cancels import StopSignal
from llm_worker.coalescer import Coalescer
from llm_worker.completions import (
    Citations,
    Delta,
    Finish,
    Reasoning,
    UpstreamError,
    UsageReport,
    stream_completion,
)
from llm_worker.earlier import EarlierAttempts
from llm_worker.progress import Progress, billed
from llm_worker.publisher import ReplyPublisher
from llm_worker.streaming import Streaming, Unwatched, Watch
from shared.events import (
    CallOutcome,
    ModelCall,
    ReplyEnd,
    ReplyError,
    ReplyReasoning,
    ReplySources,
    ReplyToken,
    Usage,
)

log = logging.getLogger(__name__)

__all__ = ["ReplyJob", "Streaming", "TokensLost", "Unwatched", "Watch", "generate_reply"]

RECORD_AGAIN_S = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
"""Pauses before each new try of a model call's record the broker refused (a minute in all)."""
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
            terminal = await self._settle(terminal, self.job.earlier)
        await publisher.end(terminal)
        return terminal

    async def _settle(
        self, terminal: ReplyEnd | ReplyError, earlier: EarlierAttempts
    ) -> ReplyEnd | ReplyError:
        """Bill the earlier attempts lost with their worker (an estimate each: the deltas
        they published, the prompt of this attempt) and, on a reply end, total every call
        the reply took."""
        job, s = self.job, self.streaming
        usage, cost = dict(earlier.usage), dict(earlier.cost_usd)
        lost = earlier.lost()
        if lost:
            prompt = _provider_prompt(terminal) or s.counter.count_messages(job.prompt)
        for attempt, deltas in lost.items():
            usage[attempt] = Usage(
                prompt_tokens=prompt,
                completion_tokens=deltas,
                total_tokens=prompt + deltas,
                estimated=True,
            )
            call = job.call("lost", usage[attempt], s.prices, attempt)
            cost[attempt] = call.cost_usd
            try:
                await s.publisher.call(call)
            except Exception as exc:
                log.warning("lost model call of attempt %d not recorded: %s", attempt, exc)
        if not isinstance(terminal, ReplyEnd) or not usage:
            return terminal
        return terminal.model_copy(update={"billed": billed(terminal, usage, cost)})

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
            task = asyncio.create_task(_record_later(s.publisher, call))
            _RECORDING.add(task)
            task.add_done_callback(_RECORDING.discard)

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
        job, progress, watch = self.job, self.progress, self.watch
        counter = self.streaming.counter
        if job.sources:  # what the reply draws on, before its first token
            await self._publish(job.sources_found(job.sources), first=True)
        pieces = stream_completion(
            self.streaming.client,
            model=job.model,
            messages=job.prompt,
            max_tokens=job.max_tokens,
            temperature=job.temperature,
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
                            await self.tokens.add(text)
                        if watch.meters and (spent := await watch.spend(counter.count(text))):
                            self.stop.set(spent)
                            return
                        # Also checked, not only cancelled: nats-py's publish can swallow a
                        # CancelledError, and a cancelled stream must still end now.
                        if self.stop.reason is not None or self.abandoned:
                            return
                    case Citations(sources=cited):
                        progress.citations.extend(cited)
                        await self._publish(job.sources_found(cited), first=True)
                    case Finish(reason=reason):
                        progress.finish = "length" if reason == "length" else "stop"
                    case UsageReport(usage=reported):
                        progress.usage = reported
        progress.complete = True

    async def _send(self, index: int, text: str, deltas: int) -> None:
        await self._publish(self.job.token(index, text, deltas), first=index == 0)

    async def _send_reasoning(self, index: int, text: str, deltas: int) -> None:
        await self._publish(self.job.reasoning(index, text, deltas), first=index == 0)

    async def _publish(
        self, token: ReplyToken | ReplyReasoning | ReplySources, *, first: bool
    ) -> None:
        if first and self.starting is not None:
            await self.starting
        ack = await self.streaming.publisher.token(token)
        if ack is not None:
            self.acks.append(ack)


_RECORDING: set["asyncio.Task[None]"] = set()
"""Model calls being sent again (a task must be referenced to run to its end)."""


async def _record_later(publisher: ReplyPublisher, call: ModelCall) -> None:
    for delay_s in RECORD_AGAIN_S:
        await asyncio.sleep(delay_s)
        try:
            await publisher.call(call)
            return
        except Exception as exc:
            error = exc
    log.warning("model call of attempt %d not recorded: %s", call.attempt, error)


def _provider_prompt(terminal: ReplyEnd | ReplyError) -> int:
    """The prompt as the provider counted it for this attempt (0: it did not say)."""
    if isinstance(terminal, ReplyEnd) and not terminal.usage.estimated:
        return terminal.usage.prompt_tokens
    return 0


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
