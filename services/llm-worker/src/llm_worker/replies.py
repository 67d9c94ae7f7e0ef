"""One reply: stream a completion, publish start, tokens and exactly one terminal event.

The stream can be stopped at any time by its `StopSignal` (a cancel, the user's budget, or a
newer attempt fencing this one off): the upstream HTTP stream is closed at once, and the
terminal event carries the partial text with usage counted by the tokenizer.
"""

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessageParam

from llm_worker.cancels import StopSignal
from llm_worker.coalescer import Coalescer
from llm_worker.completions import Delta, Finish, UpstreamError, UsageReport, stream_completion
from llm_worker.pricing import cost_usd
from llm_worker.publisher import ReplyPublisher
from llm_worker.settings import Price
from llm_worker.tokens import TokenCounter
from shared.events import (
    FinishReason,
    ReplyEnd,
    ReplyError,
    ReplyStart,
    ReplyToken,
    Usage,
    UserMessage,
)

TOKEN_ACK_TIMEOUT_S = 10.0
"""How long the stream's acknowledgements of a reply's token events may take at its end."""

BudgetMeter = Callable[[int], Awaitable[bool]]
"""Told of tokens as they stream; answers False once the user's budget is spent."""


@dataclass(frozen=True)
class ReplyJob:
    message: UserMessage
    attempt: int
    prompt: list[ChatCompletionMessageParam]
    model: str
    max_tokens: int


@dataclass
class _Progress:
    texts: list[str] = field(default_factory=list)
    ttft_ms: float | None = None
    finish: FinishReason = "stop"
    usage: Usage | None = None
    complete: bool = False
    """The model's stream ended by itself (a stop that came later changes nothing)."""
    last_delta: float = 0.0


async def generate_reply(
    job: ReplyJob,
    *,
    client: AsyncOpenAI,
    publisher: ReplyPublisher,
    counter: TokenCounter,
    stop: StopSignal,
    prices: Mapping[str, Price] | None = None,
    meter: BudgetMeter | None = None,
    still_ours: Callable[[], Awaitable[bool]] | None = None,
    on_delta: Callable[[float | None], None] | None = None,
    coalesce_s: float = 0.0,
) -> ReplyEnd | ReplyError | None:
    """Answer `job.message`; returns the terminal event it published, or None when the reply
    was fenced off by a newer attempt (which publishes the terminal event instead).

    Upstream failures end in a `ReplyError`; publishing failures propagate (the message is
    then not acked and another worker tries again). `on_delta` is told of each delta: the
    seconds since the previous one, None for the first (for metrics). Deltas closer together
    than `coalesce_s` share one token event (see `Coalescer`).
    """
    started = time.perf_counter()
    message, attempt = job.message, job.attempt
    sid, mid = message.session_id, message.message_id
    # Stored while the model request goes out (one round trip less before the first token);
    # awaited before the first token and before the terminal event. A retry often follows a
    # broker that failed (a node lost, a failover under way): it calls the model only once
    # the stream stores its start again, or a failing broker would cost a model call a retry.
    starting = asyncio.create_task(
        publisher.start(
            ReplyStart(session_id=sid, message_id=mid, attempt=attempt, model=job.model)
        )
    )
    if attempt > 1:
        await starting
    progress = _Progress()
    abandoned = False
    acks: list[asyncio.Future[Any]] = []

    async def send(index: int, text: str, deltas: int) -> None:
        if index == 0:
            await starting
        ack = await publisher.token(
            ReplyToken.model_construct(  # built from checked values: no validation per token
                session_id=sid,
                message_id=mid,
                attempt=attempt,
                index=index,
                text=text,
                deltas=deltas,
            )
        )
        if ack is not None:
            acks.append(ack)

    tokens = Coalescer(send, coalesce_s)

    async def consume() -> None:
        pieces = stream_completion(
            client, model=job.model, messages=job.prompt, max_tokens=job.max_tokens
        )
        async with contextlib.aclosing(pieces):  # closing it closes the upstream stream
            async for piece in pieces:
                match piece:
                    case Delta(text=text):
                        now = time.perf_counter()
                        gap = None if progress.ttft_ms is None else now - progress.last_delta
                        if progress.ttft_ms is None:
                            progress.ttft_ms = _ms_since(started)
                        progress.last_delta = now
                        if on_delta is not None:
                            on_delta(gap)
                        progress.texts.append(text)
                        await tokens.add(text)
                        if meter is not None and not await meter(counter.count(text)):
                            stop.set("budget")
                            return
                        # Also checked, not only cancelled: nats-py's publish can swallow a
                        # CancelledError, and a cancelled stream must still end now.
                        if stop.reason is not None or abandoned:
                            return
                    case Finish(reason=reason):
                        progress.finish = "length" if reason == "length" else "stop"
                    case UsageReport(usage=reported):
                        progress.usage = reported
        progress.complete = True

    streaming = asyncio.create_task(consume())
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({streaming, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        abandoned = not streaming.done()
        for task in (streaming, stopped):
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, UpstreamError):
                    await task
    # Retrieved now, whatever happens next (a start that was not stored raises below).
    failure = streaming.exception() if streaming.done() and not streaming.cancelled() else None
    if stop.reason == "fenced" or (still_ours is not None and not await still_ours()):
        tokens.abandon()
        with contextlib.suppress(Exception):
            await starting
        return None
    await starting
    await tokens.close()  # every delta is published before the terminal event
    await _all_stored(acks)  # and stored: a hole in the stream fails the attempt instead
    if failure is not None:
        if not isinstance(failure, UpstreamError):
            raise failure
        error = ReplyError(
            session_id=sid,
            message_id=mid,
            attempt=attempt,
            code=failure.code,
            message=failure.message,
            retryable=failure.retryable,
        )
        await publisher.end(error)
        return error
    if not progress.complete and stop.reason in ("cancelled", "budget"):
        progress.finish = "cancelled" if stop.reason == "cancelled" else "budget"
        progress.usage = None  # whatever the provider said, it was not the whole stream
    text = "".join(progress.texts)
    usage = progress.usage or _counted(counter, job.prompt, text)
    end = ReplyEnd(
        session_id=sid,
        message_id=mid,
        attempt=attempt,
        model=job.model,
        text=text,
        finish_reason=progress.finish,
        usage=usage,
        cost_usd=cost_usd(prices or {}, job.model, usage),
        ttft_ms=progress.ttft_ms,
        duration_ms=_ms_since(started),
        requested_by=message.participant,
    )
    await publisher.end(end)
    return end


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


def _counted(counter: TokenCounter, prompt: list[ChatCompletionMessageParam], text: str) -> Usage:
    """Usage counted with the tokenizer, when the provider reported none."""
    prompt_tokens = counter.count_messages(prompt)
    completion_tokens = counter.count(text)
    return Usage(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
        estimated=True,
    )


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)
